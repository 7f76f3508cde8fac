"""Request bodies of the reward server → token ids, with the same tokenization as training.

Two request shapes are accepted:

* OpenRLHF's remote reward model (``openrlhf.cli.serve_rm`` and the client in
  ``openrlhf/utils/agent.py``, https://github.com/OpenRLHF/OpenRLHF): ``POST /get_reward`` with
  ``{"query": [text, ...], "prompts": [text, ...]?, "labels": [...]?}``, where each query is the
  chat-template rendering of prompt + response. The answer is ``{"rewards": [...],
  "scores": [...], "extra_logs": {...}}``, one value per query in order.
* plain JSON: ``{"prompt": str | messages, "response": str}``, or ``{"messages": [...]}`` whose
  last message is the assistant's response; a list of those scores several at once.

Every sequence goes through :class:`rmlib.data.tokenize.Featurizer`: the plain shapes through
``encode`` (as ``RewardModel.score``), a rendered query by splitting it where the template's
assistant header ends, tokenizing the two parts as ``encode`` does and keeping the template's
end-of-turn text (added when the generated text lacks it). So the server reads the reward at the
token training read it at, with BOS once. A model without a chat template reads a query as raw
prompt + response text (:class:`QueryEncoder` states the rule).

The batcher tokenizes the items of every request it gathers in one call (:func:`plain_sequences`,
:meth:`QueryEncoder.encode_many`): one fast-tokenizer batch call and one chat-template rendering
per distinct prompt, instead of a call per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rmlib.data.tokenize import Encoded, Featurizer

_SENTINEL = "\u2063rmlib-serve\u2063"
_ROLES = ("system", "user", "assistant", "tool")


class RequestError(ValueError):
    """A bad request: its HTTP status and a message saying what to fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.headers: dict[str, str] | None = None  # response headers (a 401's WWW-Authenticate)


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_items: int = 1024  # sequences per request
    # characters of one prompt or response; None: no limit (the reward routes truncate long texts as
    # training does, so only the body's byte limit refuses a long request)
    max_chars: int | None = 200_000


