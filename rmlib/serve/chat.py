"""OpenAI chat completions over a causal LM (a Pairwise Justifier): ``POST /v1/chat/completions``.

``rmlib serve`` of a causal-LM directory answers the OpenAI chat-completions protocol
(https://platform.openai.com/docs/api-reference/chat/create), the one vLLM, SGLang, TGI and
llama.cpp's server speak, so any OpenAI client, and ``rmlib data annotate --endpoint``, can use a
trained justifier:

* request: ``model``, ``messages`` (``system``/``user``/``assistant``/``tool`` turns; content a string
  or a list of ``{"type": "text", "text": ...}`` parts), ``max_tokens`` (or ``max_completion_tokens``),
  ``temperature`` (0 is greedy), ``top_p``, ``n`` (1 only), ``stop`` (a string or up to 4), ``seed``,
  ``stream`` (false only), ``user``; any other field is a 400 naming it, never silently ignored;
* answer: ``{"id", "object": "chat.completion", "created", "model", "choices": [{"index": 0,
  "message": {"role": "assistant", "content"}, "finish_reason": "stop" | "length", "logprobs": null}],
  "usage": {"prompt_tokens", "completion_tokens", "total_tokens}}``;
* errors: ``{"error": {"message", "type", "param", "code"}}`` with 400 (bad field, context too long),
  404 (another model name), 413 (body too large) or 429 (too many requests waiting).

The prompt is the messages rendered by the tokenizer's chat template with the generation prompt, and
tokenized as the justifier's training tokenized its prompts (:class:`rmlib.data.judge.JudgeEncoder`:
the rendered text without adding special tokens again). A tokenizer without a chat template takes one
user message, rendered as training rendered it.

Greedy requests that arrive together are generated together (:meth:`JustifierModel.generate_ids`:
length-sorted, left-padded, KV cache; each row cut at its own ``max_tokens``, greedy rows being
independent); a sampled request runs alone, after ``torch.manual_seed(seed)`` when it gives a seed.
Generation runs on one worker thread, one call at a time, so the event loop keeps reading requests and
answering ``/health`` meanwhile. A ``stop`` sequence cuts the decoded text at its first occurrence
(tokens after it are generated and dropped; ``completion_tokens`` counts those up to the stop).
"""

# no `from __future__ import annotations`: FastAPI reads the handlers' `Request` annotation at run time
import asyncio
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rmlib.serve.batcher import QueueWorker
from rmlib.serve.protocol import RequestError

_ROLES = ("system", "user", "assistant", "tool")
_FIELDS = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop", "seed",
           "stream", "user"}


