"""Ranked lists: canonical ``rmlib_lists`` rows, openbmb/UltraFeedback raw rows and RewardBench 2 rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rmlib.data.formats.parsing import _has, _rmlib_meta, _text, _user_prompt
from rmlib.data.schema import DataError, Example, all_tied, check_number, check_text, make_list, require

if TYPE_CHECKING:
    from rmlib.data.formats.registry import Converter, _Ctx


def _ranked(ctx: _Ctx, index: int, prompt: Any, responses: Any, scores: Any, *, meta: Mapping[str, Any] | None = None,
            responses_field: str = "responses", scores_field: str = "scores") -> Example | None:
    """A validated :class:`RankedList`, or None (counted as ``all_tied``) when it orders nothing."""
    ex = make_list(ctx.source, index, prompt, responses, scores, meta=meta, responses_field=responses_field,
                   scores_field=scores_field)
    if all_tied(ex):
        ctx.report.filter("all_tied", f"{ctx.source}: record {index}: all {len(ex.responses)} responses score "
                                      f"{ex.scores[0]:g}")
        return None
    return ex


def _convert_rmlib_lists(record: Any, index: int, ctx: _Ctx) -> Example | None:
    """Canonical :class:`RankedList` dicts: ``scores`` (higher is better) or ``ranks`` (1 = best; equal
    ranks are a tie), one per response; a string prompt is one user turn."""
    prompt = require(record, "prompt", ctx.source, index)
    if isinstance(prompt, str):
        prompt = _user_prompt(check_text(prompt, ctx.source, index, "prompt"))
    responses = require(record, "responses", ctx.source, index)
    if record.get("scores") is not None and record.get("ranks") is not None:
        raise DataError(ctx.source, index, "ranks", "give scores or ranks, not both", "bad_value")
    if record.get("ranks") is not None:
        ranks = record["ranks"]
        if not isinstance(ranks, (list, tuple)):
            raise DataError(ctx.source, index, "ranks", f"expected a list of numbers, got {type(ranks).__name__}",
                            "wrong_type")
        scores = [-check_number(v, ctx.source, index, f"ranks[{i}]", low=1) for i, v in enumerate(ranks)]
        return _ranked(ctx, index, prompt, responses, scores, meta=_rmlib_meta(record, ctx, index), scores_field="ranks")
    scores = require(record, "scores", ctx.source, index)
    return _ranked(ctx, index, prompt, responses, scores, meta=_rmlib_meta(record, ctx, index))


def _ultrafeedback_raw(score_key: str) -> Converter:
    """openbmb/UltraFeedback's raw rows (its dataset card and README): ``instruction`` and ``completions``,
    each completion a dict with the ``response`` and its ratings. ``score_key`` picks the rating the list
    ranks by. A completion without that rating (None or NaN) is left out (``meta["unrated"]`` counts them;
    the report counts records, not completions); a list left with fewer than 2 rated responses is
    filtered (``fewer_than_two_rated``)."""

    def convert(record: Any, index: int, ctx: _Ctx) -> Example | None:
        prompt = _user_prompt(_text(record, "instruction", ctx, index))
        completions = require(record, "completions", ctx.source, index)
        if not isinstance(completions, (list, tuple)):
            raise DataError(ctx.source, index, "completions", f"expected a list, got {type(completions).__name__}",
                            "wrong_type")
        responses, scores, models, unrated = [], [], [], 0
        for i, c in enumerate(completions):
            where = f"completions[{i}]"
            if not isinstance(c, Mapping):
                raise DataError(ctx.source, index, where, f"expected an object, got {type(c).__name__}", "wrong_type")
            value = c.get(score_key)
            if value is None or (isinstance(value, float) and value != value):
                unrated += 1
                continue
            responses.append(check_text(require(c, "response", ctx.source, index), ctx.source, index,
                                        f"{where}.response"))
            scores.append(check_number(value, ctx.source, index, f"{where}.{score_key}"))
            models.append(c.get("model"))
        if len(responses) < 2:
            ctx.report.filter("fewer_than_two_rated", f"{ctx.source}: record {index}: {len(responses)} rated "
                                                      "completion(s)")
            return None
        meta = {"source": record.get("source"), "models": models, "rating": score_key, "unrated": unrated}
        return _ranked(ctx, index, prompt, responses, scores, meta=meta, responses_field="completions",
                       scores_field=score_key)

    return convert


def _convert_rewardbench2(record: Any, index: int, ctx: _Ctx) -> Example | None:
    """RewardBench 2 rows (``allenai/reward-bench-2`` card): ``chosen`` and ``rejected`` lists of strings;
    the first ``num_correct`` of ``chosen + rejected`` are correct (default: every chosen one). Correct
    responses score 1 and form one tied group above the incorrect ones (score 0)."""
    prompt = _user_prompt(_text(record, "prompt", ctx, index))
    chosen, rejected = (require(record, k, ctx.source, index) for k in ("chosen", "rejected"))
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, (list, tuple)):
            raise DataError(ctx.source, index, name, f"expected a list of strings, got {type(value).__name__}",
                            "wrong_type")
    responses = list(chosen) + list(rejected)
    k = record.get("num_correct", len(chosen))
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < len(responses):
        raise DataError(ctx.source, index, "num_correct", f"{k!r} does not fit {len(chosen)}+{len(rejected)} "
                        "completions (1 <= num_correct < total)", "bad_value")
    meta = {"id": record.get("id"), "subset": record.get("subset")}
    return _ranked(ctx, index, prompt, responses, [1.0] * k + [0.0] * (len(responses) - k), meta=meta,
                   responses_field="chosen+rejected")


def _detect_rmlib_lists(r: Mapping[str, Any]) -> bool:
    return _has(r, "prompt", "responses") and isinstance(r["responses"], list) and ("scores" in r or "ranks" in r)


def _detect_ultrafeedback_raw(r: Mapping[str, Any]) -> bool:
    c = r.get("completions")
    return (isinstance(r.get("instruction"), str) and isinstance(c, list) and bool(c) and isinstance(c[0], Mapping)
            and "response" in c[0])


def _detect_rewardbench2(r: Mapping[str, Any]) -> bool:
    c, rj = r.get("chosen"), r.get("rejected")
    return (isinstance(r.get("prompt"), str) and "num_correct" in r and isinstance(c, list) and isinstance(rj, list)
            and all(isinstance(x, str) for x in c + rj))
