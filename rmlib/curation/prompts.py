"""Annotation prompt templates: YAML files shipped in ``rmlib/curation/templates/``, replaceable by the user.

A template is a small YAML mapping (see ``templates/skywork_attributes.yaml``, the default):

* ``name``; ``answer``: ``json`` (one JSON object with the fields in ``required``) or ``justifier`` (the
  Pairwise Justifier's "@Response N is ... better", read by :func:`rmlib.eval.generative.parse_verdict`);
* ``system`` (optional) and ``user``: the chat messages sent, with the placeholders ``{conversation}``,
  ``{response_a}``, ``{response_b}`` and ``{examples}``;
* ``example`` and ``examples_header`` (optional): how a human-labelled in-context example is written.

Placeholders are replaced literally (``str.replace``), not with ``str.format``, so a template can show the
JSON answer it wants, braces included. A template that lacks a required placeholder, names an unknown
answer kind or field, or is not a mapping is a ValueError naming the file and the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from rmlib.data.judge import render_conversation

__all__ = ["ANSWER_FIELDS", "BUNDLED", "DEFAULT_TEMPLATE", "Template", "load_template"]

DEFAULT_TEMPLATE = "skywork_attributes"
BUNDLED = ("skywork_attributes", "justifier")
"""Templates shipped with rmlib, by name (``--template NAME``); any other value is a file path."""

ATTRIBUTE_FIELDS = ("task_category", "objectivity", "controversiality", "desired_attributes",
                    "annotation_guideline")
"""Skywork-Reward-V2's 5-tuple of preference attributes (arXiv 2507.01352, section 3.2)."""
ANSWER_FIELDS = (*ATTRIBUTE_FIELDS, "preferred", "strength")
_ANSWERS = ("json", "justifier")


@dataclass(frozen=True)
class Template:
    """A loaded template; :meth:`messages` renders the chat messages for one pair in one order."""

    name: str
    answer: str
    user: str
    system: str | None
    required: tuple[str, ...]
    example: str | None
    examples_header: str
    source: str
    sha256: str

    def messages(self, prompt: Sequence[Mapping[str, str]], response_a: str, response_b: str,
                 examples: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, str]]:
        """The system (if any) and user messages for a pair shown with ``response_a`` as candidate 1.

        ``examples`` are ``{prompt, response_a, response_b, attributes, preferred}`` mappings (human-labelled
        pairs shown before the target, Skywork-Reward-V2 appendix D.3); a template without ``example`` shows
        none.
        """
        shown = ""
        if examples and self.example:
            blocks = [_fill(self.example, conversation=render_conversation(list(e["prompt"])),
                            response_a=e["response_a"], response_b=e["response_b"],
                            attributes=json.dumps(e.get("attributes") or {}, ensure_ascii=False),
                            preferred=str(e["preferred"])) for e in examples]
            shown = self.examples_header + "\n".join(blocks) + "\n"
        user = _fill(self.user, conversation=render_conversation(list(prompt)), response_a=response_a,
                     response_b=response_b, examples=shown)
        out = [{"role": "system", "content": self.system}] if self.system else []
        return out + [{"role": "user", "content": user}]


def _fill(text: str, **values: str) -> str:
    # one pass over the placeholders, so a response that contains "{response_b}" is never replaced again
    return re.sub(r"\{(" + "|".join(values) + r")\}", lambda m: values[m.group(1)], text)


def _resolve(spec: str | os.PathLike) -> tuple[str, str]:
    if isinstance(spec, str) and spec in BUNDLED:
        res = resources.files("rmlib.curation").joinpath("templates", f"{spec}.yaml")
        return f"rmlib/curation/templates/{spec}.yaml", res.read_text(encoding="utf-8")
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"template {spec!r} is neither a bundled template ({', '.join(BUNDLED)}) nor a file")
    return str(path), path.read_text(encoding="utf-8")


def load_template(spec: str | os.PathLike = DEFAULT_TEMPLATE) -> Template:
    """A bundled template by name or a YAML file by path, checked (errors name the file and the key)."""
    import yaml

    source, text = _resolve(spec)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"template {source}: not valid YAML: {e}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"template {source}: must be a YAML mapping with `user` (and `answer`, `system`, ...)")
    unknown = sorted(set(data) - {"name", "answer", "user", "system", "required", "example", "examples_header"})
    if unknown:
        raise ValueError(f"template {source}: unknown keys {unknown}")
    answer = data.get("answer", "json")
    if answer not in _ANSWERS:
        raise ValueError(f"template {source}: key 'answer' must be one of {_ANSWERS}, got {answer!r}")
    user = data.get("user")
    if not isinstance(user, str) or not user.strip():
        raise ValueError(f"template {source}: key 'user' must be the user message text")
    missing = [p for p in ("{response_a}", "{response_b}", "{conversation}") if p not in user]
    if missing:
        raise ValueError(f"template {source}: key 'user' lacks the placeholders {missing}")
    default_required = ANSWER_FIELDS if answer == "json" else ("preferred",)
    required = tuple(data.get("required") or default_required)
    bad = sorted(set(required) - set(ANSWER_FIELDS))
    if bad or "preferred" not in required:
        raise ValueError(f"template {source}: key 'required' must list answer fields of {list(ANSWER_FIELDS)} "
                         f"including 'preferred'; got unknown {bad}" if bad else
                         f"template {source}: key 'required' must include 'preferred'")
    if answer == "justifier" and set(required) != {"preferred"}:
        raise ValueError(f"template {source}: a justifier answer carries only a verdict; key 'required' must be "
                         "[preferred]")
    for key in ("system", "example", "examples_header"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ValueError(f"template {source}: key {key!r} must be text")
    return Template(name=str(data.get("name") or Path(source).stem), answer=answer, user=user,
                    system=data.get("system"), required=required, example=data.get("example"),
                    examples_header=data.get("examples_header") or "", source=source,
                    sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())
