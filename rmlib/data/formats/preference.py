"""Preference pairs of public datasets: TRL's four variants, Anthropic HH-RLHF, UltraFeedback-binarized
and Skywork-Reward-Preference."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rmlib.data.formats.parsing import (
    _common_prefix_len,
    _conversation_split,
    _extras,
    _has,
    _is_messages,
    _string_prefix_split,
    _text,
    _user_prompt,
)
from rmlib.data.schema import DataError, Example, Message, check_number, check_text, make_pair, require

if TYPE_CHECKING:
    from rmlib.data.formats.registry import _Ctx


def _convert_trl(record: Any, index: int, ctx: _Ctx) -> Example:
    """All four TRL preference variants; the variant is read from the value types (TRL docs, "Dataset formats")."""
    chosen = require(record, "chosen", ctx.source, index)
    rejected = require(record, "rejected", ctx.source, index)
    prompt = record.get("prompt")
    meta = _extras(record, ("prompt", "chosen", "rejected", "margin"))
    strength = record.get("margin")
    if isinstance(chosen, (list, tuple)) or isinstance(rejected, (list, tuple)) or isinstance(prompt, (list, tuple)):
        p, c, r = _conversation_split(chosen, rejected, ctx, index, prompt)
        return make_pair(ctx.source, index, p, c, r, strength=strength, meta=meta, strength_field="margin")
    c = check_text(chosen, ctx.source, index, "chosen", allow_empty=True)
    r = check_text(rejected, ctx.source, index, "rejected", allow_empty=True)
    if prompt is None:
        if c == r:
            raise DataError(ctx.source, index, "rejected", "is identical to 'chosen'", "identical_responses")
        prompt, c, r = _string_prefix_split(c, r)
    prompt = check_text(prompt, ctx.source, index, "prompt", allow_empty=True)
    return make_pair(ctx.source, index, _user_prompt(prompt), c, r, strength=strength, meta=meta,
                     strength_field="margin")


_HH_HUMAN, _HH_ASSISTANT = "\n\nHuman: ", "\n\nAssistant: "
_HH_TURN = re.compile(r"(\n\nHuman: |\n\nAssistant: )")


def _hh_messages(prompt_text: str, ctx: _Ctx, index: int) -> list[Message]:
    """Split an HH transcript prefix (without the final assistant marker) on its turn markers."""
    parts = _HH_TURN.split(prompt_text)
    if parts[0]:
        raise DataError(ctx.source, index, "chosen", f"transcript must start with {_HH_HUMAN!r}, starts with "
                        f"{parts[0][:40]!r}", "malformed_messages")
    return [{"role": "user" if marker == _HH_HUMAN else "assistant", "content": content}
            for marker, content in zip(parts[1::2], parts[2::2])]


def _convert_hh_rlhf(record: Any, index: int, ctx: _Ctx) -> Example:
    """Anthropic HH transcripts: the shared prefix up to the last assistant marker is the prompt.

    Same split as TRL's ``examples/datasets/hh-rlhf-helpful-base.py``; format in docs/data.md.
    """
    chosen, rejected = _text(record, "chosen", ctx, index), _text(record, "rejected", ctx, index)
    if chosen == rejected:
        raise DataError(ctx.source, index, "rejected", "is identical to 'chosen'", "identical_responses")
    cut = chosen[:_common_prefix_len(chosen, rejected)].rfind(_HH_ASSISTANT)
    if cut < 0:
        raise DataError(ctx.source, index, "chosen", f"chosen and rejected share no {_HH_ASSISTANT!r} turn",
                        "malformed_messages")
    prefix_len = cut + len(_HH_ASSISTANT)
    c, r = chosen[prefix_len:], rejected[prefix_len:]
    for name, text in (("chosen", c), ("rejected", r)):
        if _HH_TURN.search(text):
            raise DataError(ctx.source, index, name, "the reply after the shared prompt holds more than one turn",
                            "malformed_messages")
    prompt = _hh_messages(chosen[:cut], ctx, index)
    return make_pair(ctx.source, index, prompt, c, r, meta=_extras(record, ("chosen", "rejected")))


def _convert_ultrafeedback(record: Any, index: int, ctx: _Ctx) -> Example:
    """UltraFeedback-binarized (``HuggingFaceH4/ultrafeedback_binarized`` card): full conversations in
    chosen/rejected; scores kept in meta."""
    p, c, r = _conversation_split(require(record, "chosen", ctx.source, index),
                                  require(record, "rejected", ctx.source, index), ctx, index)
    meta = {"prompt_id": require(record, "prompt_id", ctx.source, index)}
    for key in ("score_chosen", "score_rejected"):
        meta[key] = check_number(require(record, key, ctx.source, index), ctx.source, index, key)
    return make_pair(ctx.source, index, p, c, r, meta=meta)


def _convert_skywork(record: Any, index: int, ctx: _Ctx) -> Example:
    """Skywork-Reward-Preference (``Skywork/Skywork-Reward-Preference-80K-v0.2`` card): conversational,
    implicit prompt, plus a ``source`` column."""
    p, c, r = _conversation_split(require(record, "chosen", ctx.source, index),
                                  require(record, "rejected", ctx.source, index), ctx, index)
    return make_pair(ctx.source, index, p, c, r, meta={"source": _text(record, "source", ctx, index)})


def _detect_trl(r: Mapping[str, Any]) -> bool:
    c, rj, p = r.get("chosen"), r.get("rejected"), r.get("prompt")
    if isinstance(c, str) and isinstance(rj, str):
        return p is None or isinstance(p, str)
    return _is_messages(c) and _is_messages(rj) and (p is None or _is_messages(p))


def _detect_hh(r: Mapping[str, Any]) -> bool:
    c, rj = r.get("chosen"), r.get("rejected")
    return ("prompt" not in r and isinstance(c, str) and isinstance(rj, str)
            and all(text.startswith(_HH_HUMAN) and _HH_ASSISTANT in text for text in (c, rj)))


def _detect_ultrafeedback(r: Mapping[str, Any]) -> bool:
    return _has(r, "prompt_id", "score_chosen", "score_rejected") and _is_messages(r.get("chosen"))


def _detect_skywork(r: Mapping[str, Any]) -> bool:
    return "prompt" not in r and _has(r, "source") and _is_messages(r.get("chosen")) and _is_messages(r.get("rejected"))
