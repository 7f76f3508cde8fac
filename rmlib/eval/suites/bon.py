"""Best-of-N: does the reward model pick the best candidate among the first n?

For each prompt with candidates, the reward model's scores and either gold scores or a known best index,
accuracy@n asks whether the RM's top-scored candidate among the first n is the gold best among those n.
Averaged over prompts, and swept over n, this gives the curve in the Skywork-Reward-V2 style BoN plots. The
``bon`` suite (options, record parser, metrics) is at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rmlib.eval.registry import Record, Scores, Suite, SuiteData
from rmlib.eval.report import Report

__all__ = ["BonOptions", "bon_prompt_credit", "bon_accuracy_at", "bon_curve", "is_correctness"]


def is_correctness(gold_scores: Sequence[Sequence[float]]) -> bool:
    """True when every gold score is 0 or 1: correctness labels (a verifier's pass/fail), not graded scores."""
    return all(float(g) in (0.0, 1.0) for row in gold_scores for g in row)


def bon_prompt_credit(scores: Sequence[float] | np.ndarray, n: int, *, gold_scores: Sequence[float] | None = None,
                      best_index: int | None = None, correctness: bool = False) -> float | None:
    """Credit of one prompt at N = n, or ``None`` when the prompt does not count at this n.

    Only the first ``n`` candidates are used. The gold best set is every candidate whose gold score equals
    the maximum gold score among them (gold ties: any of them is a correct pick), or ``{best_index}``.
    Tie rule on the RM side (same as RewardBench 2's shared credit): with T = the candidates sharing the
    RM's top score, credit = |T ∩ gold best| / |T|, the expected accuracy of breaking the tie at random.
    So a unique correct top gives 1, a 2-way top tie with one correct ½.

    ``correctness=True`` (gold scores are 0/1 correctness, e.g. PPE's verified answers): credit = the
    correctness of the pick, mean gold over T. The two rules differ only when every candidate is wrong:
    there "the best among them" is any of them, which would give every pick full credit, while the
    pick is in fact wrong, so it earns 0 (best-of-K as reported on correctness benchmarks: the accuracy
    of the selected response).
    A prompt does not count (``None``) when it has fewer than n candidates, or when ``best_index`` ≥ n
    (the known best is not among the first n, so the gold best among them is unknown).
    A NaN RM score never counts as top; all-NaN gives 0.
    """
    if (gold_scores is None) == (best_index is None):
        raise ValueError("give exactly one of gold_scores or best_index")
    s = np.asarray(scores, dtype=float)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if s.size < n:
        return None
    s = s[:n]
    if best_index is not None:
        if best_index >= n:
            return None
        gold_best = np.zeros(n, dtype=bool)
        gold_best[best_index] = True
    else:
        g = np.asarray(gold_scores, dtype=float)
        if g.size != np.asarray(scores).size:
            raise ValueError(f"gold_scores has {g.size} entries but there are {np.asarray(scores).size} candidates")
        g = g[:n]
        gold_best = g == np.nanmax(g)
        if correctness:
            if np.isnan(s).all():
                return 0.0
            return float(g[s == np.nanmax(s)].mean())
    if np.isnan(s).all():
        return 0.0
    top = s == np.nanmax(s)
    return float(np.sum(top & gold_best) / np.sum(top))


def bon_accuracy_at(scores: Sequence[Sequence[float]], n: int, *, gold_scores: Sequence[Sequence[float]] | None = None,
                    best_index: Sequence[int] | None = None, correctness: bool = False) -> dict[str, Any]:
    """accuracy@n = mean credit (:func:`bon_prompt_credit`, with ``correctness``) over the prompts that
    count at n; every prompt weighs 1. Also reports ``gold_of_pick``: the mean gold score of the RM's pick
    among the first n (averaged over the tied top candidates), the quantity BoN reward curves usually
    plot; ``None`` without gold scores; and ``chance``: the accuracy of a uniformly random pick, the mean
    over the same prompts of (number of gold-best candidates among the first n) / n (with
    ``correctness``: the share of correct candidates, so 0 when all are wrong).
    Returns ``{"n", "accuracy", "prompts", "gold_of_pick", "chance"}``.
    """
    credits: list[float] = []
    golds: list[float] = []
    chance: list[float] = []
    for i, s in enumerate(scores):
        g = None if gold_scores is None else gold_scores[i]
        b = None if best_index is None else int(best_index[i])
        c = bon_prompt_credit(s, n, gold_scores=g, best_index=b, correctness=correctness)
        if c is None:
            continue
        credits.append(c)
        if g is None:
            chance.append(1.0 / n)
        else:
            sv = np.asarray(s, dtype=float)[:n]
            gv = np.asarray(g, dtype=float)[:n]
            chance.append(float(gv.mean()) if correctness else float(np.sum(gv == np.nanmax(gv))) / n)
            top = sv == np.nanmax(sv) if not np.isnan(sv).all() else np.ones(n, dtype=bool)
            golds.append(float(gv[top].mean()))
    return {"n": n, "accuracy": float(np.mean(credits)) if credits else float("nan"), "prompts": len(credits),
            "gold_of_pick": (float(np.mean(golds)) if golds else float("nan")) if gold_scores is not None else None,
            "chance": float(np.mean(chance)) if chance else float("nan")}


def bon_curve(scores: Sequence[Sequence[float]], ns: Sequence[int] | None = None, *,
              gold_scores: Sequence[Sequence[float]] | None = None,
              best_index: Sequence[int] | None = None, correctness: bool = False) -> list[dict[str, Any]]:
    """:func:`bon_accuracy_at` for each n in ``ns`` (default 1 … the largest candidate count).

    Each n uses the first n candidates of every prompt with at least n, so the curve shows how the
    RM's pick degrades as the pool grows (at n = 1 accuracy is trivially 1).
    """
    if ns is None:
        ns = range(1, max(len(s) for s in scores) + 1)
    return [bon_accuracy_at(scores, int(n), gold_scores=gold_scores, best_index=best_index, correctness=correctness)
            for n in ns]


# ------------------------------------------------------------------------------------------- suite
@dataclass
class BonOptions:
    ns: list[int] | None = field(default=None, metadata={
        "help": "the n values of the accuracy@n curve, e.g. [1,2,4,8] (default: 1 .. largest candidate count)"})
    gold: str = field(default="auto", metadata={
        "help": "correctness: gold scores are 0/1 and a prompt earns the correctness of the pick (0 when every "
                "candidate is wrong); score: a prompt earns credit for picking a best-gold candidate; auto: "
                "correctness when every gold score is 0 or 1"})

    def __post_init__(self) -> None:
        if self.gold not in ("auto", "correctness", "score"):
            raise ValueError(f"gold must be 'auto', 'correctness' or 'score', got {self.gold!r}")


def _parse_bon(rec: Record, opts: BonOptions) -> dict[str, Any]:
    p = rec.prompt("prompt")
    cands = rec.texts("candidates")
    entry: dict[str, Any] = {"id": rec.raw.get("id", rec.index), "slots": rec.add(p, cands)}
    if rec.raw.get("gold_scores") is not None:
        try:
            g = [float(x) for x in rec.raw["gold_scores"]]
        except (TypeError, ValueError) as e:
            raise rec.error("gold_scores", f"expected a list of numbers ({e})", "wrong_type") from e
        if len(g) != len(cands):
            raise rec.error("gold_scores", f"{len(g)} scores for {len(cands)} candidates")
        entry["gold_scores"] = g
    elif rec.raw.get("best_index") is not None:
        bi = rec.raw["best_index"]
        if not isinstance(bi, int) or isinstance(bi, bool) or not 0 <= bi < len(cands):
            raise rec.error("best_index", f"{bi!r} is not a candidate index (0..{len(cands) - 1})")
        entry["best_index"] = bi
    else:
        raise rec.error("gold_scores", "need gold_scores or best_index", "missing_field")
    return entry


def _metrics_bon(d: SuiteData, scores: Scores, opts: BonOptions) -> Report:
    s = scores.reward
    per_prompt = [[float(s[j]) for j in r["slots"]] for r in d.records]
    has_gold = ["gold_scores" in r for r in d.records]
    if any(has_gold) and not all(has_gold):
        raise ValueError("bon: give gold_scores for every prompt or best_index for every prompt, not a mix")
    correctness = False
    if all(has_gold):
        golds = [r["gold_scores"] for r in d.records]
        correctness = opts.gold == "correctness" or (opts.gold == "auto" and is_correctness(golds))
        if opts.gold == "correctness" and not is_correctness(golds):
            raise ValueError("bon: options.gold=correctness needs gold scores of 0 or 1")
        curve = bon_curve(per_prompt, opts.ns, gold_scores=golds, correctness=correctness)
    else:
        curve = bon_curve(per_prompt, opts.ns, best_index=[r["best_index"] for r in d.records])
    last = curve[-1]
    rule = ("gold = correctness (0/1): a prompt earns the correctness of the RM's pick (a k-way RM tie at the "
            "top averages the correctness of the tied); a prompt where every candidate is wrong earns 0"
            if correctness else
            "accuracy@n: does the RM's top candidate among the first n equal the gold best among those n; a k-way "
            "RM tie at the top earns (number of gold-best among the tied)/k; gold ties: any gold-best candidate "
            "counts")
    return Report("bon", metrics={f"accuracy@{last['n']}": last["accuracy"], "prompts": len(d.records),
                                  "gold": "correctness" if correctness else "score",
                                  "curve": {str(p["n"]): p["accuracy"] for p in curve}},
                  tables={"curve": curve},
                  notes=[rule + ". Prompts with fewer than n candidates (or best_index >= n) are left out at "
                         "that n."],
                  plots={"bon_curve": {"kind": "bon_curve", "curve": curve}})


SUITE = Suite("bon", "best-of-N accuracy@n against gold scores or a gold best index", BonOptions, _parse_bon,
              _metrics_bon, lists=True)
