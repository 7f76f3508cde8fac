"""NeMo-Aligner JSONL: SteerLM regression rows (nine labels) and binary_ranking line pairs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from rmlib.data.formats.helpsteer import HELPSTEER2_ATTRIBUTES
from rmlib.data.formats.parsing import _string_prefix_split, _text, _user_prompt
from rmlib.data.schema import DataError, Example, Message, check_number, make_pair, make_rated, require

if TYPE_CHECKING:
    from rmlib.data.formats.registry import Record, _Ctx

ALL_STEERLM_ATTRIBUTES = ("quality", "toxicity", "humor", "creativity", *HELPSTEER2_ATTRIBUTES)
"""NeMo-Aligner's regression label order (``ALL_STEERLM_ATTRIBUTES`` in its
``examples/nlp/data/steerlm/process_to_regression_format.py``); slot 4 is helpfulness. See docs/data.md."""


_NEMO_SYSTEM, _NEMO_END = "<extra_id_0>System\n", "<extra_id_2>"
_NEMO_TURN = re.compile(r"<extra_id_1>(User|Assistant)\n")


def _chomp(text: str) -> str:
    """Drop the one newline the NeMo template puts after every turn."""
    return text[:-1] if text.endswith("\n") else text


def _parse_nemo_text(text: str, name: str, ctx: _Ctx, index: int) -> tuple[list[Message], str]:
    """NeMo SteerLM text → (prompt messages, last assistant turn); the template is in docs/data.md."""
    body = text[:-len(_NEMO_END)] if text.endswith(_NEMO_END) else text
    if not body.startswith(_NEMO_SYSTEM):
        raise DataError(ctx.source, index, name, f"expected the text to start with {_NEMO_SYSTEM!r}",
                        "malformed_messages")
    parts = _NEMO_TURN.split(body[len(_NEMO_SYSTEM):])
    system = _chomp(parts[0])
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": role.lower(), "content": _chomp(content)} for role, content in zip(parts[1::2], parts[2::2])]
    if not messages or messages[-1]["role"] != "assistant":
        raise DataError(ctx.source, index, name, "the last turn must be the assistant's response",
                        "malformed_messages")
    return messages[:-1], messages[-1]["content"]


def _convert_nemo_regression(record: Any, index: int, ctx: _Ctx) -> Example:
    """NeMo regression JSONL: 9 labels in ALL_STEERLM_ATTRIBUTES order, −100 = missing."""
    prompt, response = _parse_nemo_text(_text(record, "text", ctx, index), "text", ctx, index)
    label = require(record, "label", ctx.source, index)
    if not isinstance(label, list) or len(label) != len(ALL_STEERLM_ATTRIBUTES):
        got = f"{len(label)} values" if isinstance(label, list) else type(label).__name__
        raise DataError(ctx.source, index, "label", f"expected a list of {len(ALL_STEERLM_ATTRIBUTES)} numbers "
                        f"({', '.join(ALL_STEERLM_ATTRIBUTES)}), got {got}",
                        "wrong_type" if not isinstance(label, list) else "bad_value")
    # -100 passes as a number here; make_rated reads it as missing, as it does for every reader
    attrs = {a: check_number(v, ctx.source, index, f"label[{i}]") for i, (a, v) in enumerate(zip(ALL_STEERLM_ATTRIBUTES, label))}
    return make_rated(ctx.source, index, prompt, response, attrs)


def _convert_nemo_bt(record: Any, index: int, ctx: _Ctx) -> Example:
    """A NeMo binary_ranking line pair (grouped by :func:`_pair_lines`): even line chosen, odd rejected.

    Texts in the SteerLM template are parsed into messages (the prompts must match); plain
    concatenated ``prompt || response`` texts fall back to TRL's common-prefix rule.
    """
    second = record["rejected_index"]
    chosen = _text(record["chosen"], "text", ctx, index)
    rejected = _text(record["rejected"], "text", ctx, second)
    if chosen == rejected:
        raise DataError(ctx.source, second, "text", f"is identical to the chosen line (record {index})",
                        "identical_responses")
    if chosen.startswith(_NEMO_SYSTEM) and rejected.startswith(_NEMO_SYSTEM):
        prompt, c = _parse_nemo_text(chosen, "text", ctx, index)
        prompt_r, r = _parse_nemo_text(rejected, "text", ctx, second)
        if prompt != prompt_r:
            raise DataError(ctx.source, second, "text", f"its prompt differs from the chosen line's (record {index})",
                            "pair_mismatch")
    else:
        text, c, r = _string_prefix_split(chosen, rejected)
        prompt = _user_prompt(text)
    return make_pair(ctx.source, index, prompt, c, r, meta={"pair_index": index // 2})


def _pair_lines(records: Iterable[Record], source: str) -> Iterator[Record]:
    """NeMo BT: group lines 2k (chosen) and 2k+1 (rejected) into one record indexed by the chosen line."""
    it = iter(records)
    for first in it:
        second = next(it, None)
        if second is None:
            yield first[0], DataError(source, first[0], None, "odd number of lines: this chosen line has no "
                                      "rejected line after it (binary_ranking files hold line pairs)", "unpaired_row")
            return
        bad = next((r for _, r in (first, second) if isinstance(r, DataError)), None)
        yield first[0], bad or {"chosen": first[1], "rejected": second[1], "rejected_index": second[0]}


def _detect_nemo_regression(r: Mapping[str, Any]) -> bool:
    return isinstance(r.get("text"), str) and isinstance(r.get("label"), list)


def _detect_nemo_bt(r: Mapping[str, Any]) -> bool:
    return set(r) == {"text"} and isinstance(r["text"], str)
