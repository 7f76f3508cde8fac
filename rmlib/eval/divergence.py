"""Diverging preferences (Zhang et al. 2024, "Diverging Preferences: When do Annotators Disagree and do
Models Know?", arXiv 2410.14632): split pairs by how their annotators voted, then ask how strongly a
reward model favours one response in each class (their Table 2).

A Bradley-Terry model trained on aggregated labels tends to favour one response of a diverging pair as
strongly as one of a unanimous pair; this module measures that from the scores alone.

Vote convention (same as ``PreferencePair.votes``): one signed number per annotator, > 0 prefers
response A, 0 is a tie, < 0 prefers B; the magnitude is the strength: 1 = slight, ≥ 2 (``strong``) =
significant (MultiPref: slightly = 1, clearly = 2; HelpSteer2: the difference of the annotator's two
helpfulness ratings, :func:`rmlib.data.annotations.rating_difference_votes`).

Classes, checked in this order (the first that applies wins, so every pair has exactly one):

1. **diverging (all)**: votes on both sides and at least one significant vote — the paper takes "all
   instances where annotators disagreed on which response was preferred, ignoring instances where
   annotators only had slight preferences" (for MultiPref, "filtering out instances where all
   annotators responses were ties or only had slight preferences"). So [1, −1, 0, 0] and
   [1, −1, 1, 1] are not diverging; [2, −1, 1] is. **diverging (substantial)** is the subset where
   "annotators significantly preferred both responses": a significant vote on each side.
2. **high-agreement tie**: "the majority of annotators labeled the instance as a tie" (a strict
   majority of the votes are 0).
3. **high-agreement preference**: "no annotators rejected the majority's chosen response": a majority
   side exists (:func:`~rmlib.data.annotations.majority_side`) and no vote is on the other side.
4. **other** (the leftover, reported with the classes): votes on both sides with only slight
   preferences and no tie majority, e.g. [1, −1, 1, 1] or [1, −1, 0].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rmlib.data.annotations import preferred_side, rating_difference_votes

__all__ = ["MULTIPREF_VOTES", "DIVERGENCE_CLASSES", "multipref_vote", "classify_votes", "is_substantial",
           "preferred_side", "rating_difference_votes", "divergence_table"]

MULTIPREF_VOTES: dict[str, int] = {
    "A-is-clearly-better": 2, "A-is-slightly-better": 1, "Tie": 0,
    "B-is-slightly-better": -1, "B-is-clearly-better": -2,
}
DIVERGENCE_CLASSES: tuple[str, ...] = ("high_agreement_preference", "high_agreement_tie", "diverging_all",
                                       "diverging_substantial", "other")


def multipref_vote(label: str) -> int:
    """MultiPref ``overall_pref`` string → signed vote (A clearly = +2 … B clearly = −2)."""
    if label not in MULTIPREF_VOTES:
        raise ValueError(f"unknown MultiPref preference {label!r}; expected one of {list(MULTIPREF_VOTES)}")
    return MULTIPREF_VOTES[label]


def classify_votes(votes: Sequence[float], strong: float = 2) -> str:
    """``"diverging"``, ``"high_agreement_tie"``, ``"high_agreement_preference"`` or ``"other"``, with the
    precedence of the module docstring; :func:`is_substantial` gives the substantial subset of diverging."""
    v = np.asarray(votes, dtype=float)
    if v.size == 0:
        raise ValueError("a pair needs at least one vote")
    pos, neg, ties = int(np.sum(v > 0)), int(np.sum(v < 0)), int(np.sum(v == 0))
    if pos and neg and np.any(np.abs(v) >= strong):
        return "diverging"
    if 2 * ties > v.size:
        return "high_agreement_tie"
    side = preferred_side(v.tolist(), "majority")
    if (side > 0 and neg == 0) or (side < 0 and pos == 0):
        return "high_agreement_preference"
    return "other"


def is_substantial(votes: Sequence[float], strong: float = 2) -> bool:
    """A significant vote (|v| ≥ ``strong``) on both sides: "annotators significantly preferred both
    responses"."""
    v = np.asarray(votes, dtype=float)
    return bool(np.any(v >= strong) and np.any(v <= -strong))


def divergence_table(votes: Sequence[Sequence[float]], scores_a: np.ndarray, scores_b: np.ndarray, *,
                     strong: float = 2, model_type: str = "bt", rule: str = "majority") -> dict[str, Any]:
    """Per class, how strongly the reward model favours its own pick.

    The paper tracks "how heavily reward models favor a single response by computing P(C > R), where C
    and R are the reward model's chosen and rejected responses": for a Bradley-Terry model P(C > R) =
    σ(|r_a − r_b|) (``mean_p_favoured``); rewards of regression models are not logits, so for them the
    paper's quantity is |r_a − r_b| (``mean_abs_diff``). ``model_type`` picks the headline ``metric``
    column (``"bt"`` → the first, ``"regression"`` → the second). Neither depends on the annotators'
    labels, so a tie pair is not pulled to 0.5.

    Also reported, under its own name, ``mean_p_majority`` = mean σ(r_maj − r_other) with the
    annotators' majority side (``rule``: ``"majority"`` or ``"sum"``, see
    :func:`~rmlib.data.annotations.preferred_side`) over the class's pairs that have one (NaN if none).

    Every pair weighs 1 in its class; ``diverging_substantial`` is a subset of ``diverging_all``;
    ``other`` is the leftover class. Returns ``{"rows": [...], "counts": {...}, "classes": [per-pair
    class], "substantial": [per-pair flag], "model_type"}``.
    """
    if model_type not in ("bt", "regression"):
        raise ValueError(f"model_type must be 'bt' or 'regression', got {model_type!r}")
    a = np.asarray(scores_a, dtype=float)
    b = np.asarray(scores_b, dtype=float)
    if not (len(votes) == a.size == b.size):
        raise ValueError(f"{len(votes)} vote lists but {a.size}/{b.size} scores")
    classes = [classify_votes(v, strong) for v in votes]
    subst = [c == "diverging" and is_substantial(v, strong) for c, v in zip(classes, votes)]
    side = np.array([preferred_side(list(v), rule) for v in votes], dtype=float)
    absdiff = np.abs(a - b)
    p_favoured = 1.0 / (1.0 + np.exp(-absdiff))
    p_majority = 1.0 / (1.0 + np.exp(-side * (a - b)))
    cls = np.array(classes)
    masks = {
        "high_agreement_preference": cls == "high_agreement_preference",
        "high_agreement_tie": cls == "high_agreement_tie",
        "diverging_all": cls == "diverging",
        "diverging_substantial": np.array(subst, dtype=bool),
        "other": cls == "other",
    }
    rows = []
    for name in DIVERGENCE_CLASSES:
        m = masks[name]
        k = int(m.sum())
        with_side = m & (side != 0)
        mp = float(p_favoured[m].mean()) if k else float("nan")
        md = float(absdiff[m].mean()) if k else float("nan")
        rows.append({"class": name, "n": k, "mean_p_favoured": mp, "mean_abs_diff": md,
                     "mean_p_majority": float(p_majority[with_side].mean()) if with_side.any() else float("nan"),
                     "metric": mp if model_type == "bt" else md})
    counts = {name: int(masks[name].sum()) for name in DIVERGENCE_CLASSES}
    return {"rows": rows, "counts": counts, "classes": classes, "substantial": subst, "model_type": model_type}
