"""The built-in benchmark suites, one :class:`~rmlib.eval.registry.Suite` object each.

Every suite here is: an options dataclass, a record parser, and a metric function that turns the parsed
records and their scores into a :class:`~rmlib.eval.report.Report` through the pure functions of
:mod:`rmlib.eval`. The scoring rules and their public sources are in docs/evaluation.md; each report also
carries them in its ``notes``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rmlib.eval.agreement import agreement_audit
from rmlib.eval.benchmarks import judgebench_scores, ppe_best_of_k, ppe_preference_accuracy, rmb_scores
from rmlib.eval.bon import bon_curve, is_correctness
from rmlib.eval.divergence import (
    calibration,
    divergence_identification,
    divergence_table,
    multipref_vote,
    observed_fraction,
    pair_preference,
    preferred_side,
    rating_difference_votes,
)
from rmlib.eval.pairwise import pairwise_accuracy
from rmlib.eval.registry import Record, Scores, Suite, SuiteData, register_suite
from rmlib.eval.report import Report
from rmlib.eval.rewardbench import (
    EXAMPLE_COUNTS,
    SECTIONS,
    SUBSET_MAPPING,
    rewardbench2_scores,
    rewardbench_v1_scores,
    rewardbench_v1_subset_accuracy,
)
from rmlib.eval.rmbench import rmbench_scores

__all__ = ["AgreementOptions", "BonOptions", "DivergenceOptions", "NoOptions", "PPEOptions", "PairsOptions",
           "RewardBenchOptions"]

_TIE_NOTE = "Pairs: chosen must score strictly higher; an exact tie counts as wrong."


def _pairs(d: SuiteData, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first slot, second slot) scores of every record: (chosen, rejected), or (A, B) for divergence."""
    return np.array([s[r["slots"][0]] for r in d.records]), np.array([s[r["slots"][1]] for r in d.records])


def _user_text(prompt: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in prompt if m["role"] == "user")


@dataclass
class NoOptions:
    """A suite without options."""


# ------------------------------------------------------------------------------------- rewardbench
@dataclass
class RewardBenchOptions:
    prior_sets: dict[str, float] | None = field(default=None, metadata={
        "help": "accuracies on the prior sets (anthropic_helpful, anthropic_hhh, shp, summarize) to add "
                "'Prior Sets' and overall_legacy, e.g. {shp: 0.8}"})


def _parse_rewardbench(rec: Record, opts: RewardBenchOptions) -> dict[str, Any]:
    p = rec.prompt("prompt")
    return {"id": rec.raw.get("id", rec.index), "subset": str(rec.get("subset")),
            "slots": rec.add(p, [rec.text("chosen"), rec.text("rejected")])}


def _metrics_rewardbench(d: SuiteData, scores: Scores, opts: RewardBenchOptions) -> Report:
    c, r_ = _pairs(d, scores.reward)
    subsets = [r["subset"] for r in d.records]
    acc = rewardbench_v1_subset_accuracy(c, r_, subsets)
    res = rewardbench_v1_scores(acc, opts.prior_sets)
    counts = {k: subsets.count(k) for k in acc}
    section_of = {sub: sec for sec, subs in SUBSET_MAPPING.items() for sub in subs}
    rows = [{"subset": k, "section": section_of.get(k), "accuracy": v, "n": counts[k], "weight": EXAMPLE_COUNTS[k]}
            for k, v in acc.items()]
    return Report("rewardbench", metrics={**res, "subsets": acc},
                  tables={"sections": [{"section": k, "score": res[k]} for k in SECTIONS], "subsets": rows},
                  notes=[_TIE_NOTE, "Subset accuracy = mean over its rows; section = EXAMPLE_COUNTS-weighted mean of "
                         "the subsets present (Reasoning = 1/2 math-prm + 1/2 mean of hep-*); a section with no "
                         "subset present scores 0.",
                         "overall = unweighted mean of the 4 sections; overall_legacy (with prior_sets) weighs "
                         "[Chat, Chat Hard, Safety, Reasoning, Prior Sets] as [2, 2, 2, 2, 1]."],
                  plots={"reward_histogram": {"kind": "reward_histogram", "chosen": c, "rejected": r_,
                                              "title": "RewardBench"}})


# ------------------------------------------------------------------------------------ rewardbench2
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


# ----------------------------------------------------------------------------------------- rmbench
def _parse_rmbench(rec: Record, opts: NoOptions) -> dict[str, Any]:
    p = rec.prompt("prompt")
    ch, rj = rec.texts("chosen", 3), rec.texts("rejected", 3)
    return {"id": rec.raw.get("id", rec.index), "domain": str(rec.get("domain")), "slots": rec.add(p, ch + rj)}


