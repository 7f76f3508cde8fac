"""What every curation step shares: pairs on the Arrow data path, outputs written atomically, one report.

A step reads its input once with the data layer's readers (:func:`rmlib.data.formats.stream`: any pairs
format, every bad record named or counted) into a memory-mapped Arrow file, computes per-row values in
batches over row ranges on the data layer's worker processes (:mod:`rmlib.data.workers`, the ones the
feature cache tokenizes with: :func:`map_columns`), decides which rows to keep from small numpy columns
(8 bytes per pair), and streams the rows it keeps back out as canonical rmlib JSONL. Nothing but one batch
of texts is held in memory, so memory stays flat in the number of pairs. The input is never modified: the
outputs go to a staging directory published with :func:`rmlib.io.publish_dir`, so a crash leaves the last
complete output (or none) and never a half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rmlib.data.schema import DataError, OnInvalid, ValidationReport
from rmlib.data.workers import PARALLEL_MIN_ROWS, row_ranges, run_in_workers, worker_processes
from rmlib.io import publish_dir, staging_dir, write_jsonl, write_text

__all__ = ["DATA_FILE", "REPORT_FILE", "StepReport", "PairTable", "read_pairs", "first_user_turn", "map_columns",
           "pair_row", "step_output", "write_rows"]

DATA_FILE = "data.jsonl"
"""The kept pairs of every step, canonical rmlib JSONL (readable by every rmlib command)."""
REPORT_FILE = "report.json"
"""Every step's report (:class:`StepReport`)."""
BATCH = 1000
"""Rows per batch of :func:`map_columns` and per write batch."""


@dataclass
class StepReport:
    """Counts in, counts out, removed by reason, a few examples per reason, and where the outputs went.

    ``removed`` counts every input row that is not in ``data.jsonl``, by reason, so
    ``n_in == n_out + sum(removed.values())`` always holds (:meth:`check` asserts it before writing).
    ``read`` is the reader's own validation report (records skipped as invalid never become rows).
    """

    step: str
    source: str
    params: dict[str, Any]
    n_in: int = 0
    n_out: int = 0
    removed: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    read: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    max_examples: int = 3

    def remove(self, reason: str, n: int = 1) -> None:
        self.removed[reason] += int(n)

    def example(self, reason: str, row: dict[str, Any], **detail: Any) -> None:
        """Keep up to ``max_examples`` short examples per reason (texts cut to 200 characters)."""
        kept = self.examples.setdefault(reason, [])
        if len(kept) < self.max_examples:
            prompt = json.loads(row["prompt"]) if isinstance(row["prompt"], str) else row["prompt"]
            kept.append({"index": int(row["index"]), "prompt": _cut(first_user_turn(prompt)),
                         "chosen": _cut(row["chosen"]), "rejected": _cut(row["rejected"]), **detail})

    def check(self) -> None:
        total = self.n_out + sum(self.removed.values())
        if total != self.n_in:
            raise RuntimeError(f"{self.step}: {self.n_in} rows in but {self.n_out} kept + "
                               f"{sum(self.removed.values())} removed; every row must be accounted for")

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "source": self.source, "params": self.params, "n_in": self.n_in,
                "n_out": self.n_out, "removed": dict(sorted(self.removed.items())), "examples": self.examples,
                "outputs": self.outputs, "read": self.read, **self.extra, "seconds": round(self.seconds, 3)}

    def format(self) -> str:
        lines = [f"{self.step}: {self.n_in} pairs in, {self.n_out} out ({self.seconds:.1f} s)"]
        lines += [f"  removed {n} ({reason})" for reason, n in sorted(self.removed.items())]
        lines += [f"  {name}: {path}" for name, path in self.outputs.items()]
        skipped = self.read.get("skipped") or {}
        if skipped:
            lines.append(f"  invalid input records skipped by the reader: {dict(skipped)}")
        return "\n".join(lines)