def _check_text(value: Any, where: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise RequestError(422, f"{where} must be a string, got {type(value).__name__}")
    if limits.max_chars is not None and len(value) > limits.max_chars:
        raise RequestError(413, f"{where} has {len(value)} characters, more than the server's limit of "
                                f"{limits.max_chars}")
    return value


def _messages(value: Any, where: str, limits: Limits) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "user", "content": _check_text(value, where, limits)}]
    if not isinstance(value, list) or not value:
        raise RequestError(422, f"{where} must be a string or a non-empty list of {{role, content}} messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or set(m) - {"role", "content", "name"} or "role" not in m or "content" not in m:
            raise RequestError(422, f"{where}[{i}] must be an object with `role` and `content`")
        if m["role"] not in _ROLES:
            raise RequestError(422, f"{where}[{i}].role must be one of {_ROLES}, got {m['role']!r}")
        out.append({"role": m["role"], "content": _check_text(m["content"], f"{where}[{i}].content", limits)})
    return out


def parse_plain(body: Any, limits: Limits) -> tuple[list[tuple[list[dict[str, str]], str]], bool]:
    """``(prompt messages, response)`` pairs of a plain request, and whether it was a list."""
    many = isinstance(body, list)
    items = body if many else [body]
    if many and not items:
        raise RequestError(422, "the request is an empty list")
    if len(items) > limits.max_items:
        raise RequestError(413, f"{len(items)} items in one request, more than the server's limit of "
                                f"{limits.max_items}")
    out = []
    for i, item in enumerate(items):
        where = f"item {i}" if many else "the request"
        if not isinstance(item, dict):
            raise RequestError(422, f"{where} must be an object with `prompt` and `response`, or `messages`")
        if "messages" in item:
            msgs = _messages(item["messages"], f"{where}: messages", limits)
            if msgs[-1]["role"] != "assistant" or len(msgs) < 2:
                raise RequestError(422, f"{where}: the last message must be the assistant's response, after "
                                        "at least one prompt message")
            out.append((msgs[:-1], msgs[-1]["content"]))
        elif "prompt" in item and "response" in item:
            out.append((_messages(item["prompt"], f"{where}: prompt", limits),
                        _check_text(item["response"], f"{where}: response", limits)))
        else:
            raise RequestError(422, f"{where} must have `prompt` and `response`, or `messages`; got keys "
                                    f"{sorted(item)}")
    return out, many


def parse_openrlhf(body: Any, limits: Limits) -> list[tuple[str, str | None]]:
    """``(query, prompt or None)`` of an OpenRLHF ``/get_reward`` request; ``labels`` are ignored."""
    if not isinstance(body, dict) or "query" not in body:
        raise RequestError(422, "an OpenRLHF request is an object with `query`: a list of rendered prompt + "
                                "response texts")
    queries, prompts = body["query"], body.get("prompts")
    if isinstance(queries, str):
        queries = [queries]
    if not isinstance(queries, list):
        raise RequestError(422, f"`query` must be a list of strings, got {type(queries).__name__}")
    if len(queries) > limits.max_items:
        raise RequestError(413, f"{len(queries)} queries in one request, more than the server's limit of "
                                f"{limits.max_items}")
    if prompts is not None and (not isinstance(prompts, list) or len(prompts) != len(queries)):
        raise RequestError(422, "`prompts`, when given, must be a list with one prompt per query")
    return [(_check_text(q, f"query[{i}]", limits),
             None if prompts is None else _check_text(prompts[i], f"prompts[{i}]", limits))
            for i, q in enumerate(queries)]


class QueryEncoder:
    """Token ids of OpenRLHF queries (prompt + response texts), as the Featurizer makes them.

    With a chat template a query is the template's rendering of prompt + response: it is split where
    the template's assistant header ends (or after ``prompts[i]``), and both parts are tokenized as
    :meth:`~rmlib.data.tokenize.Featurizer.encode` does.

    Without a chat template (BERT-style encoders such as the bundled MiniLM) a query is raw text, and
    it is scored exactly as ``RewardModel.score`` scores a (prompt, response) pair:

    * with ``prompts[i]``: the query must begin with that text (a 422 names the query otherwise);
      ``prompts[i]`` is the prompt, as ``score([prompts[i]], ...)`` takes a string prompt (one user
      message, rendered "User: ..." as in training), and the rest of the query is the response;
    * without ``prompts``: the whole query is the response, with an empty prompt (no message), as
      ``score([[]], [query])``.

    The response's trailing pad, eos and sep token texts (of this model's tokenizer: OpenRLHF decodes
    generations with special tokens and pads) are removed, since the tokenizer's pair encoding adds
    its own end token; the response's own trailing whitespace is kept.
    """

    def __init__(self, feat: Featurizer):
        self.feat = feat
        tok = feat.tok
        self.templated = feat.has_template
        if not self.templated:
            specials = (getattr(tok, name, None) for name in ("pad_token", "eos_token", "sep_token"))
            self.trailing = tuple(sorted({t for t in specials if isinstance(t, str) and t}, key=len, reverse=True))
            return
        user = [{"role": "user", "content": "x"}]
        bare = tok.apply_chat_template(user, tokenize=False)
        with_gen = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(user + [{"role": "assistant", "content": _SENTINEL}], tokenize=False)
        # the assistant header (e.g. "<|im_start|>assistant\n") and what closes the turn ("<|im_end|>\n")
        self.header = with_gen[len(bare):] if with_gen.startswith(bare) else ""
        self.post = full.split(_SENTINEL, 1)[1] if _SENTINEL in full else ""

    def split(self, query: str, prompt: str | None) -> tuple[str, str]:
        """Prompt part and response part (with the end-of-turn text) of a rendered query."""
        if prompt is not None and query.startswith(prompt) and prompt:
            cut = len(prompt)
        elif self.header and self.header in query:
            cut = query.rindex(self.header) + len(self.header)
        else:
            cut = 0
        response = query[cut:]
        if self.post.rstrip():
            response = self.response_body(response) + self.post
        return query[:cut], response

    def response_body(self, response: str) -> str:
        """The generated text without its end-of-turn text and trailing pads.

        Generated text may stop at the end token, lack it (cut off at max length, or decoded with
        special tokens skipped), or trail pads (OpenRLHF decodes padded batches). Only those special
        texts are removed, with whitespace that sits after them (the template's own text after the
        end token, or what a decoder puts between special tokens); whitespace the response itself
        ends with is kept, as ``RewardModel.score`` keeps it: a cut-off generation ending in " " or
        "\\n" is scored as that text.
        """
        end = self.post.rstrip()
        pad = self.feat.tok.pad_token
        body = response
        for token in ([pad] if pad and pad != end else []) + [end]:
            while (tail := body.rstrip()).endswith(token):
                body = tail[: len(tail) - len(token)]
                if token == end and pad != end:
                    break  # one end token; with pad == end, every repeat after the first is a pad
        return body

    def check_items(self, items: Sequence[tuple[str, str | None]]) -> None:
        """422 naming the first query a template-less model cannot read: one that does not begin with
        its ``prompts[i]`` (checked in the handler, so the request fails before it is queued)."""
        if self.templated:
            return
        for i, (query, prompt) in enumerate(items):
            if prompt is not None and not query.startswith(prompt):
                raise RequestError(422, f"query[{i}] does not begin with prompts[{i}]: this model has no chat "
                                        "template, so a query is scored as prompts[i] followed by the response; "
                                        "send the prompt text the query starts with, or no `prompts` to score "
                                        "the whole query as the response")

    def plain_item(self, query: str, prompt: str | None) -> tuple[list[dict[str, str]], str]:
        """The ``(prompt messages, response)`` a template-less model scores for one query (see the class)."""
        if prompt is None:
            messages, response = [], query
        else:
            messages, response = [{"role": "user", "content": prompt}], query[len(prompt):]
        # only the special texts go (with whitespace after them); the response's own whitespace stays
        while (end := next((t for t in self.trailing if (tail := response.rstrip()).endswith(t)), None)):
            response = tail[: len(tail) - len(end)]
        return messages, response

    def encode(self, query: str, prompt: str | None = None) -> Encoded | None:
        """The sequence of one query (None when its response part alone cannot fit)."""
        return self.encode_many([(query, prompt)])[0]

    def encode_many(self, items: Sequence[tuple[str, str | None]]) -> list[Encoded | None]:
        """Sequences of ``(query, prompt or None)`` items (None where a response cannot fit), with
        every prompt and response part tokenized in one batch call."""
        if not items:
            return []
        if not self.templated:
            self.check_items(items)
            return plain_sequences(self.feat, [self.plain_item(q, p) for q, p in items])
        tok, feat = self.feat.tok, self.feat
        parts = [self.split(q, p) for q, p in items]
        ids = tok([t for pair in parts for t in pair], add_special_tokens=False)["input_ids"]
        special = set(tok.all_special_ids)
        out = []
        for i, (p_text, _) in enumerate(parts):
            p_ids = ids[2 * i] if p_text else []
            r_ids = ids[2 * i + 1]
            head = 0
            while head < min(len(p_ids), 4) and p_ids[head] in special:
                head += 1
            out.append(feat.place(p_ids[:head], p_ids[head:], r_ids))  # the featurizer's truncation rule
        return out


def plain_sequences(feat: Featurizer, items: Sequence[tuple[list[dict[str, str]], str]]) -> list[Encoded | None]:
    """Sequences of plain items as ``RewardModel.score`` encodes them (None where a response cannot
    fit), in one :meth:`Featurizer.encode_many` call that renders each distinct prompt once (an RL
    loop sends several responses per prompt)."""
    groups: dict[tuple, list[int]] = {}
    for k, (msgs, _) in enumerate(items):
        groups.setdefault(tuple((m["role"], m["content"]) for m in msgs), []).append(k)
    members = list(groups.values())
    encoded = feat.encode_many([items[ks[0]][0] for ks in members], [[items[k][1] for k in ks] for ks in members])
    out: list[Encoded | None] = [None] * len(items)
    for ks, row in zip(members, encoded):
        for k, seq in zip(ks, row):
            out[k] = seq
    return out


def _misfit(feat: Featurizer, where: str) -> RequestError:
    if feat.keep_response_end:  # the server's featurizer: only a head that fills max_length is left over
        return RequestError(413, f"{where}: the prompt's kept head (leading special tokens and the system "
                                 f"message) fills the model's max_length={feat.max_length} tokens, leaving no "
                                 "room for the response")
    return RequestError(413, f"{where}: the response does not fit in the model's max_length={feat.max_length} "
                             "tokens even with its prompt cut to nothing")


def plain_misfit(feat: Featurizer, i: int) -> RequestError:
    """The 413 of a plain request whose item ``i`` cannot fit (the batcher raises it for that request)."""
    return _misfit(feat, f"item {i}")


def query_misfit(feat: Featurizer, i: int) -> RequestError:
    """The 413 of an OpenRLHF request whose query ``i`` cannot fit."""
    return _misfit(feat, f"query[{i}]")


def _all_fit(seqs: list[Encoded | None], misfit) -> list[Encoded]:
    for i, seq in enumerate(seqs):
        if seq is None:
            raise misfit(i)
    return seqs  # type: ignore[return-value]


def encode_plain(feat: Featurizer, items: Sequence[tuple[list[dict[str, str]], str]]) -> list[Encoded]:
    """Sequences of plain items (as ``RewardModel.score`` encodes them); 413 for one that cannot fit."""
    return _all_fit(plain_sequences(feat, items), lambda i: plain_misfit(feat, i))


def encode_queries(enc: QueryEncoder, items: Sequence[tuple[str, str | None]]) -> list[Encoded]:
    """Sequences of OpenRLHF queries; 413 for one that cannot fit."""
    return _all_fit(enc.encode_many(items), lambda i: query_misfit(enc.feat, i))