def _metrics_rmbench(d: SuiteData, scores: Scores, opts: NoOptions) -> Report:
    s = scores.reward
    c = np.array([[s[j] for j in r["slots"][:3]] for r in d.records])
    r_ = np.array([[s[j] for j in r["slots"][3:]] for r in d.records])
    res = rmbench_scores(c, r_, [r["domain"] for r in d.records])
    styles = ["concise", "detailed", "markdown"]
    tables: dict[str, list[dict[str, Any]]] = {
        "domains": [{"domain": k, "n": v["n"], "easy": v["easy"], "normal": v["normal"], "hard": v["hard"],
                     "score": v["score"]} for k, v in res["domains"].items()]}
    for dom, v in res["domains"].items():
        tables[f"matrix {dom} (rows: chosen style, columns: rejected style)"] = [
            {"chosen": styles[i], **{f"vs {styles[j]}": v["matrix"][i][j] for j in range(3)}} for i in range(3)]
    metrics = {**{k: v["score"] for k, v in res["domains"].items()},
               "easy": res["easy"], "normal": res["normal"], "hard": res["hard"], "overall": res["overall"]}
    return Report("rmbench", metrics=metrics, tables=tables,
                  notes=["A[i][j] = fraction with score(chosen[i]) > score(rejected[j]) (strict; a tie is wrong); "
                         "hard = mean of i<j cells, normal = diagonal, easy = i>j; domain = mean of the three.",
                         "safety-refuse and safety-response are pooled by example into safety; overall and "
                         "easy/normal/hard are unweighted means over the domains present."],
                  plots={"reward_histogram": {"kind": "reward_histogram", "chosen": c.reshape(-1),
                                              "rejected": r_.reshape(-1), "title": "RM-Bench (same-style pairs)"}})


# --------------------------------------------------------------------------------------------- bon
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


# ------------------------------------------------------------------------------- pairs, agreement
_GROUP_HELP = ("column (of the record, or of its 'meta') to group pairs by; without it a 'group' column is used "
               "when present")
_FORMAT_HELP = ("read the file with a dataset format of rmlib.data.formats (a name such as hh_rlhf, or 'auto') "
                "instead of plain prompt/chosen/rejected records")


@dataclass
class PairsOptions:
    group_column: str | None = field(default=None, metadata={"help": _GROUP_HELP})
    format: str | None = field(default=None, metadata={"help": _FORMAT_HELP})


@dataclass
class AgreementOptions:
    group_column: str | None = field(default=None, metadata={
        "help": "column (of the record, or of its 'meta') to group pairs by, instead of the safety keywords"})
    format: str | None = field(default=None, metadata={"help": _FORMAT_HELP})
    length_k: int = field(default=20, metadata={
        "help": "length-matched control: keep pairs with |words(chosen) - words(rejected)| <= length_k (the "
                "safety-rubric audit's stratum is 20 words)"})
    rating_attribute: str = field(default="helpfulness", metadata={
        "help": "with a ratings format (options.format=helpsteer2): the attribute whose higher rating makes a "
                "response chosen; equal ratings are skipped and counted"})
    refusal_lexicon: list[str] | None = field(default=None, metadata={
        "help": "refusal phrases (default rmlib.eval.DEFAULT_REFUSAL_LEXICON)"})
    group_keywords: list[str] | None = field(default=None, metadata={
        "help": "keywords that put a prompt in the 'safety' group (default rmlib.eval.DEFAULT_SAFETY_KEYWORDS)"})
    confidence: float = field(default=0.95, metadata={"help": "confidence level of the Wilson intervals"})
    scorer_name: str = field(default="model", metadata={"help": "row name of a single scorer"})

    def __post_init__(self) -> None:
        if self.length_k < 0:
            raise ValueError(f"length_k must be >= 0, got {self.length_k}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")


def _parse_pair(rec: Record, opts: PairsOptions | AgreementOptions) -> dict[str, Any]:
    c, implicit = rec.response("chosen")
    r, _ = rec.response("rejected")
    p = rec.prompt("prompt") if rec.raw.get("prompt") is not None else implicit
    if p is None:
        raise rec.error("prompt", "missing (and chosen is not a conversation)", "missing_field")
    gcol = opts.group_column or "group"
    meta = rec.raw.get("meta") if isinstance(rec.raw.get("meta"), Mapping) else {}
    if opts.group_column is not None and gcol not in rec.raw and gcol not in meta:
        raise rec.error(gcol, "group column missing (looked in the record and its meta)", "missing_field")
    group = rec.raw[gcol] if gcol in rec.raw else meta.get(gcol)
    return {"id": rec.raw.get("id", rec.index), "group": group, "slots": rec.add(p, [c, r]),
            "prompt_text": _user_text(p)}


