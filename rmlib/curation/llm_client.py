"""An OpenAI-compatible chat-completions client for annotation at scale: bounded, retried, accounted.

Every inference engine users already run speaks ``POST /v1/chat/completions`` (vLLM's ``vllm serve``,
SGLang, TGI, llama.cpp's server, hosted APIs, and ``rmlib serve`` of a causal LM), so the annotator is a
client of that one protocol and runs no generation loop of its own. What it adds is what a long run
against a busy server needs:

* **bounded in-flight requests**: the caller runs at most ``concurrency`` :meth:`ChatClient.complete`
  calls at a time, each on its own lane: an ``httpx.AsyncClient`` holding one keep-alive connection.
  One shared pool of 64 connections served 98 requests/s against a loopback server that answers in
  20 ms, one client per lane 605/s (raw asyncio sockets: 1,306/s): httpx's pool bookkeeping, not the
  network, was the limit (bench/annotate_throughput.py);
* **retries**: 429, 408, 409 and 5xx answers, timeouts, connection errors and bodies that are not a
  chat completion are retried with exponential backoff and jitter (``base · 2^attempt`` capped at
  ``backoff_max``, then a uniform draw in [½, 1] of it, so that many clients do not retry in step); a
  ``Retry-After`` header (seconds or an HTTP date) is waited out instead;
* **bounds**: ``timeout`` per attempt, ``max_retries`` retries and ``deadline`` seconds per request in all;
  other 4xx answers (a bad request, a prompt over the context length) are not retried;
* **accounting**: every attempt that failed is counted by reason (``http_429``, ``http_500``, ``timeout``,
  ``connection``, ``bad_response``) in ``retried`` and, when the request gives up, in ``failed``.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import ssl
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChatClient", "ClientOptions", "Reply", "chat_url", "wait_for_server"]

RETRY_STATUS = frozenset({408, 409, 429})
"""Client-error statuses worth retrying (timeouts, conflicts, rate limits); every 5xx is retried too."""


@dataclass
class ClientOptions:
    """Where and how to ask. ``endpoint`` is the server's base URL (``http://gpu-node:8000/v1``) or the full
    ``.../chat/completions`` URL."""

    endpoint: str
    model: str
    concurrency: int = 8
    timeout: float = 120.0
    max_retries: int = 6
    deadline: float = 900.0
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    temperature: float = 0.0
    max_tokens: int = 1024
    api_key: str | None = field(default=None, repr=False)
    extra_body: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        for name in ("timeout", "deadline", "backoff_max"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.max_retries < 0 or self.backoff_base < 0:
            raise ValueError("max_retries and backoff_base must be >= 0")


@dataclass
class Reply:
    """One request's outcome: the answer's ``content`` and ``finish_reason``, or ``failure`` (the reason of
    the last failed attempt) with ``detail``; ``attempts`` made and ``seconds`` spent in all."""

    content: str | None = None
    finish_reason: str | None = None
    failure: str | None = None
    detail: str = ""
    attempts: int = 0
    seconds: float = 0.0


def chat_url(endpoint: str) -> str:
    """``http://host:8000/v1`` → ``http://host:8000/v1/chat/completions`` (a full URL is kept)."""
    url = endpoint.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


