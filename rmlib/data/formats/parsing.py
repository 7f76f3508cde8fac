"""Parsing helpers shared by the format families: prompts, texts, TRL's prompt extraction, extra columns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rmlib.data.schema import DataError, Message, check_messages, check_text, require

if TYPE_CHECKING:
    from rmlib.data.formats.registry import _Ctx


def _is_messages(value: Any) -> bool:
    """TRL's ``is_conversational`` test on one value: a list whose first item is a dict with a role."""
    return isinstance(value, list) and bool(value) and isinstance(value[0], Mapping) and "role" in value[0]


def _user_prompt(text: str) -> list[Message]:
    """A string prompt is one user turn; an empty one (no shared prefix) is no turn at all."""
    return [{"role": "user", "content": text}] if text else []


def _text(record: Mapping[str, Any], key: str, ctx: _Ctx, index: int) -> str:
    """A required string column (empty allowed here; make_pair/make_rated reject empty responses)."""
    return check_text(require(record, key, ctx.source, index), ctx.source, index, key, allow_empty=True)


def _common_prefix_len(a: Sequence[Any], b: Sequence[Any]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _string_prefix_split(chosen: str, rejected: str) -> tuple[str, str, str]:
    """TRL ``extract_prompt`` for strings: the longest common prefix, stepping back over a trailing space.

    Re-implemented (not imported) because trl is only a dev dependency and must not load with
    rmlib. Two deliberate differences from trl's loop: when one string is a prefix of the other the
    whole shorter string is the prompt (trl keeps its last character as the completion), and the
    space rule is not applied at position 0 (trl would look at the string's last character).
    """
    idx = _common_prefix_len(chosen, rejected)
    if 0 < idx < min(len(chosen), len(rejected)) and chosen[idx - 1] == " ":
        idx -= 1
    return chosen[:idx], chosen[idx:], rejected[idx:]


def _single_assistant(completion: Sequence[Message], name: str, ctx: _Ctx, index: int) -> str:
    """After prompt extraction a completion must be exactly one assistant message."""
    if len(completion) != 1 or completion[0]["role"] != "assistant":
        roles = ", ".join(m["role"] for m in completion) or "none"
        raise DataError(ctx.source, index, name, "after removing the shared prompt, expected exactly one assistant "
                        f"message, got {len(completion)} (roles: {roles})", "malformed_messages")
    return completion[0]["content"]


def _conversation_split(chosen: Any, rejected: Any, ctx: _Ctx, index: int,
                        prompt: Any = None) -> tuple[tuple[Message, ...], str, str]:
    """Split conversational chosen/rejected into (prompt, chosen text, rejected text).

    With an explicit ``prompt`` the completions are used as they are; otherwise the longest common
    message prefix is the prompt (TRL's implicit-prompt rule).
    """
    c = check_messages(chosen, ctx.source, index, "chosen")
    r = check_messages(rejected, ctx.source, index, "rejected")
    if prompt is not None:
        p = check_messages(prompt, ctx.source, index, "prompt")
    else:
        if c == r:
            raise DataError(ctx.source, index, "rejected", "is identical to 'chosen'", "identical_responses")
        k = _common_prefix_len(c, r)
        p, c, r = c[:k], c[k:], r[k:]
    return p, _single_assistant(c, "chosen", ctx, index), _single_assistant(r, "rejected", ctx, index)


def _extras(record: Mapping[str, Any], used: Iterable[str]) -> dict[str, Any]:
    """Columns a converter did not consume go to meta, so e.g. RewardBench's ``subset`` survives."""
    skip = set(used)
    return {k: v for k, v in record.items() if k not in skip}


def _rmlib_meta(record: Any, ctx: _Ctx, index: int) -> dict[str, Any]:
    meta = record.get("meta") or {}
    if not isinstance(meta, Mapping):
        raise DataError(ctx.source, index, "meta", f"expected an object, got {type(meta).__name__}", "wrong_type")
    return dict(meta)


def _has(record: Mapping[str, Any], *keys: str) -> bool:
    return all(k in record for k in keys)