class ChatError(RequestError):
    """A request the chat-completions route refuses, answered in OpenAI's error shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(status, message)
        self.param, self.code, self.kind = param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}}


def not_generative_error(name: str) -> ChatError:
    """The 404 a reward-model server answers on ``/v1/chat/completions``."""
    return ChatError(404, f"this server serves the reward model {name!r}, which scores responses and does not "
                          "generate: POST /score or /get_reward for rewards; chat completions need a generative "
                          "model (a Pairwise Justifier, a causal-LM directory)", code="model_not_generative")


@dataclass
class ChatRequest:
    """A checked chat-completions request."""

    messages: list[dict[str, str]]
    max_tokens: int | None  # None: as many as the server's cap and the context allow
    temperature: float
    top_p: float
    stop: list[str]
    seed: int | None


def _number(body: dict, key: str, default: float, lo: float, hi: float, *, open_lo: bool = False) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ChatError(400, f"`{key}` must be a number, got {type(value).__name__}", param=key)
    if value < lo or value > hi or (open_lo and value == lo):
        raise ChatError(400, f"`{key}`={value} is out of range: {'(' if open_lo else '['}{lo}, {hi}]", param=key)
    return float(value)


def _content(value: Any, where: str, max_chars: int) -> str:
    if isinstance(value, list):  # OpenAI's content parts: text only
        texts = []
        for k, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ChatError(400, f"{where}[{k}] must be a text part {{\"type\": \"text\", \"text\": ...}}; "
                                     "this model reads text only", param=where)
            texts.append(part["text"])
        value = "".join(texts)
    if not isinstance(value, str):
        raise ChatError(400, f"{where} must be a string or a list of text parts, got {type(value).__name__}",
                        param=where)
    if len(value) > max_chars:
        raise ChatError(400, f"{where} has {len(value)} characters, more than the server's limit of {max_chars}",
                        param=where)
    return value


def parse_chat(body: Any, *, model_name: str, max_new_tokens: int, max_messages: int,
               max_chars: int) -> ChatRequest:
    """Check a chat-completions body (the module docstring lists the fields); a :class:`ChatError` names
    the first field that is wrong."""
    if not isinstance(body, dict):
        raise ChatError(400, "the request must be a JSON object with `messages`")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise ChatError(400, f"unsupported parameter(s) {unknown}; this server accepts {sorted(_FIELDS)}",
                        param=unknown[0])
    model = body.get("model")
    if model is not None and model != model_name:
        raise ChatError(404, f"the model {model!r} does not exist; this server serves {model_name!r} "
                             "(GET /v1/models)", param="model", code="model_not_found")
    if body.get("stream"):
        raise ChatError(400, "`stream` is not supported: send stream=false (or leave it out)", param="stream")
    n = body.get("n", 1)
    if n is not None and (isinstance(n, bool) or n != 1):
        raise ChatError(400, f"`n`={n!r}: this server returns one choice per request (n=1)", param="n")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ChatError(400, "`messages` must be a non-empty list of {role, content} objects", param="messages")
    if len(msgs) > max_messages:
        raise ChatError(400, f"{len(msgs)} messages, more than the server's limit of {max_messages}",
                        param="messages")
    messages = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ChatError(400, f"{where} must be an object with `role` and `content`", param=where)
        if m["role"] not in _ROLES:
            raise ChatError(400, f"{where}.role must be one of {list(_ROLES)}, got {m['role']!r}", param=f"{where}.role")
        messages.append({"role": m["role"], "content": _content(m["content"], f"{where}.content", max_chars)})
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(key)
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ChatError(400, f"`{key}` must be a positive integer, got {max_tokens!r}", param=key)
        if max_tokens > max_new_tokens:
            raise ChatError(400, f"`{key}`={max_tokens} is more than the server's limit of {max_new_tokens} "
                                 "tokens per completion (rmlib serve --max-new-tokens)", param=key)
    stop = body.get("stop")
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise ChatError(400, "`stop` must be a non-empty string or a list of up to 4 of them", param="stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ChatError(400, f"`seed` must be an integer, got {seed!r}", param="seed")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise ChatError(400, "`user` must be a string", param="user")
    return ChatRequest(messages, max_tokens, _number(body, "temperature", 1.0, 0.0, 2.0),
                       _number(body, "top_p", 1.0, 0.0, 1.0, open_lo=True), stops, seed)


def render_prompt(model: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    """Prompt ids of ``messages`` for generation, as the justifier's training made its prompts."""
    enc = model.encoder()
    tok = model.tokenizer
    if not enc.has_template:
        if len(messages) != 1 or messages[0]["role"] != "user":
            raise ChatError(400, "this model's tokenizer has no chat template: send one user message",
                            param="messages")
        return enc.prompts([messages[0]["content"]])[0]
    try:
        text = tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    except Exception as e:  # noqa: BLE001 - a template that refuses these roles (e.g. no system turn)
        raise ChatError(400, f"the chat template refuses these messages: {e}", param="messages") from None
    return tok(text, add_special_tokens=False)["input_ids"]


