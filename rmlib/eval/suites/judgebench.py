"""JudgeBench: the two-game scoring rule for a reward model that scores each response on its own (one
scalar per prompt + response), as pure functions of scores, and the ``judgebench`` suite (record parser,
metrics).

Source: JudgeBench (Tan et al., arXiv 2410.12784; github.com/ScalerLab/JudgeBench, ``utils/metrics.py``
``compute_final_metrics`` and the reward-model judges of ``utils/judges.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rmlib.eval.registry import Record, Scores, Suite, SuiteData
from rmlib.eval.report import Report
from rmlib.eval.suites._common import NoOptions, pair_scores

__all__ = ["JUDGEBENCH_CATEGORIES", "judgebench_pair_net", "judgebench_scores"]


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


# ------------------------------------------------------------------------------------------- suite
def _parse_judgebench(rec: Record, opts: NoOptions) -> dict[str, Any]:
    label = rec.get("label")
    if label not in ("A>B", "B>A"):
        raise rec.error("label", f"must be 'A>B' or 'B>A', got {label!r}")
    p = rec.prompt("question")
    return {"id": rec.raw.get("pair_id", rec.index), "source": str(rec.get("source")), "label": label,
            "slots": rec.add(p, [rec.text("response_A"), rec.text("response_B")])}


def _metrics_judgebench(d: SuiteData, scores: Scores, opts: NoOptions) -> Report:
    a, b = pair_scores(d, scores.reward)
    res = judgebench_scores(a, b, [r["label"] for r in d.records], [r["source"] for r in d.records])
    metrics: dict[str, Any] = {"overall": res["overall"], "category_mean": res["category_mean"], "n": res["n"],
                               "ties": res["ties"], **{k: v["accuracy"] for k, v in res["categories"].items()}}
    return Report("judgebench", metrics=metrics,
                  tables={"categories": [{"category": k, **v} for k, v in res["categories"].items()]},
                  notes=["Two games per pair, (A, B) and (B, A); a reward model's game says A>B only when "
                         "score(A) > score(B) (a tie goes to B, as upstream's reward-model judges); each game "
                         "adds +1 if it matches the label, -1 if it contradicts it; a pair is correct when the "
                         "net is > 0 (an exact score tie nets 0: not correct). Accuracy = correct pairs / all "
                         "pairs, per source prefix (mmlu-pro, livebench-reasoning, livebench-math, "
                         "livecodebench); overall = all pairs (upstream's Overall); category_mean = their "
                         "unweighted mean (JudgeBench, arXiv 2410.12784; ScalerLab/JudgeBench utils/metrics.py)."])


SUITE = Suite("judgebench", "JudgeBench: two-game netting per pair, per source category (ScalerLab/JudgeBench)",
              NoOptions, _parse_judgebench, _metrics_judgebench, hub_split="gpt")