def _read_pairs_with_format(suite: Suite, data: Any, split: str | None,
                            opts: PairsOptions | AgreementOptions) -> SuiteData | None:
    """With ``options.format``: pairs through :func:`rmlib.data.formats.load` (hh-rlhf, UltraFeedback,
    HelpSteer2-Preference, ...); the group is read from the example's ``meta``."""
    if opts.format is None:
        return None
    from rmlib.data.formats import load
    from rmlib.data.schema import DataError

    loaded = load(data, None if opts.format == "auto" else opts.format, split=split)
    examples = loaded.examples
    info: dict[str, Any] = {}
    if loaded.kind == "ratings" and isinstance(opts, AgreementOptions):
        from rmlib.data.helpsteer2 import rating_pairs

        examples, info = rating_pairs(examples, opts.rating_attribute, str(data))
    elif loaded.kind != "pairs":
        raise ValueError(f"{suite.name}: format {loaded.format!r} gives {loaded.kind}, not preference pairs"
                         + (" (the agreement suite builds pairs from ratings)" if loaded.kind == "ratings" else ""))
    items: list[dict[str, Any]] = []
    gcol = opts.group_column or "group"
    records = []
    for i, ex in enumerate(examples):
        if opts.group_column is not None and gcol not in ex.meta:
            raise DataError(str(data), i, gcol, "group column missing", "missing_field")
        p = list(ex.prompt)
        slots = Record({}, str(data), i, items).add(p, [ex.chosen, ex.rejected])
        records.append({"id": ex.meta.get("id", i), "group": ex.meta.get(gcol), "slots": slots,
                        "prompt_text": _user_text(p)})
    return SuiteData(suite.name, records, items, f"{data} ({loaded.format})", opts, info=info)


def _metrics_pairs(d: SuiteData, scores: Scores, opts: PairsOptions) -> Report:
    c, r_ = _pairs(d, scores.reward)
    groups = [r["group"] for r in d.records]
    res = pairwise_accuracy(c, r_, groups if any(g is not None for g in groups) else None)
    tables = {}
    if "groups" in res:
        tables["groups"] = [{"group": k, **v} for k, v in res["groups"].items()]
    return Report("pairs", metrics={k: v for k, v in res.items() if k != "groups"}, tables=tables,
                  notes=[_TIE_NOTE, "Every pair weighs 1, overall and inside its group."],
                  plots={"reward_histogram": {"kind": "reward_histogram", "chosen": c, "rejected": r_}})


