"""Small statistics used by the audits: Wilson interval, z-test against 50%, Bonferroni, logistic regression.

Everything here is standard-library math plus numpy, so the evaluator can report confidence intervals
and p-values without scipy or statsmodels at run time (statsmodels is only used in the tests, as the
reference these functions are checked against).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

__all__ = ["wilson_interval", "agreement_test", "bonferroni", "normal_two_sided_p", "logistic_regression"]


def normal_two_sided_p(z: float) -> float:
    """Two-sided p-value of a standard-normal statistic: P(|Z| ≥ |z|) = erfc(|z|/√2)."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (Wilson 1927; the same as statsmodels ``method="wilson"``).

    Why Wilson: agreement rates near 0 or 1 on a few hundred pairs are common in audits, and the
    normal (Wald) interval collapses to zero width there; Wilson keeps a sensible width and coverage.

    ``z = Φ⁻¹(1 − α/2)`` with ``α = 1 − confidence``; ``center = (p̂ + z²/2n)/(1 + z²/n)``;
    ``half = z·√(p̂(1−p̂)/n + z²/4n²)/(1 + z²/n)``; the interval is clipped to [0, 1].
    Example: k=8, n=10 → (0.4902, 0.9433). n = 0 is undefined and raises ``ValueError``.
    """
    if n <= 0:
        raise ValueError(f"wilson_interval: n must be positive, got n={n}")
    if not 0 <= k <= n:
        raise ValueError(f"wilson_interval: need 0 <= k <= n, got k={k}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"wilson_interval: confidence must be in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    p = k / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    # k = 0 and k = n touch the bounds exactly; avoid a 1e-17 rounding residue there
    low = 0.0 if k == 0 else max(0.0, center - half)
    high = 1.0 if k == n else min(1.0, center + half)
    return low, high


def agreement_test(k: int, n: int) -> tuple[float, float]:
    """Two-sided z-test of "agreement rate = 50%" by the normal approximation.

    ``z = (k − n/2) / √(n/4)``; ``p = P(|Z| ≥ |z|)``. A scorer that agrees with the labels no more than a
    coin flip gives p ≈ 1; this is the test the agreement audit reports for every scorer.
    Example: k=60, n=100 → z = 2.0, p ≈ 0.0455.
    """
    if n <= 0:
        raise ValueError(f"agreement_test: n must be positive, got n={n}")
    if not 0 <= k <= n:
        raise ValueError(f"agreement_test: need 0 <= k <= n, got k={k}, n={n}")
    z = (k - n / 2.0) / math.sqrt(n / 4.0)
    return z, normal_two_sided_p(z)


def bonferroni(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Bonferroni family-wise correction: ``min(1, p·m)`` for m tests.

    Used when several scorers (models or heads) are tested against 50% on the same pairs, so that
    "significant" keeps meaning a 5% family-wise error rate. NaN p-values stay NaN and do not count in m.
    """
    p = np.asarray(p_values, dtype=float)
    m = int(np.sum(~np.isnan(p)))
    return np.minimum(1.0, p * m)


def logistic_regression(x: np.ndarray, y: np.ndarray, *, intercept: bool = True, max_iter: int = 100,
                        tol: float = 1e-10) -> dict[str, object]:
    """Maximum-likelihood logistic regression by Newton–Raphson (IRLS), with Wald standard errors.

    Why our own: the library must not depend on statsmodels; for a handful of covariates Newton's method
    converges in a few steps and matches ``statsmodels.Logit`` to numerical precision.

    ``x``: (n,) or (n, p) covariates; ``y``: (n,) in {0, 1}. With ``intercept`` a column of ones is put
    first. Returns ``coef``, ``se`` (√diag of the inverse Fisher information at the optimum), ``z``,
    ``p`` (two-sided normal), ``converged`` and ``iterations``. Under perfect separation the MLE does
    not exist: the iterations stop at ``max_iter`` and ``converged`` is False.
    """
    X = np.asarray(x, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    yv = np.asarray(y, dtype=float)
    if X.shape[0] != yv.shape[0]:
        raise ValueError(f"logistic_regression: x has {X.shape[0]} rows but y has {yv.shape[0]}")
    if not np.all((yv == 0) | (yv == 1)):
        raise ValueError("logistic_regression: y must contain only 0 and 1")
    if intercept:
        X = np.column_stack([np.ones(X.shape[0]), X])
    beta = np.zeros(X.shape[1])
    converged = False
    iterations = 0
    ll_old = -np.inf
    for it in range(1, max_iter + 1):
        iterations = it
        eta = X @ beta
        mu = 1.0 / (1.0 + np.exp(-eta))
        w = mu * (1.0 - mu)
        grad = X.T @ (yv - mu)
        hess = X.T @ (X * w[:, None])
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        beta = beta + step
        ll = float(np.sum(yv * (X @ beta) - np.logaddexp(0.0, X @ beta)))
        if np.max(np.abs(step)) < 1e-8 or abs(ll - ll_old) < tol:
            converged = True
            break
        ll_old = ll
    mu = 1.0 / (1.0 + np.exp(-(X @ beta)))
    if np.all(np.abs(yv - mu) < 1e-6):  # perfect separation: the likelihood has no maximum
        converged = False
    w = mu * (1.0 - mu)
    hess = X.T @ (X * w[:, None])
    try:
        cov = np.linalg.inv(hess)
        se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    except np.linalg.LinAlgError:
        se = np.full(beta.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = beta / se
    p = np.array([normal_two_sided_p(v) if np.isfinite(v) else float("nan") for v in z])
    return {"coef": beta, "se": se, "z": z, "p": p, "converged": converged, "iterations": iterations}