def _cut(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[:n] + "…"


def first_user_turn(prompt: list[dict[str, str]]) -> str:
    """The first user message of a conversation ("first-turn prompt"); empty when there is none."""
    return next((m["content"] for m in prompt if m.get("role") == "user"), "")


def map_columns(table: PairTable, fn: Callable[..., dict], dtypes: Mapping[str, Any], num_proc: int | None, *,
                min_rows: int = PARALLEL_MIN_ROWS, **fn_kwargs: Any) -> dict[str, np.ndarray]:
    """Per-row values of every pair of ``table``: ``fn(batch, **fn_kwargs)`` (``batch``: the columns of
    :data:`BATCH` rows as lists) returns ``{name: one value per row}`` for the names of ``dtypes``; the result
    is one numpy column per name, in row order.

    The rows are cut into contiguous ranges run by the data layer's worker processes
    (:func:`rmlib.data.workers.run_in_workers`, the feature cache's tokenize workers): ``num_proc`` of
    them, or by :func:`~rmlib.data.workers.worker_processes`' rule (one per core from ``min_rows`` rows;
    in this process below). Forked workers inherit the memory-mapped table and ``fn_kwargs`` (an n-gram
    index is not copied per batch); only row ranges and the small result columns travel.
    """
    n = len(table)
    processes = worker_processes(n, num_proc, min_rows)
    parts = run_in_workers(_map_range, (table.ds, fn, fn_kwargs, dict(dtypes)), row_ranges(n, processes or 1),
                           processes, what="curation", setting="num_proc (--num-proc)") if n else []
    return {name: np.concatenate([p[name] for p in parts]) if parts else np.zeros(0, dtype)
            for name, dtype in dtypes.items()}


def _map_range(job: tuple, start: int, stop: int) -> dict[str, np.ndarray]:
    ds, fn, fn_kwargs, dtypes = job
    cols: dict[str, list] = {name: [] for name in dtypes}
    for at in range(start, stop, BATCH):
        made = fn(ds.data.table.slice(at, min(BATCH, stop - at)).to_pydict(), **fn_kwargs)
        for name in dtypes:
            cols[name].extend(made[name])
    return {name: np.asarray(values, dtype=dtypes[name]) for name, values in cols.items()}


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class PairTable:
    """Pairs of one source as a memory-mapped Arrow ``datasets.Dataset`` (one row per valid pair).

    Columns: ``index`` (0-based among the valid pairs, the row number), ``prompt`` (the conversation as
    JSON), ``chosen``, ``rejected``, ``strength``, ``votes`` and ``meta`` (JSON).
    """

    ds: Any
    source: str
    format: str
    report: ValidationReport

    def __len__(self) -> int:
        return len(self.ds)

    def column(self, name: str) -> np.ndarray:
        return self.ds.data.column(name).to_numpy()


def _features():
    import datasets

    v = datasets.Value
    return datasets.Features({"index": v("int64"), "prompt": v("string"), "chosen": v("string"),
                              "rejected": v("string"), "strength": v("float64"), "votes": v("string"),
                              "meta": v("string")})


def read_pairs(source: str | os.PathLike, work_dir: str | os.PathLike, *, format: str | None = None,
               on_invalid: OnInvalid = "error", max_examples: int = 3, name: str = "input") -> PairTable:
    """Stream ``source`` (any pairs format the readers know) into ``work_dir/<name>.arrow``, one record at a time.

    Non-pair data (ratings, judge) is a :class:`DataError` naming the file: curation compares two responses.
    """
    import datasets
    from datasets.arrow_writer import ArrowWriter

    from rmlib.data.formats import stream

    st = stream(source, format, on_invalid=on_invalid, max_examples=max_examples)
    if st.kind != "pairs":
        raise DataError(str(source), None, None, f"holds {st.kind} data (format {st.format}); curation steps "
                        "read preference pairs", "wrong_kind")
    path = Path(work_dir) / f"{name}.arrow"
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with ArrowWriter(features=_features(), path=str(path), writer_batch_size=BATCH) as w:
        for ex in st.examples:
            w.write({"index": n, "prompt": json.dumps(list(ex.prompt), ensure_ascii=False), "chosen": ex.chosen,
                     "rejected": ex.rejected, "strength": ex.strength,
                     "votes": None if ex.votes is None else json.dumps(list(ex.votes)),
                     "meta": json.dumps(dict(ex.meta), ensure_ascii=False, default=str)})
            n += 1
        w.finalize()
    return PairTable(datasets.Dataset.from_file(str(path)), st.report.source, st.format, st.report)


# ---------------------------------------------------------------------------------------------- writing


def pair_row(row: dict[str, Any], *, flip: bool = False, curation: dict[str, Any] | None = None) -> dict[str, Any]:
    """One Arrow row → one canonical rmlib JSONL row (``flip`` swaps chosen and rejected and negates votes;
    ``curation`` is added to ``meta["curation"]`` for rows a step changed or routed)."""
    meta = json.loads(row["meta"]) if row["meta"] else {}
    if curation:
        meta["curation"] = {**meta.get("curation", {}), **curation}
    votes = None if row["votes"] is None else json.loads(row["votes"])
    chosen, rejected = row["chosen"], row["rejected"]
    if flip:
        chosen, rejected = rejected, chosen
        votes = None if votes is None else [-v for v in votes]
    return {"prompt": json.loads(row["prompt"]), "chosen": chosen, "rejected": rejected,
            "strength": row["strength"], "votes": votes, "meta": meta}


def _iter_rows(ds: Any) -> Iterator[dict[str, Any]]:
    for batch in ds.iter(batch_size=BATCH):
        keys = list(batch)
        for values in zip(*(batch[k] for k in keys)):
            yield dict(zip(keys, values))


def write_rows(table: PairTable, path: Path, select: np.ndarray,
               make: Callable[[dict[str, Any]], dict[str, Any]] = pair_row) -> int:
    """Stream the rows where ``select`` is true (in input order) to ``path`` with the atomic JSONL writer."""
    count = [0]

    def rows() -> Iterator[dict[str, Any]]:
        for row in _iter_rows(table.ds):
            if select[row["index"]]:
                count[0] += 1
                yield make(row)

    write_jsonl(rows(), path)
    return count[0]


@contextmanager
def step_output(out_dir: str | os.PathLike, report: StepReport) -> Iterator[tuple[Path, Path]]:
    """``(staging directory, scratch directory)`` for one step; on success the report is checked and written and
    the directory published atomically to ``out_dir``. The scratch Arrow files never reach ``out_dir``.

    ``out_dir`` must not be the input's own directory's parent of a file being read: outputs go to a new
    directory, so a step can never overwrite its input.
    """
    start = time.perf_counter()
    stage = staging_dir(out_dir)
    work = stage / ".work"
    work.mkdir()
    try:
        yield stage, work
        shutil.rmtree(work, ignore_errors=True)
        report.seconds = time.perf_counter() - start
        report.check()
        for name in sorted(p.name for p in stage.iterdir()):
            report.outputs.setdefault(name.removesuffix(".jsonl"), str(Path(out_dir) / name))
        report.outputs[REPORT_FILE.removesuffix(".json")] = str(Path(out_dir) / REPORT_FILE)
        write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", stage / REPORT_FILE)
        publish_dir(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def check_not_inside(source: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """Refuse an output directory that holds the input file: publishing it would replace the input."""
    src, out = Path(source).expanduser().resolve(), Path(out_dir).expanduser().resolve()
    if src.exists() and (src == out or out in src.parents):
        raise ValueError(f"output directory {out_dir} contains the input {source}; a curation step never "
                         "modifies its input, write to another directory")
