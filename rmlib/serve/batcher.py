"""Dynamic batching: concurrent requests are tokenized and scored together through the one scoring loop.

Each request puts its items on a queue and awaits their rewards. One worker task takes what is
queued (waiting at most ``max_wait_ms`` after the first item for requests that are still being
read, up to ``max_sequences``; a lone request does not wait), tokenizes the items of all those
requests in one call of their encoder (one fast-tokenizer batch call instead of one per request),
runs :func:`rmlib.models.scoring.score_sequences` (length-sorted batches bounded by a token budget
and by 5 % padding, results in input order) and hands every request its rows; a request whose item
cannot be encoded gets its own error and the others are scored. Requests that arrive while the
model computes wait in the socket buffers and are read as soon as it is done, so under load each
batch holds what arrived during the previous one.

The model runs on the event loop's own thread, blocking it. On a worker thread it would compete
with the loop for the GIL: the loop waits up to the interpreter's switch interval (5 ms) for the
GIL after every socket read while the model thread holds it between small kernels, which measured
slower than no batching at all (``bench/serve_throughput.py``, 64 clients, CPU).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rmlib.data.tokenize import Encoded

#: Items of one kind → their sequences, None where an item cannot be encoded (see ``misfit``).
Encode = Callable[[list[Any]], Sequence[Encoded | None]]


@dataclass
class _Job:
    items: list[Any]  # sequences, or items that ``encode`` turns into sequences
    future: asyncio.Future
    encode: Encode | None = None
    misfit: Callable[[int], Exception] | None = None
    queued: float = field(default_factory=time.perf_counter)


class _Arriving:
    def __init__(self, batcher: Batcher):
        self.batcher = batcher

    def __enter__(self) -> None:
        self.batcher.incoming += 1

    def __exit__(self, *exc) -> None:
        self.batcher.incoming -= 1


class QueueWorker:
    """One asyncio task draining a queue (``_run``), started and stopped with the server's lifespan;
    shared by the reward batcher and the chat generator."""

    queue: asyncio.Queue | None = None
    worker: asyncio.Task | None = None

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            try:
                await self.worker
            except asyncio.CancelledError:
                pass


class Batcher(QueueWorker):
    """Scores lists of sequences for concurrent callers, batching them (one model, one thread)."""

    def __init__(self, model: Any, *, max_sequences: int = 256, max_wait_ms: float = 5.0,
                 batch_size: int = 64, max_tokens: int | None = None):
        if max_sequences < 1 or max_wait_ms < 0:
            raise ValueError("max_sequences must be >= 1 and max_wait_ms >= 0")
        self.model = model
        self.max_sequences, self.max_wait = max_sequences, max_wait_ms / 1000
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.pad_id = model.tokenizer.pad_token_id
        self.queue: asyncio.Queue[_Job] | None = None
        self.worker: asyncio.Task | None = None
        self.batches = 0  # model batches run (a gauge for /health)
        self.sequences = 0
        self.model_seconds = 0.0  # time spent in the model (the rest is HTTP, JSON and tokenizing)
        self.encode_seconds = 0.0  # time spent tokenizing
        self.incoming = 0  # requests being read and parsed: the only ones worth waiting for


    def arriving(self) -> _Arriving:
        """``with batcher.arriving():`` around reading and parsing a request, so that a batch being
        gathered waits (at most ``max_wait_ms``) for it, and for nothing when no request is arriving."""
        return _Arriving(self)

    async def score(self, items: Sequence[Any], encode: Encode | None = None,
                    misfit: Callable[[int], Exception] | None = None) -> torch.Tensor:
        """Rewards (len(items), heads) of ``items``, in order, computed with other callers' items.

        Without ``encode`` the items are :class:`~rmlib.data.tokenize.Encoded` sequences. With it,
        the worker tokenizes the items of every gathered request that has the same ``encode`` in one
        call; an item it returns None for fails this request with ``misfit(index)``.
        """
        if self.queue is None:
            raise RuntimeError("Batcher.start() was not awaited")
        if not items:
            return torch.zeros((0, len(getattr(self.model, "attributes", ())) or 1))
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(list(items), future, encode, misfit))
        return await future

    async def _collect(self) -> list[_Job]:
        assert self.queue is not None
        jobs = [await self.queue.get()]
        n = len(jobs[0].items)
        deadline = time.perf_counter() + self.max_wait
        while n < self.max_sequences:
            if self.queue.empty():
                left = deadline - time.perf_counter()
                if left <= 0 or self.incoming == 0:  # nobody else is on the way: a lone request never waits
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), left)
                except asyncio.TimeoutError:
                    break
            else:
                job = self.queue.get_nowait()
            jobs.append(job)
            n += len(job.items)
        return jobs

    def _score(self, seqs: list[Encoded]) -> torch.Tensor:
        from rmlib.models.scoring import score_sequences

        return score_sequences(self.model, seqs, pad_id=self.pad_id, batch_size=self.batch_size,
                               max_tokens=self.max_tokens)

    def _encode(self, jobs: list[_Job]) -> list[tuple[_Job, list[Encoded]]]:
        """Each job's sequences, the items of every encoder tokenized in one call; a job that fails
        gets its error now and is left out."""
        by_encoder: dict[Any, list[_Job]] = {}
        for j in jobs:
            by_encoder.setdefault(j.encode, []).append(j)
        seqs: dict[int, list[Encoded]] = {}
        for encode, group in by_encoder.items():
            if encode is None:
                seqs.update((id(j), j.items) for j in group)
                continue
            try:
                flat = list(encode([it for j in group for it in j.items]))
                parts: list[list[Encoded | None] | None] = []
                k = 0
                for j in group:
                    parts.append(flat[k:k + len(j.items)])
                    k += len(j.items)
            except Exception:  # noqa: BLE001 - e.g. a chat template that refuses one request's roles
                parts = [self._encode_alone(encode, j) for j in group]  # so that only that request fails
            for j, mine in zip(group, parts):
                if mine is None:
                    continue
                bad = next((i for i, s in enumerate(mine) if s is None), None)
                if bad is None:
                    seqs[id(j)] = mine
                else:
                    _fail(j, j.misfit(bad) if j.misfit else ValueError(f"item {bad} cannot be encoded"))
        return [(j, seqs[id(j)]) for j in jobs if id(j) in seqs]

    @staticmethod
    def _encode_alone(encode: Encode, job: _Job) -> list[Encoded | None] | None:
        try:
            return list(encode(job.items))
        except Exception as e:  # noqa: BLE001 - this request gets the error, the worker lives on
            _fail(job, e)
            return None

    async def _run(self) -> None:
        while True:
            jobs = await self._collect()
            t0 = time.perf_counter()
            ready = self._encode(jobs)  # on the loop's thread, as the model (module docstring)
            self.encode_seconds += time.perf_counter() - t0
            seqs = [s for _, js in ready for s in js]
            if not seqs:  # every request failed to encode, and has its error
                continue
            try:
                t0 = time.perf_counter()
                out = self._score(seqs)  # blocks the loop on purpose (module docstring)
                self.model_seconds += time.perf_counter() - t0
            except Exception as e:  # noqa: BLE001 - every waiting request gets the error, the worker lives on
                for j, _ in ready:
                    _fail(j, e)
                continue
            self.batches += 1
            self.sequences += len(seqs)
            k = 0
            for j, js in ready:
                if not j.future.done():  # a caller that went away has a cancelled future
                    j.future.set_result(out[k:k + len(js)])
                k += len(js)


def _fail(job: _Job, error: Exception) -> None:
    if not job.future.done():
        job.future.set_exception(error)
