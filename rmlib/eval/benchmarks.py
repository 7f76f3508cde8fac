"""JudgeBench, RMB and PPE scoring rules, as pure functions of reward scores.

Each function reproduces the rule its benchmark publishes for a reward model that scores each response
on its own (one scalar per prompt + response):

* JudgeBench (Tan et al., arXiv 2410.12784; github.com/ScalerLab/JudgeBench, ``utils/metrics.py``
  ``compute_final_metrics`` and the reward-model judges of ``utils/judges.py``).
* RMB (Zhou et al., arXiv 2410.09893; github.com/Zhou-Zoey/RMB-Reward-Model-Benchmark, ``RMB_dataset``
  and ``eval/scripts/my_run_rm.py``).
* PPE, Preference Proxy Evaluations (Frick et al., "How to Evaluate Reward Models for RLHF", arXiv
  2410.14872; datasets ``lmarena-ai/PPE-Human-Preference-V1`` and ``lmarena-ai/PPE-*-Best-of-K``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["JUDGEBENCH_CATEGORIES", "judgebench_pair_net", "judgebench_scores", "rmb_scores",
           "ppe_preference_accuracy", "ppe_best_of_k"]

JUDGEBENCH_CATEGORIES: tuple[str, ...] = ("mmlu-pro", "livebench-reasoning", "livebench-math", "livecodebench")


def _rm_decision(score_a: float, score_b: float) -> str:
    """One JudgeBench game judged by a reward model: ``'A>B' if score_A > score_B else 'B>A'`` (the
    upstream reward-model judges), so an exact tie goes to B."""
    return "A>B" if score_a > score_b else "B>A"


def _flip(decision: str) -> str:
    return {"A>B": "B>A", "B>A": "A>B"}[decision]


def judgebench_pair_net(score_a: float, score_b: float, label: str) -> int:
    """Net of JudgeBench's two games for one pair: game 1 shows (A, B), game 2 (B, A) with its decision
    flipped back; each game adds +1 when it equals ``label`` and −1 when it equals the flipped label.

    For a position-independent reward model both games agree unless the scores tie exactly: then game 1
    says B>A and the flipped game 2 says A>B, the net is 0 and the pair is not correct (upstream's
    ``n_tie``). So a pair is correct exactly when the labelled winner scores strictly higher.
    """
    if label not in ("A>B", "B>A"):
        raise ValueError(f"JudgeBench label must be 'A>B' or 'B>A', got {label!r}")
    games = [_rm_decision(score_a, score_b), _flip(_rm_decision(score_b, score_a))]
    return sum(1 if d == label else -1 if d == _flip(label) else 0 for d in games)


def judgebench_scores(scores_a: Sequence[float], scores_b: Sequence[float], labels: Sequence[str],
                      sources: Sequence[str]) -> dict[str, Any]:
    """JudgeBench accuracy: a pair is correct when its two-game net (:func:`judgebench_pair_net`) is > 0,
    and a score is correct pairs / **all** pairs (ties and losses both count in the denominator).

    Per category = pairs whose ``source`` starts with the category prefix (``mmlu-pro``,
    ``livebench-reasoning``, ``livebench-math``, ``livecodebench``), as upstream's ``include_fn``;
    ``overall`` = all pairs (upstream's "Overall", prefix ""); ``category_mean`` = unweighted mean of
    the categories present. Values are fractions in [0, 1] (upstream prints percentages).
    """
    nets = np.array([judgebench_pair_net(a, b, lab) for a, b, lab in zip(scores_a, scores_b, labels)])
    if not (len(nets) == len(sources) == len(labels)):
        raise ValueError("judgebench_scores: scores, labels and sources must have the same length")
    correct = nets > 0
    src = list(map(str, sources))
    cats = {}
    for c in JUDGEBENCH_CATEGORIES:
        m = np.array([s.startswith(c) for s in src], dtype=bool)
        if m.any():
            cats[c] = {"accuracy": float(correct[m].mean()), "n": int(m.sum()),
                       "ties": int(np.sum(nets[m] == 0))}
    return {"overall": float(correct.mean()) if correct.size else float("nan"), "n": int(correct.size),
            "ties": int(np.sum(nets == 0)), "categories": cats,
            "category_mean": float(np.mean([v["accuracy"] for v in cats.values()])) if cats else float("nan"),
            "pair_correct": correct.tolist()}


def rmb_scores(kinds: Sequence[str], best_scores: Sequence[float], other_scores: Sequence[Sequence[float]],
               categories: Sequence[str]) -> dict[str, Any]:
    """RMB accuracy for ``Pairwise_set`` and ``BoN_set`` rows.

    * pairwise (``kind="pairwise"``): correct when ``score(chosen) > score(reject)`` strictly (the
      released ``my_run_rm.py``: ``1 if chosen > rejected else 0``);
    * best-of-N (``kind="bon"``): correct only when ``bon_best`` scores strictly above **every** response
      of its ``loser_list`` (RMB, arXiv 2410.09893: the RM must rank the best response above all the
      others); a tie with any loser is wrong.

    Accuracy = mean over rows, per kind, per (kind, goal) with goal the second part of ``category_path``
    (``Helpfulness`` / ``Harmlessness``), and per ``category_path``; every row weighs 1.
    """
    rows = []
    for kind, best, others, cat in zip(kinds, best_scores, other_scores, categories):
        if kind not in ("pairwise", "bon"):
            raise ValueError(f"RMB row kind must be 'pairwise' or 'bon', got {kind!r}")
        o = np.asarray(others, dtype=float)
        if o.size == 0:
            raise ValueError("an RMB row needs at least one rejected / loser response")
        rows.append((kind, bool(np.all(float(best) > o)), str(cat)))
    out: dict[str, Any] = {"n": len(rows)}
    groups: dict[str, list[bool]] = defaultdict(list)
    goals: dict[str, list[bool]] = defaultdict(list)
    paths: dict[str, list[bool]] = defaultdict(list)
    for kind, ok, cat in rows:
        groups[kind].append(ok)
        parts = cat.split("/")
        goals[f"{kind}/{parts[1] if len(parts) > 1 else 'all'}"].append(ok)
        paths[cat].append(ok)
    out["kinds"] = {k: {"accuracy": float(np.mean(v)), "n": len(v)} for k, v in groups.items()}
    out["goals"] = {k: {"accuracy": float(np.mean(v)), "n": len(v)} for k, v in sorted(goals.items())}
    out["categories"] = {k: {"accuracy": float(np.mean(v)), "n": len(v)} for k, v in sorted(paths.items())}
    out["row_correct"] = [ok for _, ok, _ in rows]
    return out


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
