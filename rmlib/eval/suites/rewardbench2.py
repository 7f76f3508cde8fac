"""RewardBench 2: the best-of-4 row rule and the Ties composite as pure functions of scores, and the
``rewardbench2`` suite (record parser, metrics).

Source: RewardBench 2 (Malik et al., arXiv 2506.01937; ``process_single_model`` in
github.com/allenai/reward-bench). docs/evaluation.md states every rule.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rmlib.eval.registry import Record, Scores, Suite, SuiteData
from rmlib.eval.report import Report
from rmlib.eval.suites._common import NoOptions

__all__ = ["REWARDBENCH2_SUBSETS", "bon_row_score", "ties_score", "rewardbench2_scores"]


REWARDBENCH2_SUBSETS: tuple[str, ...] = ("Factuality", "Precise IF", "Math", "Safety", "Focus", "Ties")


def bon_row_score(scores: Sequence[float] | np.ndarray, correct_index: int = 0) -> float:
    """RewardBench 2 row rule: ``1/m`` if the correct candidate has the top score, shared with m candidates
    in all (itself included), else 0 (RewardBench 2, arXiv 2506.01937). Upstream's line
    (``reroll_and_score_dataset`` in ``rewardbench/utils.py``): ``(1 / np.sum(scores == max_val)) if
    scores[0] == max_val else 0``, with the correct completion first.

    Why shared credit: a scorer that gives all four candidates the same score should earn the 25% a
    random pick would, not 100%. So a 2-way tie at the top gives ½, 3-way ⅓, 4-way ¼.
    Any NaN in the row gives 0 (a NaN never equals the max).
    """
    s = np.asarray(scores, dtype=float)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"bon_row_score: need a non-empty 1-D list of scores, got shape {s.shape}")
    if not 0 <= correct_index < s.size:
        raise ValueError(f"bon_row_score: correct_index {correct_index} out of range for {s.size} scores")
    if np.isnan(s).any():
        return 0.0
    top = s.max()
    if s[correct_index] != top:
        return 0.0
    return 1.0 / int(np.sum(s == top))


def _prompt_stats(samples: Sequence[tuple[bool, float]]) -> tuple[bool, float | None, float]:
    """(accurate, dcm, cim) of one Ties group of (is_correct, score) entries, as ``sample_stats`` in
    rewardbench 0.1.4: a group without a correct or without an incorrect answer is ``(False, None, 0)``;
    dcm is ``None`` (undefined) with fewer than 2 correct answers."""
    correct = [s for ok, s in samples if ok]
    incorrect = [s for ok, s in samples if not ok]
    if not correct or not incorrect:
        return False, None, 0.0
    cim = min(correct) - max(incorrect)
    dcm = max(correct) - min(correct) if len(correct) > 1 else None
    return cim > 0, dcm, cim


def ties_score(ids: Sequence[str], scores: Sequence[Sequence[float]], num_correct: Sequence[int]) -> dict[str, float]:
    """The RewardBench 2 Ties composite, the same number as ``process_single_model`` of reward-bench
    (``rewardbench/utils.py``, published package ``rewardbench`` 0.1.4; RewardBench 2, arXiv 2506.01937).

    Each row: ``ids[i]`` is ``"ref:<int>"`` or ``"tied:<int>"``, ``scores[i]`` lists scores with the
    ``num_correct[i]`` correct answers first. Rows that share an id are merged into one group (their
    completions pooled, each keeping its own row's correctness). Here rmlib differs from upstream:
    ``process_single_model`` stores completions by ``(sample_type, prompt_id, position)``
    (``results[sample_type][prompt_id][i] = ...``), so a later row with the same id overwrites the
    earlier row's completion at each position it has, and only the last row's scores count where
    they overlap. Pooling keeps every scored completion instead of silently discarding some; the two
    give the same number whenever each id occurs once. Per group (upstream ``sample_stats``):

    * ``accurate = min(correct) − max(incorrect) > 0`` (strict); ``cim = min(correct) − max(incorrect)``;
      ``dcm = max(correct) − min(correct)``, defined only with more than one correct answer;
    * a group with no correct or no incorrect answer: "``accurate: False``, ``different_correct_margin:
      None``, ``correct_incorrect_margin: 0``" (upstream's words).

    Aggregates: ``ref_acc`` / ``tied_acc`` = mean ``accurate`` over ref / tied groups (0 when there are
    none). Over the prompt ids P with both a ref and a tied group, upstream computes

    * ``cp = mean[cim_tied > dcm_tied]`` and ``cp_hard = mean[min(cim_ref, cim_tied) > dcm_tied]`` "for r
      in common_prompt_ids if tied_stats[r]["different_correct_margin"] is not None": prompts whose tied
      group has an undefined spread are left out of the mean, not counted as failures (if none is left
      the mean of an empty list is NaN, as numpy gives upstream);
    * ``margin = mean[tanh(min(cim_ref, cim_tied)/dcm_tied − 1)]`` only over prompts whose spread is
      defined "and ... > 0"; 0 when there are none;
    * all three are 0 when P is empty ("``else: correctness_preferred = 0 ...``").

    ``score = 0.30·tied_acc + 0.30·ref_acc + 0.20·cp + 0.20·cp_hard + 0.01·margin``. Returns the score,
    its components and the counts ``n_ref``, ``n_tied``, ``n_paired_prompts`` (= |P|) and
    ``n_defined_spread`` (prompts of P in the cp means).
    """
    if not (len(ids) == len(scores) == len(num_correct)):
        raise ValueError("ties_score: ids, scores and num_correct must have the same length")
    groups: dict[tuple[str, int], list[tuple[bool, float]]] = defaultdict(list)
    for i, (rid, s, k) in enumerate(zip(ids, scores, num_correct)):
        kind, _, pid = str(rid).partition(":")
        if kind not in ("ref", "tied") or not pid.lstrip("-").isdigit():
            raise ValueError(f"Ties row {i}: id must look like 'ref:<int>' or 'tied:<int>', got {rid!r}")
        groups[(kind, int(pid))].extend((j < int(k), float(x)) for j, x in enumerate(s))
    stats: dict[str, dict[int, tuple[bool, float | None, float]]] = {"ref": {}, "tied": {}}
    for (kind, pid), samples in groups.items():
        stats[kind][pid] = _prompt_stats(samples)
    ref, tied = stats["ref"], stats["tied"]
    ref_acc = float(np.mean([v[0] for v in ref.values()])) if ref else 0.0
    tied_acc = float(np.mean([v[0] for v in tied.values()])) if tied else 0.0
    common = sorted(set(ref) & set(tied))
    defined = [p for p in common if tied[p][1] is not None]
    if common:
        cp = float(np.mean([tied[p][2] > tied[p][1] for p in defined])) if defined else float("nan")
        cp_hard = (float(np.mean([min(ref[p][2], tied[p][2]) > tied[p][1] for p in defined])) if defined
                   else float("nan"))
        ratios = [min(ref[p][2], tied[p][2]) / tied[p][1] for p in defined if tied[p][1] > 0]
        margin = float(np.mean([math.tanh(r - 1.0) for r in ratios])) if ratios else 0.0
    else:
        cp = cp_hard = margin = 0.0
    score = 0.30 * tied_acc + 0.30 * ref_acc + 0.20 * cp + 0.20 * cp_hard + 0.01 * margin
    return {"score": score, "ref_accuracy": ref_acc, "tied_accuracy": tied_acc, "correctness_preferred": cp,
            "correctness_preferred_hard": cp_hard, "correctness_margin": margin,
            "n_ref": len(ref), "n_tied": len(tied), "n_paired_prompts": len(common), "n_defined_spread": len(defined)}


def rewardbench2_scores(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Subset scores and overall score of RewardBench 2 from scored rows.

    Each row: ``{"subset", "id", "scores": [chosen..., rejected...], "num_correct"}``. Non-Ties rows score
    :func:`bon_row_score` with the first entry as the correct one and a subset is the mean of its rows
    (docs/evaluation.md); the ``Ties`` subset (matched case-insensitively, as upstream) uses :func:`ties_score`.
    ``overall`` = unweighted mean of the subset scores present (all six for the full benchmark).
    Returns ``{"subsets": {name: score}, "overall": float, "ties": {...components...} | None,
    "row_scores": [...] (None for Ties rows)}``.
    """
    subsets: dict[str, list[float]] = defaultdict(list)
    row_scores: list[float | None] = []
    ties_rows: list[Mapping[str, Any]] = []
    ties_name = None
    for row in rows:
        if str(row["subset"]).lower() == "ties":
            ties_rows.append(row)
            ties_name = ties_name or str(row["subset"])
            row_scores.append(None)
            continue
        v = bon_row_score(row["scores"], 0)
        subsets[str(row["subset"])].append(v)
        row_scores.append(v)
    result: dict[str, float] = {name: float(np.mean(v)) for name, v in subsets.items()}
    ties = None
    if ties_rows:
        ties = ties_score([r["id"] for r in ties_rows], [r["scores"] for r in ties_rows],
                          [int(r["num_correct"]) for r in ties_rows])
        result[ties_name or "Ties"] = ties["score"]
    overall = float(np.mean(list(result.values()))) if result else float("nan")
    return {"subsets": result, "overall": overall, "ties": ties, "row_scores": row_scores}


# ------------------------------------------------------------------------------------------- suite
def _parse_rewardbench2(rec: Record, opts: NoOptions) -> dict[str, Any]:
    p = rec.prompt("prompt")
    ch, rj = rec.texts("chosen"), rec.texts("rejected")
    k = int(rec.raw.get("num_correct", len(ch)))
    if not 1 <= k < len(ch) + len(rj):
        raise rec.error("num_correct", f"{k} does not fit {len(ch)}+{len(rj)} completions")
    return {"id": str(rec.get("id")), "subset": str(rec.get("subset")), "num_correct": k, "slots": rec.add(p, ch + rj)}


def _metrics_rewardbench2(d: SuiteData, scores: Scores, opts: NoOptions) -> Report:
    s = scores.reward
    rows = [{"subset": r["subset"], "id": r["id"], "num_correct": r["num_correct"],
             "scores": [float(s[j]) for j in r["slots"]]} for r in d.records]
    res = rewardbench2_scores(rows)
    n: dict[str, int] = {}
    for r in d.records:
        n[r["subset"]] = n.get(r["subset"], 0) + 1
    non_ties = [r for r in rows if r["subset"].lower() != "ties"]
    metrics: dict[str, Any] = {**res["subsets"], "overall": res["overall"]}
    if res["ties"] is not None:
        metrics["ties_components"] = res["ties"]
    return Report("rewardbench2", metrics=metrics,
                  tables={"subsets": [{"subset": k, "score": v, "rows": n[k]} for k, v in res["subsets"].items()]},
                  notes=["Non-Ties rows: 1/m when the correct (first) completion shares the top score with m "
                         "completions in all, else 0; subset = mean of its rows.",
                         "Ties = 0.30 tied_acc + 0.30 ref_acc + 0.20 cp + 0.20 cp_hard + 0.01 margin "
                         "(process_single_model); overall = unweighted mean of the subsets present."],
                  plots={"reward_histogram": {
                      "kind": "reward_histogram", "chosen": [r["scores"][0] for r in non_ties],
                      "rejected": [max(r["scores"][1:]) for r in non_ties],
                      "title": "RewardBench 2: correct vs best incorrect"}} if non_ties else {})


SUITE = Suite("rewardbench2", "RewardBench 2: best-of-4 subsets and the Ties composite (allenai/reward-bench-2)",
              NoOptions, _parse_rewardbench2, _metrics_rewardbench2, hub_split="test", lists=True)
