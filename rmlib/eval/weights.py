"""Head-weight search for multi-attribute reward models, on cached scores.

HelpSteer2-Preference (Wang et al., arXiv 2410.01257) turns its 5-attribute regression model into one
reward with a weighted sum of the attributes, the weights "searched between -1 and 1 at intervals of
0.1" and chosen by RewardBench. :func:`search_head_weights` evaluates that whole grid on per-head scores
scored once (a score cache), so the search never touches a model: it is a pure function of the scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rmlib.eval.suites.rewardbench import EXAMPLE_COUNTS, SECTIONS, SUBSET_MAPPING

__all__ = ["weight_grid", "search_head_weights"]


def weight_grid(step: float = 0.1, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """The grid values ``low, low + step, …, high`` (rounded to 10 decimals; 21 values by default)."""
    if step <= 0 or high < low:
        raise ValueError(f"need step > 0 and high >= low, got step={step}, [{low}, {high}]")
    n = int(round((high - low) / step))
    return np.round(low + step * np.arange(n + 1), 10)


def search_head_weights(chosen_heads: np.ndarray, rejected_heads: np.ndarray, subsets: Sequence[str], *,
                        step: float = 0.1, low: float = -1.0, high: float = 1.0, chunk: int = 8192,
                        top: int = 5) -> dict[str, Any]:
    """The head weights w on the grid (every head in ``weight_grid(step, low, high)``) that maximise the
    RewardBench v1 overall score of the reward ``heads @ w``.

    A pair is correct when ``(chosen − rejected) @ w > 0`` (a tie is wrong, as in RewardBench); subset
    accuracy, the EXAMPLE_COUNTS-weighted sections and ``overall`` = mean of the four sections follow
    :func:`rmlib.eval.rewardbench_v1_scores` (a section with no subset present scores 0). Ties between
    weight vectors are broken by grid order (the first maximum, heads varying from ``low`` to ``high``
    with the last head fastest). Returns ``{"weights": [...], "overall", "sections": {...},
    "evaluated": grid size, "top": [{"weights", "overall"} × top]}``.
    """
    c = np.asarray(chosen_heads, dtype=np.float64)
    r = np.asarray(rejected_heads, dtype=np.float64)
    if c.ndim != 2 or c.shape != r.shape:
        raise ValueError(f"chosen/rejected heads must be (pairs, heads) of one shape, got {c.shape} and {r.shape}")
    subs = [str(s) for s in subsets]
    if len(subs) != c.shape[0]:
        raise ValueError(f"{len(subs)} subsets for {c.shape[0]} pairs")
    unknown = sorted(set(subs) - set(EXAMPLE_COUNTS))
    if unknown:
        raise ValueError(f"unknown RewardBench v1 subsets {unknown}")
    names = list(dict.fromkeys(subs))
    diff = c - r
    rows = {s: np.nonzero(np.array(subs) == s)[0] for s in names}
    blocks = [(diff[rows[s]], float(len(rows[s]))) for s in names]
    # section score = Σ_s acc_s · n_s / Σ n_s over the present subsets; overall = mean of the 4 sections,
    # so overall = Σ_s acc_s · coef_s with coef_s = n_s / (4 · Σ_present-in-section n)
    coef = np.zeros(len(names))
    for sec in SECTIONS:
        present = [s for s in SUBSET_MAPPING[sec] if s in names]
        total = sum(EXAMPLE_COUNTS[s] for s in present)
        for s in present:
            coef[names.index(s)] = EXAMPLE_COUNTS[s] / total / len(SECTIONS)
    grid = weight_grid(step, low, high)
    shape = (len(grid),) * c.shape[1]
    n_total = len(grid) ** c.shape[1]
    best_scores = np.full(0, -np.inf)
    best_weights = np.zeros((0, c.shape[1]))
    for start in range(0, n_total, chunk):
        idx = np.unravel_index(np.arange(start, min(start + chunk, n_total)), shape)  # last head fastest
        w = np.stack([grid[i] for i in idx], axis=1)  # (m, heads)
        wt = np.ascontiguousarray(w.T)
        overall = np.zeros(w.shape[0])
        for k, (block, n) in enumerate(blocks):
            if coef[k]:
                overall += coef[k] / n * np.count_nonzero(block @ wt > 0, axis=0)
        # keep the running top list, earlier grid points first among equals (stable sort)
        pool_scores = np.concatenate([best_scores, overall])
        pool_weights = np.concatenate([best_weights, w])
        keep = np.argsort(-pool_scores, kind="stable")[:max(top, 1)]
        best_scores, best_weights = pool_scores[keep], pool_weights[keep]
    wbest = best_weights[0]
    red = diff @ wbest > 0
    acc = {s: float(red[rows[s]].mean()) for s in names}
    sections = {}
    for sec in SECTIONS:
        present = [s for s in SUBSET_MAPPING[sec] if s in acc]
        total = sum(EXAMPLE_COUNTS[s] for s in present)
        sections[sec] = sum(acc[s] * EXAMPLE_COUNTS[s] for s in present) / total if total else 0.0
    return {"weights": [float(x) for x in wbest], "overall": float(best_scores[0]), "sections": sections,
            "evaluated": n_total, "grid": [float(x) for x in grid],
            "top": [{"weights": [float(x) for x in w], "overall": float(s)} for w, s in zip(best_weights, best_scores)]}
