"""Canonical examples → token ids, with the reward position and truncation made explicit.

Two rules drive this module:

* The reward head reads the **last token** of each sequence, so that token must exist, must be
  the end of the response, and must never be a pad token. Libraries that look for "the first pad
  token" read the wrong position when ``pad == eos``; :func:`prepare_tokenizer` gives such
  tokenizers a distinct pad token instead.
* Truncation never cuts a response. The prompt is cut from the left (keeping its leading special
  tokens, and the system message when asked); a pair whose responses cannot fit is dropped and
  counted in the :class:`~rmlib.data.schema.ValidationReport` (:func:`drop_reason`). Only the reward
  server, which must give every generation a reward, asks to keep a too-long response's end
  (``Featurizer(keep_response_end=True)``, :meth:`Featurizer.place`).

Whole datasets become features through :mod:`rmlib.data.features` (Arrow, cached), and examples held
in memory through the same path (:func:`rmlib.data.features.encode_examples`); this module tokenizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rmlib.data.labels import votes_to_target_prob  # noqa: F401  (re-exported)
from rmlib.data.schema import Message

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


@dataclass
class ListFeatures:
    """A tokenized ranked list: one sequence per response; ``labels["scores"]`` one score per response."""

    seqs: list[Encoded]
    labels: dict[str, Any]
    index: int

    @property
    def n_tokens(self) -> int:
        return sum(len(s.ids) for s in self.seqs)


_SENTINEL = "\u2063rmlib-response\u2063"  # a response no real data contains (invisible separators)
_CHECKED_PER_CALL = 4  # sentinel renders cross-checked against full renders in each encode_many call


@dataclass
class Split:
    """One prompt's tokens, rendered and tokenized once, and each of its responses' tokens.

    ``head`` holds the tokens truncation must keep (leading special tokens, the system message),
    ``body`` the rest of the prompt, cut from the left when a sequence is too long.
    """

    head: list[int]
    body: list[int]
    responses: list[list[int]]


def drop_reason(keeps: Sequence[int | None], responses: Sequence[Sequence[int]],
                targets: Sequence[float | None] | None = None) -> str:
    """Why an example cannot train (``""`` when it can), from how much prompt each sequence keeps.

    Why one function: every tokenize stage (pairs, ratings) drops by the same rule under the same
    reason names, which the data report counts. Two responses whose kept prompt and tokens are equal
    are the same sequence.
    """
    if any(k is None for k in keeps):
        return "too_long"
    seen = set()
    for keep, resp in zip(keeps, responses):  # pairs and lists: two responses that are one sequence
        if (keep, tuple(resp)) in seen:
            return "identical_after_tokenization"
        seen.add((keep, tuple(resp)))
    if targets is not None and all(t is None or math.isnan(t) for t in targets):
        return "no_target_attribute"
    return ""


class Featurizer:
    """Tokenizes prompts and responses the same way for training, evaluation and scoring.

    Every path (in-memory features, the Arrow feature cache, ``RewardModel.score``) goes through
    :meth:`split_many`: a prompt is rendered and tokenized once however many responses it has,
    and texts are tokenized in batches. With a chat template, a response's tokens come from the
    template's own rendering of the conversation with that response as the assistant turn; the
    template is rendered once per prompt with a placeholder response, and each response is put in
    its place (cross-checked against full renders; a template that transforms the content, e.g.
    with ``trim``, is rendered in full for every response instead).
    """

    def __init__(self, tokenizer, max_length: int = 1024, keep_system: bool = True, *,
                 keep_response_end: bool = False):
        if max_length < 8:
            raise ValueError(f"max_length must be at least 8, got {max_length}")
        self.tok = tokenizer
        self.max_length = max_length
        self.keep_system = keep_system
        # a response longer than max_length: None (training drops the example, RewardModel.score raises),
        # or with keep_response_end its last tokens, where the reward is read (the reward server)
        self.keep_response_end = keep_response_end
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        self.truncated_prompts = 0  # sequences whose prompt was cut from the left (counted by place)
        self.truncated_responses = 0  # responses cut to their end (keep_response_end only)
        template = tokenizer.chat_template if self.has_template else ""
        self._placeholder_ok = self.has_template and not any(
            f in str(template) for f in ("trim", "strip", "replace", "split", "lower", "upper"))
        self._types: tuple[int, int] | None = None
        if not self.has_template:
            self._learn_pair_template()

    # -- rendering -------------------------------------------------------------------------

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _ids_many(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        backend = getattr(self.tok, "backend_tokenizer", None) if getattr(self.tok, "is_fast", False) else None
        if backend is not None:  # what a fast tokenizer's __call__ runs, without building a BatchEncoding
            # encode_batch_fast skips the character offsets we never read: 10-15 % less CPU per
            # token on MiniLM here, the same ids (tests/test_features.py parity)
            return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
        return self.tok(texts, add_special_tokens=False)["input_ids"]

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

    def _render(self, msgs: list, response: str) -> str:
        return self.tok.apply_chat_template(msgs + [{"role": "assistant", "content": response}], tokenize=False)

    def _response_texts(self, msgs: list, p_text: str, responses: Sequence[str], check: bool) -> list[str]:
        """The text each response adds after the rendered prompt (its assistant turn)."""
        if self._placeholder_ok:
            full = self._render(msgs, _SENTINEL)
            rest = full[len(p_text):] if full.startswith(p_text) else ""
            if rest.count(_SENTINEL) == 1:
                pre, post = rest.split(_SENTINEL)
                texts = [pre + r + post for r in responses]
                if not check or all(self._render(msgs, r) == p_text + t for r, t in zip(responses[:1], texts)):
                    return texts
                self._placeholder_ok = False  # the template transforms content: render every response
        out = []
        for r in responses:
            full = self._render(msgs, r)
            if not full.startswith(p_text):
                raise ValueError("the chat template renders the prompt differently with and without the "
                                 "response, so the response boundary is unknown; use another template")
            out.append(full[len(p_text):])
        return out

    def split_many(self, prompts: Sequence[Sequence[Message]], responses: Sequence[Sequence[str]]) -> list[Split]:
        """Token parts of each prompt (once) and of each of its responses, tokenized in batches."""
        if self.has_template:
            msgs = [list(p) for p in prompts]
            p_texts = [self.tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in msgs]
            r_texts = [self._response_texts(m, pt, rs, check=i < _CHECKED_PER_CALL)
                       for i, (m, pt, rs) in enumerate(zip(msgs, p_texts, responses))]
        else:
            p_texts = [self.render_prompt_text(p) for p in prompts]
            # no separator token in the pair template (GPT-2 style): mark the assistant turn
            r_texts = [[r if self._middle else "\n\nAssistant: " + r for r in rs] for rs in responses]
        p_ids = self._ids_many(p_texts)
        flat = self._ids_many([t for ts in r_texts for t in ts])
        out, k = [], 0
        for i, prompt in enumerate(prompts):
            n = len(r_texts[i])
            resp, k = flat[k:k + n], k + n
            head = self._head_len(prompt, p_texts[i], p_ids[i])
            if self.has_template:
                out.append(Split(p_ids[i][:head], p_ids[i][head:], resp))
            else:
                out.append(Split(self._prefix + p_ids[i][:head], p_ids[i][head:],
                                 [self._middle + r + self._suffix for r in resp]))
        return out

    def _head_len(self, prompt: Sequence[Message], p_text: str, p_ids: list[int]) -> int:
        """Prompt tokens that left truncation keeps: leading special tokens and a system message."""
        has_system = self.keep_system and bool(prompt) and prompt[0]["role"] == "system"
        if not self.has_template:
            return len(self._ids(self.render_prompt_text(prompt[:1]))) if has_system else 0
        head = 0
        while head < len(p_ids) and p_ids[head] in self.tok.all_special_ids and head < 4:
            head += 1
        if has_system:
            sys_text = self.tok.apply_chat_template(list(prompt[:1]), tokenize=False)
            if p_text.startswith(sys_text):
                head = max(head, len(self._ids(sys_text)))
        return head

    def fit(self, head: list[int], body: list[int], resp: list[int], budget: int | None = None) -> int | None:
        """How many prompt-body tokens a sequence keeps, or None when the response alone cannot fit."""
        limit = self.max_length if budget is None else budget
        room = limit - len(head) - len(resp)
        if room < 0 or (room == 0 and body):
            return None
        return min(len(body), room)

    def place(self, head: list[int], body: list[int], resp: list[int], budget: int | None = None) -> Encoded | None:
        """One sequence by the one truncation rule, counted in ``truncated_prompts`` / ``truncated_responses``.

        The prompt body is cut from the left (:meth:`fit`). A response that cannot fit even with the
        prompt cut to nothing gives None, unless ``keep_response_end``: then the prompt body is dropped
        and the response keeps its last tokens (its end, and the end-of-turn tokens after it, are where
        the reward is read) after the head; a text pair keeps the separator that opens its second
        segment. Why an option and not the rule: training must not learn from a response it never saw
        whole, while an RL loop's reward server must still give every generation a reward.
        """
        keep = self.fit(head, body, resp, budget)
        if keep is None and self.keep_response_end:
            limit = self.max_length if budget is None else budget
            lead = 0 if self.has_template else len(self._middle)  # [SEP] before a text pair's response
            tail = limit - len(head) - lead
            if tail < 1 + (0 if self.has_template else len(self._suffix)):
                return None  # the head alone (leading special tokens, a kept system message) fills the limit
            if len(resp) > limit - len(head):
                resp = resp[:lead] + resp[len(resp) - tail:]
                self.truncated_responses += 1
            keep = 0
        if keep is None:
            return None
        if keep < len(body):
            self.truncated_prompts += 1
        return self.assemble(head, body, resp, keep)

    def assemble(self, head: list[int], body: list[int], resp: list[int], keep: int) -> Encoded:
        """The sequence ``head + body[-keep:] + resp`` (and segment ids for encoders)."""
        kept = body[len(body) - keep:] if keep else []
        ids = head + kept + resp
        prompt_len = len(head) + keep
        types = None
        if not self.has_template and self._types is not None:
            n_first = prompt_len + len(self._middle)
            types = [self._types[0]] * n_first + [self._types[1]] * (len(ids) - n_first)
        return Encoded(ids, prompt_len, types)

    def encode_many(self, prompts: Sequence[Sequence[Message]], responses: Sequence[Sequence[str]],
                    *, budget: int | None = None) -> list[list[Encoded | None]]:
        """Encoded sequences of each prompt's responses (None where a response cannot fit)."""
        out = []
        for sp in self.split_many(prompts, responses):
            row = []
            for resp in sp.responses:
                row.append(self.place(sp.head, sp.body, resp, budget))
            out.append(row)
        return out

    def encode(self, prompt: Sequence[Message], response: str, *, budget: int | None = None) -> Encoded | None:
        """Token ids for prompt + response, or None when the response alone cannot fit."""
        return self.encode_many([prompt], [[response]], budget=budget)[0][0]


#: what each drop reason means, for reports (``{}``: max_length)
DROP_REASONS = {"too_long": "a response does not fit in max_length={}",
            "identical_after_tokenization": "two responses (chosen and rejected) tokenize identically",
            "no_target_attribute": "every target attribute is missing"}