@dataclass
class _Job:
    ids: list[int]
    max_new: int
    request: ChatRequest
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class Generator(QueueWorker):
    """Completions for concurrent callers: greedy requests batched, sampled ones alone, one model call
    at a time on a worker thread (see the module docstring)."""

    def __init__(self, model: Any, *, max_batch: int = 64, batch_size: int = 16, max_pending: int = 256,
                 max_wait_ms: float = 5.0):
        if max_batch < 1 or max_pending < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_pending must be >= 1 and max_wait_ms >= 0")
        self.model = model
        self.max_batch, self.batch_size, self.max_pending = max_batch, batch_size, max_pending
        self.max_wait = max_wait_ms / 1000
        self.lock = threading.Lock()  # one generate call at a time, whatever calls it
        self.queue: asyncio.Queue[_Job] | None = None
        self.worker: asyncio.Task | None = None
        self.pending = 0  # requests queued or generating
        self.incoming = 0  # requests being read and checked (worth waiting for)
        self.completions = self.batches = self.generated_tokens = 0
        self.model_seconds = 0.0


    async def complete(self, ids: list[int], max_new: int, request: ChatRequest) -> list[int]:
        """The new token ids of one completion (greedy when ``request.temperature`` is 0)."""
        if self.queue is None:
            raise RuntimeError("Generator.start() was not awaited")
        if self.pending >= self.max_pending:
            raise ChatError(429, f"{self.pending} requests are waiting, the server's limit "
                                 f"(rmlib serve --max-pending); retry later", code="server_busy",
                            kind="rate_limit_error")
        self.pending += 1
        try:
            future = asyncio.get_running_loop().create_future()
            await self.queue.put(_Job(ids, max_new, request, future))
            return await future
        finally:
            self.pending -= 1

    async def _collect(self) -> list[_Job]:
        """The next job, and (when it is greedy) the greedy jobs queued or arriving within ``max_wait``."""
        assert self.queue is not None
        first = await self.queue.get()
        if first.request.temperature > 0:
            return [first]
        jobs, later = [first], []
        deadline = time.perf_counter() + self.max_wait
        while len(jobs) < self.max_batch:
            if self.queue.empty():
                left = deadline - time.perf_counter()
                if left <= 0 or self.incoming == 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), left)
                except asyncio.TimeoutError:
                    break
            else:
                job = self.queue.get_nowait()
            (jobs if job.request.temperature == 0 else later).append(job)
        for job in later:  # sampled requests wait for their own turn, in order
            self.queue.put_nowait(job)
        return jobs

    def _generate(self, jobs: list[_Job]) -> list[list[int]]:
        """Runs on the worker thread."""
        with self.lock:
            t0 = time.perf_counter()
            r = jobs[0].request
            if r.temperature > 0:
                if r.seed is not None:
                    torch.manual_seed(r.seed)
                out = self.model.generate_ids([jobs[0].ids], max_new_tokens=jobs[0].max_new, batch_size=1,
                                              do_sample=True, generation_kwargs={"temperature": r.temperature,
                                                                                 "top_p": r.top_p, "top_k": 0})
            else:
                out = self.model.generate_ids([j.ids for j in jobs], max_new_tokens=max(j.max_new for j in jobs),
                                              batch_size=self.batch_size)
            self.model_seconds += time.perf_counter() - t0
        return [o[: j.max_new] for o, j in zip(out, jobs)]  # greedy rows are independent: a prefix is the answer

    async def _run(self) -> None:
        while True:
            jobs = await self._collect()
            jobs = [j for j in jobs if not j.future.done()]  # a caller that went away
            if not jobs:
                continue
            try:
                outs = await asyncio.to_thread(self._generate, jobs)
            except Exception as e:  # noqa: BLE001 - every waiting request gets the error, the worker lives on
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(e)
                continue
            self.batches += 1
            for j, out in zip(jobs, outs):
                self.completions += 1
                self.generated_tokens += len(out)
                if not j.future.done():
                    j.future.set_result(out)


def _cut_at_stop(tok: Any, ids: list[int], text: str, stops: Sequence[str]) -> tuple[str, int] | None:
    """(text before the first stop sequence, tokens needed to reach it), or None when no stop occurs."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    if not hits:
        return None
    first = min(hits)
    lo, hi = 1, len(ids)  # the fewest tokens whose text already holds a stop (a prefix's text grows with it)
    while lo < hi:
        mid = (lo + hi) // 2
        t = tok.decode(ids[:mid], skip_special_tokens=True)
        if any(s in t for s in stops):
            hi = mid
        else:
            lo = mid + 1
    return text[:first], lo


def add_chat_routes(app: Any, model: Any, gen: Generator, *, name: str, read_json: Any, max_new_tokens: int,
                    max_messages: int, max_chars: int) -> None:
    """``POST /v1/chat/completions`` and ``GET /v1/models`` on ``app``, generating with ``gen``."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    created = int(time.time())
    tok = model.tokenizer

    @app.exception_handler(ChatError)
    async def chat_error(request: Request, exc: ChatError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "rmlib",
                                            "max_model_len": model.max_length}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        gen.incoming += 1
        try:
            try:
                body = await read_json(request)
            except ChatError:
                raise
            except RequestError as e:  # body too large, not JSON: in OpenAI's error shape here
                raise ChatError(e.status, str(e)) from None
            req = parse_chat(body, model_name=name, max_new_tokens=max_new_tokens, max_messages=max_messages,
                             max_chars=max_chars)
            ids = render_prompt(model, req.messages)
        finally:
            gen.incoming -= 1
        room = model.max_length - len(ids)
        if room < 1 or (req.max_tokens is not None and req.max_tokens > room):
            asked = req.max_tokens or 1
            raise ChatError(400, f"this model's maximum context length is {model.max_length} tokens; the messages "
                                 f"take {len(ids)} and the completion asks for {asked}: shorten the messages or "
                                 "lower max_tokens", param="messages", code="context_length_exceeded")
        max_new = req.max_tokens or min(max_new_tokens, room)
        new = await gen.complete(ids, max_new, req)
        text = tok.decode(new, skip_special_tokens=True)
        finish, used = ("length" if len(new) >= max_new else "stop"), len(new)
        cut = _cut_at_stop(tok, new, text, req.stop) if req.stop else None
        if cut is not None:
            (text, used), finish = cut, "stop"
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                         "logprobs": None}],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": used, "total_tokens": len(ids) + used}})
