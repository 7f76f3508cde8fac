"""Reading an LLM annotator's answer: the preference attributes and a preference label, or why not.

Real answers are messy: the JSON object comes in a code fence, after a paragraph of reasoning, before a
closing remark, with a field missing, with ``"preferred": "Candidate 2"`` instead of ``2``, or not at all
because the model refused. :func:`parse_answer` accepts what is unambiguous and names everything else:

* the JSON object is the last one in the answer that decodes and holds ``preferred`` (a fenced block is
  not required; prose before and after is ignored), else the last one that decodes;
* ``preferred``: 1 or 2 as a number or text ("1", "Candidate 2", "Response 1", "A"/"B"), or "tie";
  ``strength``: 1, 2 or 3 (a number or its text); ``objectivity``: objective | subjective;
  ``controversiality``: low | medium | high; ``desired_attributes``: a list of texts (one text is a list
  of one); ``task_category`` and ``annotation_guideline``: non-empty texts;
* a failure is an :class:`Answer` with ``failure`` set to a reason that the annotate report counts:
  ``empty``, ``refusal``, ``truncated`` (cut at the token limit before any usable object),
  ``no_json``, ``bad_json``, ``missing:<field>``, ``bad_value:<field>``, ``no_verdict`` (justifier).

A justifier answer is read with the justifier's own rule (:func:`rmlib.eval.generative.parse_verdict`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rmlib.curation.prompts import ATTRIBUTE_FIELDS
from rmlib.eval.suites.agreement import is_refusal

__all__ = ["Answer", "parse_answer"]

_CHOICE = re.compile(r"^\s*(?:candidate|response|answer|option|@response)?\s*#?\s*([12ab])\s*\.?\s*$", re.I)
_TIE = {"tie", "equal", "neither", "both", "none", "same"}
_LEVELS = {"objectivity": ("objective", "subjective"), "controversiality": ("low", "medium", "high")}


@dataclass
class Answer:
    """One parsed answer: ``preferred`` (1, 2 or 0 for a tie) and ``strength`` (1-3 or None), the attributes
    found, or ``failure`` (a reason) with ``detail`` (what was wrong, for the report's examples)."""

    preferred: int | None = None
    strength: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None


def _objects(text: str) -> list[Any]:
    """Every JSON value that decodes from an opening brace of ``text`` (fenced or not), in order."""
    decoder, found, pos = json.JSONDecoder(), [], 0
    while True:
        start = text.find("{", pos)
        if start < 0:
            return found
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            pos = start + 1
            continue
        found.append(value)
        pos = end


def _choice(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and value in (1, 2):
        return int(value)
    if isinstance(value, str):
        if value.strip().lower() in _TIE:
            return 0
        m = _CHOICE.match(value)
        if m:
            return {"1": 1, "2": 2, "a": 1, "b": 2}[m.group(1).lower()]
    return None


def _strength(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, (int, float)) and float(value).is_integer() and 1 <= value <= 3:
        return int(value)
    return None


def _text_list(value: Any) -> list[str] | None:
    if isinstance(value, str) and value.strip():
        return [value.strip()]
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return [v.strip() for v in value]
    return None


def _fail(reason: str, detail: str) -> Answer:
    return Answer(failure=reason, detail=detail)


def _json_answer(text: str, required: Sequence[str], finish_reason: str | None) -> Answer:
    dicts = [o for o in _objects(text) if isinstance(o, dict)]
    if not dicts:
        if finish_reason == "length":
            return _fail("truncated", "the answer hit the token limit before a complete JSON object")
        if is_refusal(text):
            return _fail("refusal", "the annotator declined")
        return _fail("bad_json" if "{" in text else "no_json", "no JSON object decodes from the answer")
    obj = next((o for o in reversed(dicts) if "preferred" in o), dicts[-1])
    for name in required:  # strength is checked below: a tie has none
        if name != "strength" and (name not in obj or obj[name] is None):
            return _fail(f"missing:{name}", f"present keys: {sorted(obj)}")
    out = Answer()
    for name in ATTRIBUTE_FIELDS:
        if name not in obj or obj[name] is None:
            continue
        v = obj[name]
        if name in _LEVELS:
            ok = isinstance(v, str) and v.strip().lower() in _LEVELS[name]
            v = v.strip().lower() if ok else v
        elif name == "desired_attributes":
            v = _text_list(v)
            ok = v is not None
        else:
            ok = isinstance(v, str) and bool(v.strip())
            v = v.strip() if ok else v
        if not ok:
            return _fail(f"bad_value:{name}", f"{name} = {json.dumps(obj[name], ensure_ascii=False)[:120]}")
        out.attributes[name] = v
    out.preferred = _choice(obj.get("preferred"))
    if out.preferred is None:
        return _fail("bad_value:preferred", f"preferred = {json.dumps(obj.get('preferred'))[:120]}; "
                                            "expected 1, 2 or \"tie\"")
    if out.preferred and "strength" in required and obj.get("strength") is None:
        return _fail("missing:strength", f"present keys: {sorted(obj)}")
    if out.preferred and obj.get("strength") is not None:
        out.strength = _strength(obj["strength"])
        if out.strength is None:
            return _fail("bad_value:strength", f"strength = {json.dumps(obj['strength'])[:120]}; expected 1, 2 or 3")
    return out


def _justifier_answer(text: str) -> Answer:
    from rmlib.eval.generative import parse_verdict

    verdict = parse_verdict(text)
    if verdict.kind == "both_sides":
        return Answer(preferred=0)
    if verdict.choice is None:
        return _fail("refusal" if is_refusal(text) else "no_verdict", "no \"@Response N ... better\" statement")
    return Answer(preferred=verdict.choice)


def parse_answer(content: str | None, *, answer: str = "json", required: Sequence[str] = ("preferred",),
                 finish_reason: str | None = None) -> Answer:
    """Parse one chat-completion answer (``content``, and the server's ``finish_reason``) as the template's
    ``answer`` kind (``json`` or ``justifier``), requiring the template's ``required`` fields."""
    if content is None or not content.strip():
        return _fail("empty", f"no text (finish_reason {finish_reason!r})")
    if answer == "justifier":
        return _justifier_answer(content)
    return _json_answer(content, required, finish_reason)