def _metrics_agreement(d: SuiteData, scores: Scores, opts: AgreementOptions) -> Report:
    ci = [r["slots"][0] for r in d.records]
    ri = [r["slots"][1] for r in d.records]
    chosen: dict[str, np.ndarray] = {}
    rejected: dict[str, np.ndarray] = {}
    if scores.heads is not None:
        for h, name in enumerate(scores.head_names):
            chosen[name], rejected[name] = scores.heads[ci, h], scores.heads[ri, h]
    if scores.heads is None or scores.weighted:
        key = f"{opts.scorer_name} (weighted heads)" if scores.heads is not None else opts.scorer_name
        chosen[key], rejected[key] = scores.reward[ci], scores.reward[ri]
    groups = [str(r["group"]) for r in d.records] if opts.group_column is not None else None
    audit = agreement_audit(chosen, rejected, chosen_texts=[d.items[j]["response"] for j in ci],
                            rejected_texts=[d.items[j]["response"] for j in ri],
                            prompts=[r["prompt_text"] for r in d.records], groups=groups, length_k=opts.length_k,
                            refusal_lexicon=opts.refusal_lexicon, group_keywords=opts.group_keywords,
                            confidence=opts.confidence)
    tables: dict[str, list[dict[str, Any]]] = {"agreement": audit["table"]}
    for key in ("length_matched", "no_one_sided_refusal", "length_matched_no_refusal"):
        tables[key] = audit[key]
    tables["length_regression"] = [{"scorer": k, **v} for k, v in audit["length_regression"].items()]
    tables["refusal_side"] = audit["refusal_side"]
    for g, rows in audit.get("groups", {}).items():
        tables[f"group {g}"] = rows
    for g, rows in audit.get("groups_controlled", {}).items():
        tables[f"group {g} (length-matched, no one-sided refusal)"] = rows
    metrics = {"n_pairs": audit["n_pairs"], "n_length_matched": audit["n_length_matched"],
               "n_no_one_sided_refusal": audit["n_no_one_sided_refusal"],
               "n_length_matched_no_refusal": audit["n_length_matched_no_refusal"],
               "agreement": {row["scorer"]: row["agreement"] for row in audit["table"]},
               "refusal_side_rate": {row["scorer"]: row["rate"] for row in audit["refusal_side"]},
               **d.info}
    return Report("agreement", metrics=metrics, tables=tables,
                  notes=["Agreement = chosen scored strictly above rejected; exact ties are disagreements.",
                         f"Wilson {opts.confidence:.0%} CI; two-sided z-test against 50% (normal approximation); "
                         "Bonferroni over the scorers of each table.",
                         f"Length-matched: |words(chosen) - words(rejected)| <= {opts.length_k}. Refusal control "
                         "drops pairs where exactly one side opens with a first-person refusal phrase; "
                         "refusal_side: on those pairs, how often the scorer scores the refusing side strictly "
                         "higher.",
                         "length_regression: logistic regression of 'not agreeing' on words(chosen) - "
                         "words(rejected), with intercept (Wald SE)."],
                  plots={"forest": {"kind": "forest", "rows": audit["table"]},
                         "reward_histogram": {"kind": "reward_histogram", "chosen": scores.reward[ci],
                                              "rejected": scores.reward[ri]}})


# -------------------------------------------------------------------------------------- divergence
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
    (:func:`rmlib.eval.divergence.rating_difference_votes`: 0 tie, 1 slight, ≥ 2 significant), as in
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
    a, b = _pairs(d, scores.reward)
    votes = [r["votes"] for r in d.records]
    kind = scores.distribution
    side_a = {"reward": a, **{k: _pairs(d, v)[0] for k, v in scores.outputs.items()}}
    side_b = {"reward": b, **{k: _pairs(d, v)[1] for k, v in scores.outputs.items()}}
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


# ------------------------------------------------------------------------------ judgebench, rmb, ppe
def _parse_judgebench(rec: Record, opts: NoOptions) -> dict[str, Any]:
    label = rec.get("label")
    if label not in ("A>B", "B>A"):
        raise rec.error("label", f"must be 'A>B' or 'B>A', got {label!r}")
    p = rec.prompt("question")
    return {"id": rec.raw.get("pair_id", rec.index), "source": str(rec.get("source")), "label": label,
            "slots": rec.add(p, [rec.text("response_A"), rec.text("response_B")])}


def _metrics_judgebench(d: SuiteData, scores: Scores, opts: NoOptions) -> Report:
    a, b = _pairs(d, scores.reward)
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


def _messages(rec: Record, key: str) -> list[dict[str, str]]:
    """RMB's ``conversation_input``: chat messages that also carry a ``language`` key (dropped)."""
    value = rec.get(key)
    if not isinstance(value, list) or not value:
        raise rec.error(key, "expected a non-empty list of messages", "wrong_type")
    try:
        msgs = [{"role": m["role"], "content": m["content"]} for m in value]
    except (KeyError, TypeError) as e:
        raise rec.error(key, f"each message needs role and content ({e})", "malformed_messages") from e
    rec2 = Record({key: msgs}, rec.source, rec.index, [])
    return rec2.prompt(key)


def _answer(rec: Record, value: Any, name: str) -> str:
    if not isinstance(value, Mapping) or not isinstance(value.get("answer"), str):
        raise rec.error(name, "expected an object with an 'answer' string", "wrong_type")
    return value["answer"]


def _parse_rmb(rec: Record, opts: NoOptions) -> dict[str, Any]:
    p = _messages(rec, "conversation_input")
    cat = str(rec.raw.get("category_path", ""))
    if rec.raw.get("bon_best") is not None:
        losers = rec.get("loser_list")
        if not isinstance(losers, list) or not losers:
            raise rec.error("loser_list", "expected a non-empty list", "wrong_type")
        responses = [_answer(rec, rec.raw["bon_best"], "bon_best")] + [
            _answer(rec, v, f"loser_list[{i}]") for i, v in enumerate(losers)]
        return {"id": rec.raw.get("bon_uid", rec.index), "kind": "bon", "category": cat,
                "slots": rec.add(p, responses)}
    responses = [_answer(rec, rec.get("chosen"), "chosen"), _answer(rec, rec.get("reject", "rejected"), "reject")]
    return {"id": rec.raw.get("pair_uid", rec.index), "kind": "pairwise", "category": cat,
            "slots": rec.add(p, responses)}


