"""Diverging preferences (Zhang et al. 2024, "Diverging Preferences: When do Annotators Disagree and do
Models Know?", arXiv 2410.14632): split pairs by how their annotators voted, then ask how strongly a
reward model favours one response in each class (their Table 2). The ``divergence`` suite (options,
record parsers, metrics) is at the end.

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

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rmlib.data.annotations import preferred_side, rating_difference_votes
from rmlib.data.formats.multipref import MULTIPREF_VOTES  # the reader's table: one label scale
from rmlib.data.labels import votes_to_target_prob
from rmlib.eval.registry import Record, Scores, Suite, SuiteData
from rmlib.eval.report import Report
from rmlib.eval.suites._common import pair_scores

__all__ = ["MULTIPREF_VOTES", "DIVERGENCE_CLASSES", "DivergenceOptions", "auroc", "calibration", "multipref_vote",
           "classify_votes", "divergence_identification", "is_substantial", "pair_preference", "preferred_side",
           "rating_difference_votes", "divergence_table"]


DIVERGENCE_CLASSES: tuple[str, ...] = ("high_agreement_preference", "high_agreement_tie", "diverging_all",
                                       "diverging_substantial", "other")


def multipref_vote(label: str) -> int:
    """MultiPref ``overall_pref`` string → signed vote (A clearly = +2 … B clearly = −2)."""
    if label not in MULTIPREF_VOTES:
        raise ValueError(f"unknown MultiPref preference {label!r}; expected one of {list(MULTIPREF_VOTES)}")
    return int(MULTIPREF_VOTES[label])


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
                     strong: float = 2, model_type: str = "bt", rule: str = "majority",
                     p_a: np.ndarray | None = None, uncertainty: np.ndarray | None = None) -> dict[str, Any]:
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

    A distributional model gives its own ``p_a`` = P(A ≻ B) (:func:`pair_preference`): P(C > R) is then
    max(p_a, 1 − p_a) instead of σ(|r_a − r_b|), and ``uncertainty`` (the pair's predicted spread) gets a
    ``mean_uncertainty`` column.

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
    if p_a is None:
        p_favoured = 1.0 / (1.0 + np.exp(-absdiff))
        p_majority = 1.0 / (1.0 + np.exp(-side * (a - b)))
    else:
        pa = np.asarray(p_a, dtype=float)
        p_favoured = np.maximum(pa, 1 - pa)
        p_majority = np.where(side > 0, pa, 1 - pa)
    unc = None if uncertainty is None else np.asarray(uncertainty, dtype=float)
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
        row = {"class": name, "n": k, "mean_p_favoured": mp, "mean_abs_diff": md,
               "mean_p_majority": float(p_majority[with_side].mean()) if with_side.any() else float("nan"),
               "metric": mp if model_type == "bt" else md}
        if unc is not None:
            row["mean_uncertainty"] = float(unc[m].mean()) if k else float("nan")
        rows.append(row)
    counts = {name: int(masks[name].sum()) for name in DIVERGENCE_CLASSES}
    return {"rows": rows, "counts": counts, "classes": classes, "substantial": subst, "model_type": model_type}


# ------------------------------------------------------------ do models know? (distributional reward models)
def _ndtr(z: np.ndarray) -> np.ndarray:
    """Φ(z), the standard normal CDF (numpy has no erf; the pairs of one benchmark are few)."""
    return np.array([0.5 * math.erfc(-float(v) / math.sqrt(2.0)) for v in np.ravel(z)]).reshape(np.shape(z))


def pair_preference(kind: str | None, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """(P(A ≻ B), the pair's predicted uncertainty or None) from each side's named outputs.

    * scalar model (``kind`` None): P = σ(r_a − r_b), the Bradley-Terry reading; no uncertainty of its own
      (|r_a − r_b| is all it offers);
    * ``mean_var``: P = Φ((μ_a − μ_b) / sqrt(σ_a² + σ_b²)); uncertainty sqrt(σ_a² + σ_b²);
    * ``rating_ce``: P = P(X_a > X_b) + ½·P(X_a = X_b) for independent ratings X ~ the two categoricals;
      uncertainty the overlap Σ_k min(p_a,k, p_b,k) (1: the same distribution, 0: disjoint).
    """
    ra, rb = np.asarray(a["reward"], dtype=float), np.asarray(b["reward"], dtype=float)
    if kind is None:
        return 1.0 / (1.0 + np.exp(-(ra - rb))), None
    if kind == "mean_var":
        scale = np.sqrt(np.asarray(a["std"], dtype=float) ** 2 + np.asarray(b["std"], dtype=float) ** 2)
        return _ndtr((ra - rb) / scale), scale
    if kind == "rating_ce":
        pa, pb = np.asarray(a["probs"], dtype=float), np.asarray(b["probs"], dtype=float)
        below = np.cumsum(pb, axis=1) - pb  # P(X_b < level k)
        p = (pa * below).sum(1) + 0.5 * (pa * pb).sum(1)
        return p, np.minimum(pa, pb).sum(1)
    raise ValueError(f"unknown distribution kind {kind!r}; expected None, 'mean_var' or 'rating_ce'")


def auroc(scores: Sequence[float] | np.ndarray, positive: Sequence[bool] | np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for telling ``positive`` rows from the others: the
    probability that a random positive scores above a random negative, ties counting half (Mann-Whitney
    U / (n_pos · n_neg)). NaN when either side is empty. Written here because the library does not
    depend on scikit-learn (the tests check it against ``sklearn.metrics.roc_auc_score``)."""
    s = np.asarray(scores, dtype=float)
    pos = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_s = s[order]
    # average ranks of tied values (1-based)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    for lo, hi in zip(starts, ends):
        ranks[order[lo:hi]] = (lo + hi + 1) / 2.0
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def calibration(p: Sequence[float] | np.ndarray, observed: Sequence[float] | np.ndarray,
                bins: int = 10) -> dict[str, Any]:
    """Expected calibration error of predicted P(A ≻ B) against the observed vote fraction.

    Pairs are put in ``bins`` equal-width bins of predicted P; ECE = Σ_bins (n_bin / n)·|mean P − mean
    observed| (Guo et al. 2017's ECE with the vote fraction as the outcome; a vote fraction is the
    outcome's expectation, so a calibrated model has ECE near 0 on any number of annotators). Returns
    ``{"ece", "bins": [{"lo", "hi", "n", "mean_predicted", "mean_observed"}]}``, the reliability diagram's data.
    """
    pp, ob = np.asarray(p, dtype=float), np.asarray(observed, dtype=float)
    if pp.shape != ob.shape:
        raise ValueError(f"{pp.size} predictions but {ob.size} observed fractions")
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(pp, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for k in range(bins):
        m = idx == k
        n = int(m.sum())
        mp = float(pp[m].mean()) if n else float("nan")
        mo = float(ob[m].mean()) if n else float("nan")
        if n:
            ece += n / max(pp.size, 1) * abs(mp - mo)
        rows.append({"lo": float(edges[k]), "hi": float(edges[k + 1]), "n": n, "mean_predicted": mp,
                     "mean_observed": mo})
    return {"ece": float(ece) if pp.size else float("nan"), "bins": rows}


#: the negatives diverging pairs are told apart from, by name
IDENTIFICATION_NEGATIVES: dict[str, tuple[str, ...]] = {
    "high_agreement": ("high_agreement_preference", "high_agreement_tie"),
    "high_agreement_preference": ("high_agreement_preference",),
}


def divergence_identification(classes: Sequence[str], abs_gap: np.ndarray,
                              uncertainty: np.ndarray | None) -> dict[str, dict[str, float | None]]:
    """AUROC of telling diverging (all) pairs from high-agreement ones, by each signal a model offers.

    ``abs_gap``: −|Δr| is the score (a small gap reads as "annotators would split"), all a Bradley-Terry
    model can offer; ``uncertainty``: the pair's predicted spread (:func:`pair_preference`), higher reads as
    diverging. Negatives: every high-agreement pair (preferences and ties), and the preferences alone
    (a tie is also a small gap, and two equal narrow rating distributions overlap fully).
    """
    cls = np.asarray(classes)
    out: dict[str, dict[str, float | None]] = {}
    for name, negatives in IDENTIFICATION_NEGATIVES.items():
        keep = (cls == "diverging") | np.isin(cls, negatives)
        pos = cls[keep] == "diverging"
        out[name] = {"abs_gap": auroc(-np.asarray(abs_gap, dtype=float)[keep], pos),
                     "uncertainty": None if uncertainty is None else auroc(np.asarray(uncertainty)[keep], pos),
                     "n_diverging": int(pos.sum()), "n_high_agreement": int((~pos).sum())}
    return out


def observed_fraction(votes: Sequence[Sequence[float]]) -> np.ndarray:
    """Share of annotators preferring A, ties counting half (the calibration target)."""
    return np.array([votes_to_target_prob(list(v)) for v in votes], dtype=float)


# ------------------------------------------------------------------------------------------- suite
@dataclass
class DivergenceOptions:
    strong: float = field(default=2.0, metadata={
        "help": "vote strength that counts as a significant preference (diverging needs one; substantial "
                "needs one on both sides)"})
    model_type: str = field(default="bt", metadata={
        "help": "bt: headline metric mean sigmoid(|r_a - r_b|), the paper's P(C > R); regression: mean |r_a - r_b|"})
    aggregation: str = field(default="majority", metadata={
        "help": "how the annotators' side is aggregated for mean_p_majority and the histogram: majority "
                "(majority vote) or sum (summed strengths)"})

    def __post_init__(self) -> None:
        if self.model_type not in ("bt", "regression"):
            raise ValueError(f"model_type must be 'bt' or 'regression', got {self.model_type!r}")
        if self.aggregation not in ("majority", "sum"):
            raise ValueError(f"aggregation must be 'majority' or 'sum', got {self.aggregation!r}")


def _votes(rec: Record) -> list[float]:
    """Signed per-annotator votes, > 0 preferring response A: from ``votes``, MultiPref annotation lists
    (``overall_pref`` strings) or HelpSteer2-Preference ``all_preferences_unprocessed`` (−100 dropped, sign
    flipped because HelpSteer2's < 0 means response 1 is better). For HelpSteer2 the paper's votes come
    from the disagreements release instead (:func:`_read_helpsteer2_disagreements`)."""
    raw = rec.raw
    try:
        if raw.get("votes") is not None:
            return [float(v) for v in raw["votes"]]
        if "normal_worker_annotations" in raw or "expert_worker_annotations" in raw:
            anns = list(raw.get("normal_worker_annotations") or []) + list(raw.get("expert_worker_annotations") or [])
            return [float(multipref_vote(a["overall_pref"])) for a in anns]
        if raw.get("all_preferences_unprocessed") is not None:
            return [-float(a["strength"]) for a in raw["all_preferences_unprocessed"] if float(a["strength"]) != -100]
    except (KeyError, TypeError, ValueError) as e:
        name = "votes" if raw.get("votes") is not None else (
            "all_preferences_unprocessed" if "all_preferences_unprocessed" in raw else "overall_pref")
        raise rec.error(name, f"unreadable vote ({e})") from e
    raise rec.error("votes", "need votes, MultiPref annotations, HelpSteer2 preferences or HelpSteer2 "
                    "disagreements rows", "missing_field")


def _parse_divergence(rec: Record, opts: DivergenceOptions) -> dict[str, Any]:
    p = rec.prompt("prompt", "text")
    a = rec.text("response_a", "completion_a", "response_1")
    b = rec.text("response_b", "completion_b", "response_2")
    votes = _votes(rec)
    if not votes:
        raise rec.error("votes", "no valid vote", "missing_field")
    return {"id": rec.raw.get("id", rec.raw.get("comparison_id", rec.index)), "votes": votes,
            "slots": rec.add(p, [a, b])}


def _is_disagreements_row(r: Any) -> bool:
    return isinstance(r, Mapping) and "response" in r and isinstance(r.get("helpfulness"), list)


def _read_helpsteer2_disagreements(suite: Suite, data: Any, split: str | None,
                                   opts: DivergenceOptions) -> SuiteData | None:
    """HelpSteer2 disagreements rows (``data_dir="disagreements"``: one response per row, per-annotator
    lists): rows 2k and 2k+1 answer one prompt; the votes are the per-annotator helpfulness differences
    (:func:`rmlib.data.annotations.rating_difference_votes`: 0 tie, 1 slight, ≥ 2 significant), as in
    Diverging Preferences (arXiv 2410.14632). A pair whose two rows list different numbers of annotators
    cannot be aligned annotator by annotator; it is skipped and counted (``skipped_unaligned``)."""
    from rmlib.data.formats import read_records
    from rmlib.data.helpsteer2 import parse_helpsteer2_prompt
    from rmlib.data.schema import DataError

    if isinstance(data, (list, tuple)):
        source, rows = "<records>", list(enumerate(data))
    else:
        if not Path(os.fspath(data)).exists():
            return None
        source, rows = str(data), list(read_records(data, split=split))
    if not rows or not _is_disagreements_row(rows[0][1]):
        return None
    items: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    unaligned = 0
    for k in range(0, len(rows), 2):
        (i, first) = rows[k]
        if isinstance(first, DataError):
            raise first
        if k + 1 >= len(rows):
            raise DataError(source, i, "prompt", "last row has no partner row (pairs are rows 2k, 2k+1)",
                            "unpaired_row")
        j, second = rows[k + 1]
        if isinstance(second, DataError):
            raise second
        rec = Record(first, source, i, items)
        if not _is_disagreements_row(second) or second.get("prompt") != first.get("prompt"):
            raise DataError(source, j, "prompt", f"differs from the prompt of its partner record {i} "
                            "(HelpSteer2 pairs rows 2k and 2k+1)", "pair_mismatch")
        ha, hb = first["helpfulness"], second["helpfulness"]
        if len(ha) != len(hb):
            unaligned += 1
            continue
        prompt = parse_helpsteer2_prompt(rec.text("prompt"))
        slots = rec.add(prompt, [rec.text("response"), Record(second, source, j, items).text("response")])
        records.append({"id": i // 2, "votes": rating_difference_votes(ha, hb), "slots": slots})
    if not records:
        raise DataError(source, None, "helpfulness", "no pair with the same annotators on both rows", "bad_value")
    return SuiteData(suite.name, records, items, f"{source} (helpsteer2 disagreements)", opts,
                     info={"skipped_unaligned": unaligned})


def _metrics_divergence(d: SuiteData, scores: Scores, opts: DivergenceOptions) -> Report:
    a, b = pair_scores(d, scores.reward)
    votes = [r["votes"] for r in d.records]
    kind = scores.distribution
    side_a = {"reward": a, **{k: pair_scores(d, v)[0] for k, v in scores.outputs.items()}}
    side_b = {"reward": b, **{k: pair_scores(d, v)[1] for k, v in scores.outputs.items()}}
    p_a, unc = pair_preference(kind, side_a, side_b)
    model_type = "bt" if kind is not None else opts.model_type  # a distribution gives its own P(A > B)
    res = divergence_table(votes, a, b, strong=opts.strong, model_type=model_type, rule=opts.aggregation,
                           p_a=p_a if kind is not None else None, uncertainty=unc)
    ident = divergence_identification(res["classes"], np.abs(a - b), unc)
    calib = calibration(p_a, observed_fraction(votes)) if model_type == "bt" else None
    # histogram of the side most annotators preferred vs the other, over pairs with a majority side
    side_all = [preferred_side(v, opts.aggregation) for v in votes]
    pref = [i for i, c in enumerate(res["classes"]) if c in ("high_agreement_preference", "diverging")
            and side_all[i] != 0]
    side = np.array([side_all[i] for i in pref], dtype=float)
    hist = {"kind": "reward_histogram", "chosen": np.where(side > 0, a[pref], b[pref]),
            "rejected": np.where(side > 0, b[pref], a[pref]),
            "title": "Diverging preferences: majority-preferred vs other response"}
    metrics: dict[str, Any] = {"counts": res["counts"], "model_type": kind or opts.model_type,
                               "metric": {row["class"]: row["metric"] for row in res["rows"]},
                               "auroc": {neg: {k: v for k, v in row.items() if k in ("abs_gap", "uncertainty")}
                                         for neg, row in ident.items()}}
    tables = {"classes": res["rows"],
              "identification": [{"negatives": neg, **row} for neg, row in ident.items()]}
    plots: dict[str, Any] = {"reward_histogram": hist} if pref else {}
    if calib is not None:
        metrics["ece"] = calib["ece"]
        tables["calibration"] = calib["bins"]
        plots["reliability"] = {"kind": "reliability", "bins": calib["bins"], "ece": calib["ece"],
                                "title": f"P(A > B) vs the annotators' vote share ({kind or 'bt'})"}
    if "skipped_unaligned" in d.info:
        metrics["skipped_unaligned"] = d.info["skipped_unaligned"]
    notes_extra = ["auroc: how well a signal tells diverging (all) pairs from high-agreement ones (negatives: "
                   "'high_agreement' = preferences and ties, 'high_agreement_preference' = preferences only); "
                   "abs_gap scores a pair by -|r_a - r_b| (all a Bradley-Terry model offers), uncertainty by the "
                   "pair's predicted spread (mean_var: sqrt(sigma_a^2 + sigma_b^2); rating_ce: the overlap "
                   "sum_k min(p_a,k, p_b,k)); 0.5 is chance."]
    if calib is not None:
        notes_extra.append("ece: expected calibration error of P(A > B) (bt: sigmoid(r_a - r_b); mean_var: "
                           "Phi(dmu / sqrt(sigma_a^2 + sigma_b^2)); rating_ce: P(X_a > X_b) + P(X_a = X_b)/2) "
                           "against the share of annotators preferring A (ties half), 10 equal-width bins.")
    return Report("divergence", metrics=metrics, tables=tables,
                  notes=["Votes > 0 prefer response A; |vote| >= strong is significant. Classes in order of "
                         "precedence: diverging (all) = votes on both sides and a significant one (slight-only "
                         f"disagreement is not diverging); substantial = a vote of strength >= {opts.strong:g} on "
                         "both sides; high-agreement tie = a strict majority of ties; high-agreement preference = "
                         "a majority side and no vote against it; other = the leftover (slight-only disagreement).",
                         "metric (bt) = mean_p_favoured = mean sigmoid(|r_a - r_b|), P(C > R) with C, R the reward "
                         "model's own chosen and rejected (Diverging Preferences, arXiv 2410.14632); metric "
                         "(regression) = mean |r_a - r_b|; mean_p_majority orients the margin by the "
                         f"annotators' {opts.aggregation} side instead.", *notes_extra],
                  plots=plots)


SUITE = Suite("divergence", "diverging preferences: reward gaps by annotator-agreement class", DivergenceOptions,
              _parse_divergence, _metrics_divergence, read=_read_helpsteer2_disagreements)
