"""rmlib's own canonical rows (what :func:`rmlib.data.formats.write_jsonl` writes): pairs, ratings, judge
examples."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rmlib.data.formats.parsing import _has, _rmlib_meta
from rmlib.data.schema import DataError, Example, make_judge, make_pair, make_rated, require

if TYPE_CHECKING:
    from rmlib.data.formats.registry import _Ctx


def _convert_rmlib_pairs(record: Any, index: int, ctx: _Ctx) -> Example:
    """Canonical :class:`PreferencePair` dicts (what :func:`write_jsonl` writes)."""
    return make_pair(ctx.source, index, require(record, "prompt", ctx.source, index),
                     require(record, "chosen", ctx.source, index), require(record, "rejected", ctx.source, index),
                     strength=record.get("strength"), votes=record.get("votes"), meta=_rmlib_meta(record, ctx, index))


def _convert_rmlib_ratings(record: Any, index: int, ctx: _Ctx) -> Example:
    """Canonical :class:`RatedResponse` dicts."""
    attrs = require(record, "attributes", ctx.source, index)
    if not isinstance(attrs, Mapping):
        raise DataError(ctx.source, index, "attributes", f"expected an object, got {type(attrs).__name__}",
                        "wrong_type")
    return make_rated(ctx.source, index, require(record, "prompt", ctx.source, index),
                      require(record, "response", ctx.source, index), attrs, meta=_rmlib_meta(record, ctx, index))


def _convert_rmlib_judge(record: Any, index: int, ctx: _Ctx) -> Example:
    """Canonical :class:`JudgeExample` dicts."""
    get = {k: require(record, k, ctx.source, index) for k in ("prompt", "response_1", "response_2",
                                                              "justification", "better")}
    return make_judge(ctx.source, index, get["prompt"], get["response_1"], get["response_2"], get["justification"],
                      get["better"], strength=record.get("strength"), meta=_rmlib_meta(record, ctx, index))


def _detect_rmlib_pairs(r: Mapping[str, Any]) -> bool:
    return (_has(r, "prompt", "chosen", "rejected", "strength", "votes", "meta") and isinstance(r["prompt"], list)
            and isinstance(r["chosen"], str))


def _detect_rmlib_ratings(r: Mapping[str, Any]) -> bool:
    return _has(r, "prompt", "response", "attributes", "meta") and isinstance(r["attributes"], Mapping)


def _detect_rmlib_judge(r: Mapping[str, Any]) -> bool:
    return _has(r, "prompt", "response_1", "response_2", "justification", "better")