def wait_for_server(endpoint: str, seconds: float, *, api_key: str | None = None) -> float:
    """Poll ``GET <endpoint>/models`` (served by vLLM, SGLang, TGI and ``rmlib serve``) until it answers 200;
    returns the seconds waited. For job scripts that start the server and the annotator together."""
    import httpx

    url = chat_url(endpoint).removesuffix("/chat/completions") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    start, last = time.monotonic(), "no answer"
    while True:
        try:
            resp = httpx.get(url, headers=headers, timeout=5)
            if resp.status_code == 200:
                return time.monotonic() - start
            last = f"HTTP {resp.status_code}"
        except httpx.HTTPError as e:
            last = type(e).__name__
        if time.monotonic() - start >= seconds:
            raise RuntimeError(f"{url} did not answer within {seconds:g} s (last: {last}); is the server up?")
        time.sleep(0.5)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class ChatClient:
    """``async with ChatClient(options) as c: reply = await c.complete(messages)``; counters in
    ``retried``/``failed``/``answered``/``attempts``."""

    def __init__(self, options: ClientOptions, *, rng: random.Random | None = None) -> None:
        self.options = options
        self.url = chat_url(options.endpoint)
        self.retried: Counter = Counter()
        self.failed: Counter = Counter()
        self.answered = 0
        self.attempts = 0
        self._rng = rng or random.Random()
        self._lanes: list[Any] = []

    async def __aenter__(self) -> ChatClient:
        try:
            import httpx
        except ImportError as e:
            raise ImportError("rmlib data annotate needs httpx: pip install 'rmlib[curation]'") from e
        headers = {"Authorization": f"Bearer {self.options.api_key}"} if self.options.api_key else {}
        one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        tls = ssl.create_default_context()  # one context for every lane: building one costs ~20 ms
        self._lanes = [httpx.AsyncClient(headers=headers, timeout=self.options.timeout, limits=one, verify=tls)
                       for _ in range(self.options.concurrency)]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for lane in self._lanes:
            await lane.aclose()

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter for retry number ``attempt`` (0-based)."""
        cap = min(self.options.backoff_max, self.options.backoff_base * (2 ** attempt))
        return cap * self._rng.uniform(0.5, 1.0)

    def body(self, messages: Sequence[Mapping[str, str]]) -> dict[str, Any]:
        return {"model": self.options.model, "messages": list(messages), "temperature": self.options.temperature,
                "max_tokens": self.options.max_tokens, **self.options.extra_body}

    async def _attempt(self, body: dict[str, Any], timeout: float, lane: int) -> tuple[Reply, float | None, bool]:
        """(reply, Retry-After seconds, retryable) of one POST."""
        import httpx

        try:
            resp = await self._lanes[lane % len(self._lanes)].post(self.url, json=body, timeout=timeout)
        except httpx.TimeoutException as e:
            return Reply(failure="timeout", detail=f"{type(e).__name__} after {timeout:.0f} s"), None, True
        except httpx.TransportError as e:
            return Reply(failure="connection", detail=f"{type(e).__name__}: {e}"[:300]), None, True
        if resp.status_code != 200:
            retryable = resp.status_code in RETRY_STATUS or resp.status_code >= 500
            return (Reply(failure=f"http_{resp.status_code}", detail=resp.text[:300]),
                    retry_after(resp.headers.get("retry-after")), retryable)
        try:
            choice = resp.json()["choices"][0]
            content = choice["message"].get("content")
            if content is not None and not isinstance(content, str):
                raise TypeError("message.content is not text")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            return Reply(failure="bad_response", detail=f"not a chat completion ({type(e).__name__}): "
                                                        f"{resp.text[:200]}"), None, True
        return Reply(content=content, finish_reason=choice.get("finish_reason")), None, False

    async def complete(self, messages: Sequence[Mapping[str, str]], lane: int = 0) -> Reply:
        """Ask once on connection ``lane`` (0 .. concurrency-1; one caller per lane at a time), retrying as the
        options allow; never raises for a server's or network's failure."""
        body, start = self.body(messages), time.monotonic()
        attempt = 0
        while True:
            left = self.options.deadline - (time.monotonic() - start)
            reply, wait, retryable = await self._attempt(body, max(0.001, min(self.options.timeout, left)), lane)
            self.attempts += 1
            attempt += 1
            reply.attempts = attempt
            if reply.failure is None:
                self.answered += 1
                reply.seconds = time.monotonic() - start
                return reply
            wait = self.backoff(attempt - 1) if wait is None else wait
            left = self.options.deadline - (time.monotonic() - start)
            if not retryable or attempt > self.options.max_retries or wait >= left:
                self.failed[reply.failure] += 1
                reply.seconds = time.monotonic() - start
                if retryable and attempt <= self.options.max_retries:
                    reply.detail += f" (gave up: next wait {wait:.1f} s past the {self.options.deadline:g} s deadline)"
                return reply
            self.retried[reply.failure] += 1
            await asyncio.sleep(wait)