def _read_rmb_directory(suite: Suite, data: Any, split: str | None, opts: NoOptions) -> SuiteData | None:
    """A local RMB checkout (``RMB_dataset/`` or one of its sub-folders): every ``*.json`` file under it."""
    if isinstance(data, (list, tuple)) or not Path(os.fspath(data)).is_dir():
        return None
    from rmlib.data.formats import read_records
    from rmlib.data.schema import DataError

    items: list[dict[str, Any]] = []
    records = []
    files = sorted(Path(os.fspath(data)).rglob("*.json"))
    if not files:
        raise DataError(str(data), None, None, "no .json files under this directory", "missing_field")
    for f in files:
        for i, raw in read_records(f):
            if isinstance(raw, DataError):
                raise raw
            records.append(_parse_rmb(Record(raw, str(f), i, items), opts))
    return SuiteData(suite.name, records, items, f"{data} ({len(files)} files)", opts)


def _metrics_rmb(d: SuiteData, scores: Scores, opts: NoOptions) -> Report:
    s = scores.reward
    res = rmb_scores([r["kind"] for r in d.records], [s[r["slots"][0]] for r in d.records],
                     [[s[j] for j in r["slots"][1:]] for r in d.records], [r["category"] for r in d.records])
    metrics: dict[str, Any] = {"n": res["n"], **{k: v["accuracy"] for k, v in res["kinds"].items()},
                               **{k: v["accuracy"] for k, v in res["goals"].items()}}
    return Report("rmb", metrics=metrics,
                  tables={"goals": [{"set": k, **v} for k, v in res["goals"].items()],
                          "categories": [{"category": k, **v} for k, v in res["categories"].items()]},
                  notes=["Pairwise_set: correct when score(chosen) > score(reject) strictly. BoN_set: correct only "
                         "when bon_best scores strictly above every response of loser_list. Accuracy = mean over "
                         "rows, per set, per set/goal (Helpfulness, Harmlessness) and per category_path (RMB, "
                         "arXiv 2410.09893; Zhou-Zoey/RMB-Reward-Model-Benchmark)."])


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


# ---------------------------------------------------------------------------------------- registry
for _suite in (
    Suite("rewardbench", "RewardBench v1: sections Chat, Chat Hard, Safety, Reasoning (allenai/reward-bench)",
          RewardBenchOptions, _parse_rewardbench, _metrics_rewardbench, hub_split="filtered"),
    Suite("rewardbench2", "RewardBench 2: best-of-4 subsets and the Ties composite (allenai/reward-bench-2)",
          NoOptions, _parse_rewardbench2, _metrics_rewardbench2, hub_split="test", lists=True),
    Suite("rmbench", "RM-Bench: 3x3 style matrix per domain; easy / normal / hard", NoOptions, _parse_rmbench,
          _metrics_rmbench, lists=True),
    Suite("bon", "best-of-N accuracy@n against gold scores or a gold best index", BonOptions, _parse_bon,
          _metrics_bon, lists=True),
    Suite("pairs", "pairwise accuracy on preference pairs, overall and per group", PairsOptions, _parse_pair,
          _metrics_pairs, read=_read_pairs_with_format),
    Suite("agreement", "agreement audit: Wilson CIs, length and refusal controls, every head", AgreementOptions,
          _parse_pair, _metrics_agreement, per_head=True, read=_read_pairs_with_format),
    Suite("divergence", "diverging preferences: reward gaps by annotator-agreement class", DivergenceOptions,
          _parse_divergence, _metrics_divergence, read=_read_helpsteer2_disagreements),
    Suite("judgebench", "JudgeBench: two-game netting per pair, per source category (ScalerLab/JudgeBench)",
          NoOptions, _parse_judgebench, _metrics_judgebench, hub_split="gpt"),
    Suite("rmb", "RMB: pairwise and best-of-N (best beats every loser) accuracy per goal and category",
          NoOptions, _parse_rmb, _metrics_rmb, read=_read_rmb_directory, lists=True),
    Suite("ppe", "PPE: human-preference accuracy and best-of-K correctness (lmarena-ai/PPE-*)", PPEOptions,
          _parse_ppe, _metrics_ppe, hub_split="test", lists=True),
):
    register_suite(_suite)
