"""Worker processes over ranges of rows: the one pool the feature cache and the curation steps share.

Why processes: reading, validating, rendering and hashing records is Python, one core per process; the
Rust tokenizer can spread one ``encode_batch`` over threads, but not the Python around it. Forked
workers spread both. Why fork: a worker inherits what the job needs (a featurizer, an n-gram index, a
memory-mapped table) instead of unpickling a tokenizer each, so only small tasks (file names, row or
byte ranges) and small results travel. Why an executor and not a ``multiprocessing.Pool``: a worker
killed (out of memory) raises :class:`WorkerDied` here instead of leaving the caller waiting forever.
Why one tokenizer thread per worker: a forked child that enters the Rust tokenizer's thread pool after
the parent used it waits forever (the pool's threads are not copied by fork; seen with MiniLM,
tests/test_features.py); the workers are the parallelism anyway.

One threshold and one rule decide how many processes a job gets (:func:`worker_processes`): below
:data:`PARALLEL_MIN_ROWS` rows the job runs in the calling process, since starting workers costs more than
they save; above it, one process per core, at most :data:`MAX_PROCESSES`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rmlib.data.schema import DataError

__all__ = ["MAX_PROCESSES", "PARALLEL_MIN_ROWS", "WorkerDied", "row_ranges", "run_in_workers", "worker_processes"]

PARALLEL_MIN_ROWS = 4_000
"""Below this many rows a job runs in the calling process (forking workers costs more than it saves)."""
MAX_PROCESSES = 16
"""The most worker processes a job gets by default (``num_proc`` given explicitly may ask for more)."""


class WorkerDied(RuntimeError):
    """A worker process died (killed for memory, most often) before finishing its range."""


def worker_processes(n: int, num_proc: int | None, min_rows: int = PARALLEL_MIN_ROWS) -> int | None:
    """Worker processes for a job over ``n`` rows; None: the calling process.

    ``num_proc=None``: ``min(cores, MAX_PROCESSES)`` from ``min_rows`` rows, else this process. 0 and 1 both
    mean "this process"; a job of one row is never split.
    """
    if num_proc is None:
        num_proc = min(os.cpu_count() or 1, MAX_PROCESSES) if n >= min_rows else 1
    return num_proc if num_proc > 1 and n > 1 else None


def row_ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of ``parts`` contiguous, nearly equal ranges covering rows ``0..n`` (none empty)."""
    parts = max(1, min(int(parts), n))
    bounds = np.linspace(0, n, parts + 1).astype(np.int64).tolist()
    return list(zip(bounds[:-1], bounds[1:]))


_JOB: tuple[Callable[..., Any], Any] | None = None  # set in each worker by the pool initializer


def _set_job(fn: Callable[..., Any], job: Any) -> None:
    global _JOB
    _JOB = (fn, job)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # see the module docstring: one tokenizer thread per worker


class _Raised:
    """A DataError raised in a worker, carried back as its fields (its constructor takes five arguments, so
    the exception itself does not survive pickling) and raised again, unchanged, in the caller."""

    def __init__(self, err: DataError):
        self.args = (err.source, err.index, err.field, err.detail, err.reason)


def _run_task(task: tuple) -> Any:
    assert _JOB is not None
    fn, job = _JOB
    try:
        return fn(job, *task)
    except DataError as err:
        return _Raised(err)


def run_in_workers(fn: Callable[..., Any], job: Any, tasks: Sequence[tuple], processes: int | None, *,
                   what: str = "data", setting: str = "num_proc") -> list[Any]:
    """``[fn(job, *task) for task in tasks]``, in this process (``processes=None``) or in ``processes`` forked
    workers that inherit ``job``; results in task order.

    ``fn`` must be a module-level function (it is sent by name); ``job`` is never pickled (fork copies it);
    each task and each result is. An exception of a task is raised here, that of the first failing task in
    task order, so an error is the same one the serial run would raise first when each task covers the
    rows after the previous one. A worker that dies is a :class:`WorkerDied` naming ``what`` and the
    ``setting`` that lowers the number of processes.
    """
    tasks = [tuple(t) for t in tasks]
    if processes is None or len(tasks) <= 1:
        return [fn(job, *t) for t in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(min(processes, len(tasks)), mp_context=multiprocessing.get_context("fork"),
                               initializer=_set_job, initargs=(fn, job))
    try:
        results = []
        for r in pool.map(_run_task, tasks):
            if isinstance(r, _Raised):
                raise DataError(*r.args)
            results.append(r)
        return results
    except BrokenProcessPool as e:
        raise WorkerDied(f"a {what} worker died (killed for memory?); set {setting} lower: {e}") from e
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
