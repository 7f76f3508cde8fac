"""allenai/MultiPref: per-annotator ``overall_pref`` votes, aggregated by majority or by summed strengths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rmlib.data.formats.parsing import _has, _text, _user_prompt
from rmlib.data.schema import DataError, Example, make_pair, require

if TYPE_CHECKING:
    from rmlib.data.formats.registry import _Ctx


MULTIPREF_VOTES = {
    "A-is-clearly-better": 2.0, "A-is-slightly-better": 1.0, "Tie": 0.0,
    "B-is-slightly-better": -1.0, "B-is-clearly-better": -2.0,
}
"""MultiPref ``overall_pref`` labels (``allenai/multipref`` dataset card) as signed votes in A-over-B
orientation; see docs/data.md."""


def _multipref_group(record: Any, key: str, ctx: _Ctx, index: int) -> list[float]:
    """One annotator group's ``overall_pref`` labels as A-over-B votes."""
    annotations = require(record, key, ctx.source, index)
    if not isinstance(annotations, list):
        raise DataError(ctx.source, index, key, f"expected a list, got {type(annotations).__name__}", "wrong_type")
    votes = []
    for i, a in enumerate(annotations):
        label = require(a, "overall_pref", ctx.source, index)
        if label not in MULTIPREF_VOTES:
            raise DataError(ctx.source, index, f"{key}[{i}].overall_pref",
                            f"unknown label {label!r}; expected one of {sorted(MULTIPREF_VOTES)}", "bad_value")
        votes.append(MULTIPREF_VOTES[label])
    return votes


def _multipref_pair(record: Any, index: int, ctx: _Ctx, rule: str) -> Example | None:
    """MultiPref: chosen is the side the votes prefer under ``rule`` (:func:`rmlib.data.annotations.preferred_side`:
    majority vote, or the summed strengths); no preferred side is removed (``no_majority``)."""
    from rmlib.data.annotations import preferred_side

    normal = _multipref_group(record, "normal_worker_annotations", ctx, index)
    expert = _multipref_group(record, "expert_worker_annotations", ctx, index)
    if not normal and not expert:
        raise DataError(ctx.source, index, "normal_worker_annotations",
                        "no annotations in either annotator group", "missing_field")
    side = preferred_side(normal + expert, rule)
    if side == 0:
        ctx.report.filter("no_majority", f"{ctx.source}: record {index}: votes {normal + expert} give no "
                          f"preferred side ({rule})")
        return None
    sign = float(side)
    a, b = require(record, "completion_a", ctx.source, index), require(record, "completion_b", ctx.source, index)
    chosen, rejected = (a, b) if side > 0 else (b, a)
    models = (record.get("model_a"), record.get("model_b"))
    meta = {"comparison_id": record.get("comparison_id"), "prompt_id": record.get("prompt_id"),
            "category": record.get("category"), "source": record.get("source"),
            "chosen_model": models[0 if side > 0 else 1], "rejected_model": models[1 if side > 0 else 0],
            "normal_votes": [sign * v for v in normal], "expert_votes": [sign * v for v in expert]}
    return make_pair(ctx.source, index, _user_prompt(_text(record, "text", ctx, index)), chosen, rejected,
                     votes=[sign * v for v in normal + expert], meta=meta)


def _convert_multipref(record: Any, index: int, ctx: _Ctx) -> Example | None:
    """MultiPref by majority vote (Diverging Preferences, arXiv 2410.14632: prior work aggregates by
    majority vote): chosen is the side more annotators prefer; equal counts are ``no_majority``."""
    return _multipref_pair(record, index, ctx, "majority")


def _convert_multipref_sum(record: Any, index: int, ctx: _Ctx) -> Example | None:
    """MultiPref by summed vote strengths (rmlib's rule before majority vote); a zero sum is ``no_majority``."""
    return _multipref_pair(record, index, ctx, "sum")


def _detect_multipref(r: Mapping[str, Any]) -> bool:
    return (_has(r, "completion_a", "completion_b")
            and ("normal_worker_annotations" in r or "expert_worker_annotations" in r))
