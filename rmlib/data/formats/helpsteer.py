"""NVIDIA HelpSteer2: ratings (positional pairs verified), disagreements, HelpSteer2-Preference pairs and
the Pairwise Justifier's examples (aggregation and kappa live in :mod:`rmlib.data.helpsteer2`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from rmlib.data.formats.parsing import _has, _text
from rmlib.data.helpsteer2 import NEITHER_VALID, parse_helpsteer2_prompt
from rmlib.data.schema import DataError, Example, Message, check_number, make_pair, make_rated, require

if TYPE_CHECKING:
    from rmlib.data.formats.registry import Record, _Ctx

HELPSTEER2_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
"""HelpSteer2's five Likert attributes (0..4), in the order of the ``nvidia/HelpSteer2`` dataset card
(HelpSteer2, arXiv 2406.08673); see docs/data.md."""


def _helpsteer_prompt(record: Any, ctx: _Ctx, index: int) -> list[Message]:
    """HelpSteer2's marker-joined prompt as messages; the turn before the response must be the user's."""
    messages = parse_helpsteer2_prompt(_text(record, "prompt", ctx, index))
    if messages[-1]["role"] != "user":
        raise DataError(ctx.source, index, "prompt", "the last turn before the response must be the user's",
                        "malformed_messages")
    return messages


def _convert_helpsteer2(record: Any, index: int, ctx: _Ctx) -> Example:
    """HelpSteer2 ratings: five 0..4 attributes; rows 2k and 2k+1 answer one prompt (``pair_id`` k)."""
    prompt = _helpsteer_prompt(record, ctx, index)
    attrs = {a: require(record, a, ctx.source, index) for a in HELPSTEER2_ATTRIBUTES}
    return make_rated(ctx.source, index, prompt, require(record, "response", ctx.source, index), attrs,
                      meta={"pair_id": index // 2}, score_range=(0, 4))


def _convert_helpsteer2_disagreements(record: Any, index: int, ctx: _Ctx) -> Example:
    """HelpSteer2 disagreements (``data_dir="disagreements"``): per-annotator lists → their mean, lists kept."""
    prompt = _helpsteer_prompt(record, ctx, index)
    annotations: dict[str, list[Any]] = {}
    means: dict[str, float | None] = {}
    for a in HELPSTEER2_ATTRIBUTES:
        values = require(record, a, ctx.source, index)
        if not isinstance(values, list):
            raise DataError(ctx.source, index, a, f"expected a list of per-annotator scores, got "
                            f"{type(values).__name__}", "wrong_type")
        scores = [check_number(v, ctx.source, index, f"{a}[{i}]", low=0, high=4) for i, v in enumerate(values)]
        annotations[a] = list(values)
        means[a] = sum(scores) / len(scores) if scores else None
    return make_rated(ctx.source, index, prompt, require(record, "response", ctx.source, index), means,
                      meta={"annotations": annotations}, score_range=(0, 4))


def _helpsteer2_votes(record: Any, ctx: _Ctx, index: int, sign: float) -> list[float] | None:
    """Raw annotator strengths, −100 ("neither valid") dropped, flipped so > 0 prefers chosen."""
    raw = record.get("all_preferences_unprocessed")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise DataError(ctx.source, index, "all_preferences_unprocessed",
                        f"expected a list, got {type(raw).__name__}", "wrong_type")
    votes = []
    for i, entry in enumerate(raw):
        name = f"all_preferences_unprocessed[{i}].strength"
        value = require(entry, "strength", ctx.source, index)
        if value == NEITHER_VALID:
            continue
        votes.append(sign * check_number(value, ctx.source, index, name, low=-3, high=3))
    return votes or None


def _similar_strengths(record: Mapping[str, Any]) -> list[Any] | None:
    """The three aggregated annotations' raw strengths (source sign), for the paper's spread filter."""
    similar = record.get("three_most_similar_preferences")
    if not isinstance(similar, list):
        return None
    return [e.get("strength") if isinstance(e, Mapping) else None for e in similar]


def _convert_helpsteer2_preference(record: Any, index: int, ctx: _Ctx) -> Example | None:
    """HelpSteer2-Preference: the sign of ``preference_strength`` picks the winner, |s| is the strength.

    s < 0 → response_1 chosen, s > 0 → response_2 (``nvidia/HelpSteer2`` dataset card); s == 0 is
    removed by rule (``no_preference``), as HelpSteer2-Preference (arXiv 2410.01257, §2) drops those
    pairs. ``meta["split"]`` follows NeMo-Aligner: "train" is train, every other value is validation
    (None without a split column). See docs/data.md.
    """
    prompt = _helpsteer_prompt(record, ctx, index)
    r1, r2 = _text(record, "response_1", ctx, index), _text(record, "response_2", ctx, index)
    s = check_number(require(record, "preference_strength", ctx.source, index), ctx.source, index,
                     "preference_strength", low=-3, high=3)
    if s == 0:
        ctx.report.filter("no_preference", f"{ctx.source}: record {index}: preference_strength is 0")
        return None
    chosen, rejected, position, sign = (r1, r2, 1, -1.0) if s < 0 else (r2, r1, 2, 1.0)
    raw_split = record.get("split")
    meta = {"split": None if raw_split is None else "train" if raw_split == "train" else "validation",
            "raw_split": raw_split,
            "chosen_position": position, "preference_strength": record["preference_strength"],
            "statement": record.get("preference_statement"), "elaboration": record.get("preference_elaboration"),
            "similar_strengths": _similar_strengths(record)}
    return make_pair(ctx.source, index, prompt, chosen, rejected, strength=abs(s),
                     votes=_helpsteer2_votes(record, ctx, index, sign), meta=meta)


def _convert_helpsteer2_justifier(record: Any, index: int, ctx: _Ctx) -> Example | None:
    """HelpSteer2-Preference → one justifier example per kept task (:func:`rmlib.data.judge.overall_justification`)."""
    from rmlib.data.judge import overall_justification

    return overall_justification(record, index, ctx.source, ctx.report)


def _prompt_key(record: Any) -> Any:
    return record.get("prompt") if isinstance(record, Mapping) else None


def _check_prompt_pairs(records: Iterable[Record], source: str) -> Iterator[Record]:
    """HelpSteer2 pairs rows by position (2k, 2k+1): verify each pair shares its prompt.

    A dropped or reordered row would otherwise silently pair answers to different prompts. A row
    whose partner is missing, unreadable or answers another prompt becomes a DataError.
    """
    it = iter(records)
    for first in it:
        second = next(it, None)
        if second is None:
            yield first[0], (first[1] if _prompt_key(first[1]) is None else DataError(
                source, first[0], "prompt", "is the last row and has no partner row (HelpSteer2 pairs rows "
                "2k and 2k+1)", "unpaired_row"))
            return
        yield from _verify_pair(first, second, source)


def _verify_pair(first: Record, second: Record, source: str) -> Iterator[Record]:
    (i, a), (j, b) = first, second
    pa, pb = _prompt_key(a), _prompt_key(b)
    if pa is not None and pa == pb:
        yield first
        yield second
        return
    for (k, rec), p, other in ((first, pa, j), (second, pb, i)):
        if p is None:  # unreadable or no prompt: the converter reports the record's own problem
            yield k, rec
        elif pa is not None and pb is not None:
            yield k, DataError(source, k, "prompt", f"differs from the prompt of its partner record {other} "
                               "(HelpSteer2 pairs rows 2k and 2k+1)", "pair_mismatch")
        else:
            yield k, DataError(source, k, "prompt", f"its partner record {other} is unreadable or has no prompt, "
                               "so the pair cannot be verified", "unpaired_row")


def _detect_helpsteer2(r: Mapping[str, Any]) -> bool:
    return (_has(r, "prompt", "response", *HELPSTEER2_ATTRIBUTES) and isinstance(r["prompt"], str)
            and not isinstance(r["helpfulness"], list))


def _detect_helpsteer2_disagreements(r: Mapping[str, Any]) -> bool:
    return (_has(r, "prompt", "response", *HELPSTEER2_ATTRIBUTES) and isinstance(r["prompt"], str)
            and isinstance(r["helpfulness"], list))


def _detect_helpsteer2_preference(r: Mapping[str, Any]) -> bool:
    return _has(r, "prompt", "response_1", "response_2", "preference_strength")
