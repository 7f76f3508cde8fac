"""Pairwise accuracy: the fraction of pairs where the chosen response outscores the rejected one.

This is the metric shared by training-time evaluation, RewardBench v1 and the generic ``pairs`` suite,
so the tie rule lives in exactly one place: :func:`pair_results`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["pair_results", "pairwise_accuracy"]


def _as_1d(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one score per pair (1-D), got shape {a.shape}")
    return a


def pair_results(chosen_scores: Sequence[float] | np.ndarray,
                 rejected_scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-pair correctness: ``chosen > rejected``, strictly.

    Tie rule: equal scores count as **wrong** (0), as in RewardBench's ``run_rm.py`` and TRL's logged
    accuracy (docs/evaluation.md). A constant scorer therefore gets 0%, not 50%, which is what we want: it
    cannot tell the responses apart. NaN scores also compare False and so count as wrong.
    """
    c = _as_1d(chosen_scores, "chosen_scores")
    r = _as_1d(rejected_scores, "rejected_scores")
    if c.shape != r.shape:
        raise ValueError(f"chosen_scores has {c.shape[0]} pairs but rejected_scores has {r.shape[0]}")
    return c > r


def pairwise_accuracy(chosen_scores: Sequence[float] | np.ndarray, rejected_scores: Sequence[float] | np.ndarray,
                      groups: Sequence[Any] | None = None) -> dict[str, Any]:
    """Accuracy over all pairs (every pair weighs 1), plus the same per group when ``groups`` is given.

    Tie rule: strict ``>`` (a tie counts wrong), see :func:`pair_results`. Returns
    ``{"accuracy", "correct", "n", "groups": {group: {"accuracy", "correct", "n"}}}``; groups are
    listed in first-seen order. An empty input has accuracy NaN.
    """
    res = pair_results(chosen_scores, rejected_scores)
    n = int(res.size)
    out: dict[str, Any] = {"accuracy": float(res.mean()) if n else float("nan"), "correct": int(res.sum()), "n": n}
    if groups is not None:
        g = list(groups)
        if len(g) != n:
            raise ValueError(f"groups has {len(g)} entries but there are {n} pairs")
        per: dict[Any, dict[str, Any]] = {}
        for key in dict.fromkeys(g):
            mask = np.array([x == key for x in g])
            k = int(res[mask].sum())
            m = int(mask.sum())
            per[key] = {"accuracy": k / m, "correct": k, "n": m}
        out["groups"] = per
    return out
