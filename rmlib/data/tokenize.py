"""Canonical examples → token ids, with the reward position and truncation made explicit.

Two rules drive this module:

* The reward head reads the **last token** of each sequence, so that token must exist, must be
  the end of the response, and must never be a pad token. Libraries that look for "the first pad
  token" read the wrong position when ``pad == eos``; :func:`prepare_tokenizer` gives such
  tokenizers a distinct pad token instead.
* Truncation never cuts a response. The prompt is cut from the left (keeping its leading special
  tokens, and the system message when asked); a pair whose responses cannot fit is dropped and
  counted in the :class:`~rmlib.data.schema.ValidationReport`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rmlib.data.labels import read_labels, votes_to_target_prob  # noqa: F401  (votes_to_target_prob re-exported)
from rmlib.data.schema import Message, PreferencePair, RatedResponse, ValidationReport

#: Used only when a tokenizer has no chat template (e.g. BERT-style encoders). The prompt is
#: rendered as "Role: content" paragraphs and the response is the second segment of the
#: tokenizer's own text-pair encoding ([CLS] prompt [SEP] response [SEP] for BERT). Tokenizers
#: whose pair encoding puts nothing between the segments (GPT-2 style) get "\n\nAssistant: "
#: before the response, and their eos token after it.
DEFAULT_PROMPT_FORMAT = "{role}: {content}"
PAD_TOKEN = "<|rmlib_pad|>"


def prepare_tokenizer(tokenizer) -> bool:
    """Make sure the tokenizer has a pad token distinct from eos; returns True if a token was added.

    Reusing eos for padding is common (Llama 3) and breaks any pooling that searches for the
    first/last pad token. We prefer an existing unused special token (unk), else add one; the
    model layer resizes embeddings when the vocabulary grew.
    """
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    if pad is not None and pad != eos:
        return False
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id != eos:
        tokenizer.pad_token = tokenizer.unk_token
        return False
    tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    return True


@dataclass
class Encoded:
    """One sequence: ``ids[-1]`` is the token whose hidden state the reward head reads."""

    ids: list[int]
    prompt_len: int
    type_ids: list[int] | None = None


@dataclass
class PairFeatures:
    """A tokenized pair and the labels its loss consumes (``rmlib.data.labels``)."""

    chosen: Encoded
    rejected: Encoded
    labels: dict[str, Any]
    index: int

    @property
    def n_tokens(self) -> int:
        return len(self.chosen.ids) + len(self.rejected.ids)


@dataclass
class RatedFeatures:
    """A tokenized rated response; ``labels["targets"]`` holds one value per attribute (NaN = missing)."""

    seq: Encoded
    labels: dict[str, Any]
    index: int

    @property
    def n_tokens(self) -> int:
        return len(self.seq.ids)


class Featurizer:
    """Tokenizes prompts and responses the same way for training, evaluation and scoring."""

    def __init__(self, tokenizer, max_length: int = 1024, keep_system: bool = True):
        if max_length < 8:
            raise ValueError(f"max_length must be at least 8, got {max_length}")
        self.tok = tokenizer
        self.max_length = max_length
        self.keep_system = keep_system
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        self.truncated_prompts = 0
        if not self.has_template:
            self._learn_pair_template()

    # -- rendering -------------------------------------------------------------------------

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _learn_pair_template(self) -> None:
        """Find where the tokenizer's own pair encoding puts special tokens around two segments.

        transformers 5 no longer exposes ``build_inputs_with_special_tokens``, so we encode a
        probe pair of single-token strings and read off the prefix, middle and suffix.
        """
        a, b = self._ids("a"), self._ids("b")
        enc = self.tok("a", "b")
        ids = enc["input_ids"]
        if len(a) != 1 or len(b) != 1 or ids.count(a[0]) != 1 or ids.count(b[0]) != 1:
            raise ValueError("cannot infer the pair template of a tokenizer without a chat template; "
                             "give the tokenizer a chat_template")
        i, j = ids.index(a[0]), ids.index(b[0])
        self._prefix, self._middle, self._suffix = ids[:i], ids[i + 1:j], ids[j + 1:]
        if not self._suffix and self.tok.eos_token_id is not None:
            self._suffix = [self.tok.eos_token_id]
        types = enc.get("token_type_ids")
        self._types = None if types is None or len(set(types)) == 1 else (types[0], types[j])

    def render_prompt_text(self, prompt: Sequence[Message]) -> str:
        return "\n\n".join(DEFAULT_PROMPT_FORMAT.format(role=m["role"].capitalize(), content=m["content"])
                           for m in prompt)

    def _split(self, prompt: Sequence[Message], response: str) -> tuple[list[int], list[int], list[int]]:
        """(head, prompt body, response part): head holds tokens that truncation must keep."""
        if self.has_template:
            msgs = list(prompt)
            p_text = self.tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            full = self.tok.apply_chat_template(msgs + [{"role": "assistant", "content": response}],
                                                tokenize=False)
            if not full.startswith(p_text):
                raise ValueError("the chat template renders the prompt differently with and without the "
                                 "response, so the response boundary is unknown; use another template")
            p_ids, r_ids = self._ids(p_text), self._ids(full[len(p_text):])
            head = 0
            while head < len(p_ids) and p_ids[head] in self.tok.all_special_ids and head < 4:
                head += 1
            if self.keep_system and msgs and msgs[0]["role"] == "system":
                sys_text = self.tok.apply_chat_template(msgs[:1], tokenize=False)
                if p_text.startswith(sys_text):
                    head = max(head, len(self._ids(sys_text)))
            return p_ids[:head], p_ids[head:], r_ids
        p_ids = self._ids(self.render_prompt_text(prompt))
        if not self._middle:  # no separator token in the pair template (GPT-2 style): mark the turn
            response = "\n\nAssistant: " + response
        head = 0
        if self.keep_system and prompt and prompt[0]["role"] == "system":
            head = len(self._ids(self.render_prompt_text(prompt[:1])))
        return (self._prefix + p_ids[:head], p_ids[head:],
                self._middle + self._ids(response) + self._suffix)

    def encode(self, prompt: Sequence[Message], response: str, *, budget: int | None = None) -> Encoded | None:
        """Token ids for prompt + response, or None when the response alone cannot fit."""
        limit = self.max_length if budget is None else budget
        head, body, resp = self._split(prompt, response)
        room = limit - len(head) - len(resp)
        if room < 0 or (room == 0 and body):
            return None
        if len(body) > room:
            body = body[len(body) - room:] if room else []
            self.truncated_prompts += 1
        ids = head + body + resp
        prompt_len = len(head) + len(body)
        types = None
        if not self.has_template and self._types is not None:
            n_first = prompt_len + len(self._middle)
            types = [self._types[0]] * n_first + [self._types[1]] * (len(ids) - n_first)
        return Encoded(ids, prompt_len, types)

    # -- datasets --------------------------------------------------------------------------

    def pairs(self, pairs: Iterable[PreferencePair], report: ValidationReport,
              labels: Sequence[str] = ()) -> list[PairFeatures]:
        """Tokenize pairs; drop (and count) the ones that cannot fit or collapse after tokenizing."""
        out = []
        for i, pair in enumerate(pairs):
            c = self.encode(pair.prompt, pair.chosen)
            r = self.encode(pair.prompt, pair.rejected)
            if c is None or r is None:
                report.filter("too_long", f"pair {i}: a response does not fit in max_length={self.max_length}")
                continue
            if c.ids == r.ids:
                report.filter("identical_after_tokenization", f"pair {i}: chosen and rejected tokenize identically")
                continue
            out.append(PairFeatures(c, r, read_labels(pair, labels), i))
        return out

    def rated(self, rows: Iterable[RatedResponse], attributes: Sequence[str],
              report: ValidationReport, labels: Sequence[str] = ("targets",)) -> list[RatedFeatures]:
        out = []
        for i, row in enumerate(rows):
            unknown = set(row.attributes) - set(attributes)
            if unknown and not any(a in row.attributes for a in attributes):
                report.filter("no_target_attribute", f"row {i}: has {sorted(row.attributes)}, model predicts "
                              f"{list(attributes)}")
                continue
            seq = self.encode(row.prompt, row.response)
            if seq is None:
                report.filter("too_long", f"row {i}: the response does not fit in max_length={self.max_length}")
                continue
            values = read_labels(row, tuple(dict.fromkeys(("targets", *labels))), attributes)
            if all(math.isnan(t) for t in values["targets"]):
                report.filter("no_target_attribute", f"row {i}: every target attribute is missing")
                continue
            out.append(RatedFeatures(seq, values, i))
        return out

    def features(self, kind: str, examples: Iterable, report: ValidationReport, *, labels: Sequence[str] = (),
                 attributes: Sequence[str] = ()) -> list:
        """Features of a data kind (``"pairs"`` or ``"ratings"``, a loss's ``data_kind``)."""
        if kind == "pairs":
            return self.pairs(examples, report, labels)
        if kind == "ratings":
            return self.rated(examples, attributes, report, labels)
        raise ValueError(f"no featurizer for data kind {kind!r}")
