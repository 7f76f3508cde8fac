"""PPE, Preference Proxy Evaluations: human-preference accuracy and best-of-K correctness as pure
functions of reward scores, and the ``ppe`` suite (options, record parser, metrics).

Source: Frick et al., "How to Evaluate Reward Models for RLHF", arXiv 2410.14872; datasets
``lmarena-ai/PPE-Human-Preference-V1`` and ``lmarena-ai/PPE-*-Best-of-K``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rmlib.eval.registry import Record, Scores, Suite, SuiteData
from rmlib.eval.report import Report

__all__ = ["PPEOptions", "ppe_preference_accuracy", "ppe_best_of_k"]


def ppe_preference_accuracy(scores_1: Sequence[float], scores_2: Sequence[float],
                            winners: Sequence[str]) -> dict[str, Any]:
    """PPE human-preference accuracy: over the battles with a winner (``winner`` = ``model_a`` →
    ``response_1`` preferred, ``model_b`` → ``response_2``), the share where the reward model scores the
    human's pick strictly higher (an exact tie is wrong). Battles judged ``tie`` / ``tie (bothbad)`` have
    no preferred response and are left out and counted (``n_ties_skipped``).

    The paper (arXiv 2410.14872) defines accuracy on the human-preference set as agreement with the
    human vote on non-tie pairs; parity with the lmarena/PPE code itself was not checked (the code
    could not be read here).
    """
    res = []
    skipped = 0
    for s1, s2, w in zip(scores_1, scores_2, winners):
        if w == "model_a":
            res.append(float(s1) > float(s2))
        elif w == "model_b":
            res.append(float(s2) > float(s1))
        elif str(w).startswith("tie"):
            skipped += 1
        else:
            raise ValueError(f"PPE winner must be model_a, model_b, tie or tie (bothbad), got {w!r}")
    return {"accuracy": float(np.mean(res)) if res else float("nan"), "n": len(res), "n_ties_skipped": skipped}


def ppe_best_of_k(scores: Sequence[Sequence[float]], correct: Sequence[Sequence[bool]], k: int = 32) -> dict[str, Any]:
    """PPE best-of-K correctness: per prompt the reward model picks its top-scored response among the
    first ``k`` (32 in the released sets), and the prompt earns that response's verified correctness
    (``scores`` column of the dataset: one bool per response); a k-way tie at the top averages the
    correctness of the tied responses, and a prompt whose responses are all wrong earns 0. The
    result is the mean over prompts; ``upper_bound`` is the share of prompts with at least one correct
    response among the k and ``random`` the mean share of correct responses (a random pick).
    """
    picks, upper, rand = [], [], []
    for s, c in zip(scores, correct):
        sv = np.asarray(s, dtype=float)[:k]
        cv = np.asarray(c, dtype=float)[:k]
        if sv.size != cv.size:
            raise ValueError(f"{sv.size} scores but {cv.size} correctness labels among the first {k}")
        if sv.size < k:
            raise ValueError(f"a prompt has {sv.size} responses, fewer than k = {k}")
        top = sv == np.nanmax(sv) if not np.isnan(sv).all() else np.ones(sv.size, dtype=bool)
        picks.append(float(cv[top].mean()) if not np.isnan(sv).all() else 0.0)
        upper.append(float(cv.max()))
        rand.append(float(cv.mean()))
    return {"accuracy": float(np.mean(picks)) if picks else float("nan"), "k": k, "prompts": len(picks),
            "upper_bound": float(np.mean(upper)) if upper else float("nan"),
            "random": float(np.mean(rand)) if rand else float("nan")}


# ------------------------------------------------------------------------------------------- suite
@dataclass
class PPEOptions:
    k: int = field(default=32, metadata={
        "help": "best-of-K rows: the RM picks among the first k responses (the released sets have 32)"})

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")


def _parse_ppe(rec: Record, opts: PPEOptions) -> dict[str, Any]:
    p = rec.prompt("prompt")
    if rec.raw.get("winner") is not None:
        return {"id": rec.raw.get("question_id", rec.index), "kind": "preference", "winner": str(rec.raw["winner"]),
                "slots": rec.add(p, [rec.text("response_1"), rec.text("response_2")])}
    correct = rec.get("scores")
    if not isinstance(correct, list) or not all(isinstance(c, (bool, int)) for c in correct):
        raise rec.error("scores", "expected a list of booleans (the verified correctness of each response)",
                        "wrong_type")
    if len(correct) < opts.k:
        raise rec.error("scores", f"{len(correct)} responses, fewer than options.k = {opts.k}")
    responses = [rec.text(f"response_{i + 1}") for i in range(opts.k)]
    return {"id": rec.raw.get("question_id", rec.index), "kind": "best_of_k",
            "correct": [bool(c) for c in correct[:opts.k]], "slots": rec.add(p, responses)}


def _metrics_ppe(d: SuiteData, scores: Scores, opts: PPEOptions) -> Report:
    s = scores.reward
    pref = [r for r in d.records if r["kind"] == "preference"]
    bok = [r for r in d.records if r["kind"] == "best_of_k"]
    metrics: dict[str, Any] = {}
    notes = []
    if pref:
        res = ppe_preference_accuracy([s[r["slots"][0]] for r in pref], [s[r["slots"][1]] for r in pref],
                                      [r["winner"] for r in pref])
        metrics.update(preference_accuracy=res["accuracy"], preference_n=res["n"],
                       preference_ties_skipped=res["n_ties_skipped"])
        notes.append("Human preference: accuracy over battles with a winner (model_a -> response_1, model_b -> "
                     "response_2) of score(winner) > score(other), strict; tie votes are left out and counted.")
    if bok:
        res = ppe_best_of_k([[s[j] for j in r["slots"]] for r in bok], [r["correct"] for r in bok], opts.k)
        metrics.update({f"best_of_{opts.k}": res["accuracy"], "best_of_k_prompts": res["prompts"],
                        "best_of_k_upper_bound": res["upper_bound"], "best_of_k_random": res["random"]})
        notes.append(f"Best-of-{opts.k}: each prompt earns the verified correctness of the RM's top-scored response "
                     "among its first k (a tie at the top averages the tied); all-wrong prompts earn 0.")
    notes.append("PPE (Frick et al., arXiv 2410.14872; lmarena-ai/PPE-* datasets). Parity with the lmarena/PPE "
                 "code was not verified.")
    return Report("ppe", metrics=metrics, notes=notes)


SUITE = Suite("ppe", "PPE: human-preference accuracy and best-of-K correctness (lmarena-ai/PPE-*)", PPEOptions,
              _parse_ppe, _metrics_ppe, hub_split="test", lists=True)
