"""The tokenize stage's files: feature shards, their side files of scalar columns, and how they are mapped.

Why its own module: how the feature cache lays rows out on disk (few large record batches written in
64 KB pieces, the per-row scalars in a contiguous side file, maps with ``MADV_RANDOM``) is measured
against the kernel's page cache (``bench/data_throughput.py``, docs/performance.md) and changes apart
from what the cache holds and when it is rebuilt (:mod:`rmlib.data.features`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rmlib.data.schema import ValidationReport
from rmlib.data.tokenize import DROP_REASONS, Featurizer, drop_reason

Canonical = list[tuple[str, int]]
"""The canonical pass's output: its Arrow shards in record order, each with its number of rows."""


def read_scalar_columns(path: Path):
    import pyarrow as pa

    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def write_scalar_columns(files: Sequence[Path], out: Path):
    """Gather the tokenize workers' side shards (per-row scalar columns: lengths, hashes, split,
    drop, labels, ...) into one file, in record batches of ~1M rows; returns it opened.

    Why a side file: in the feature files these columns sit between token-id lists, so reading
    one of them for the whole table (the epoch plan's lengths, the hold-out's hashes) would fault
    in token pages around every record batch, and resident memory grew with N (+21 % from 20k to
    300k pairs). Here each column is contiguous. Shards are read with plain reads, not mapped.
    """
    import pyarrow as pa

    chunk_rows = 1 << 20  # one record batch per ~1M rows: a column's bytes stay contiguous
    with pa.OSFile(str(files[0]), "rb") as src:
        schema = pa.ipc.open_stream(src).schema
    with pa.OSFile(str(out), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        pending, held = [], 0
        for f in files:
            with pa.OSFile(str(f), "rb") as src:
                for batch in pa.ipc.open_stream(src):
                    pending.append(batch)
                    held += batch.num_rows
                    if held >= chunk_rows:
                        writer.write_table(pa.Table.from_batches(pending, schema).combine_chunks())
                        pending, held = [], 0
        if pending:
            writer.write_table(pa.Table.from_batches(pending, schema).combine_chunks())
    return read_scalar_columns(out)


def scalar_fields(schema) -> list[str]:
    """The per-row scalar columns of a feature schema: everything but the token-id lists."""
    import pyarrow as pa

    return [f.name for f in schema if not (pa.types.is_list(f.type) or pa.types.is_large_list(f.type))]


def tokenize_rows(batch: dict, *, featurizer: Featurizer, kind: str, attributes: list[str]) -> dict:
    prompts = [json.loads(p) for p in batch["prompt"]]
    if kind == "lists":
        return tokenize_lists(batch, prompts, featurizer)
    responses = list(zip(batch["chosen"], batch["rejected"])) if kind == "pairs" else [[r] for r in batch["response"]]
    splits = featurizer.split_many(prompts, responses)
    n_resp = 2 if kind == "pairs" else 1
    out: dict[str, list] = {"head": [], "body": [], "n_tokens": [], "drop": [], "truncated": []}
    for k in range(n_resp):
        out[f"resp_{k}"], out[f"keep_{k}"] = [], []
    if kind == "ratings":
        out["targets"] = []
    for i, sp in enumerate(splits):
        keeps = [featurizer.fit(sp.head, sp.body, r) for r in sp.responses]
        targets = None
        if kind == "ratings":
            scores = json.loads(batch["scores"][i])
            targets = [None if scores.get(a) is None else float(scores[a]) for a in attributes]
            out["targets"].append(targets)
        drop = drop_reason(keeps, sp.responses, targets)
        keeps = [0 if k is None else k for k in keeps]
        out["head"].append(sp.head)
        out["body"].append(sp.body)
        for k in range(n_resp):
            out[f"resp_{k}"].append(sp.responses[k])
            out[f"keep_{k}"].append(keeps[k])
        out["n_tokens"].append(sum(len(sp.head) + keeps[k] + len(sp.responses[k]) for k in range(n_resp)))
        out["drop"].append(drop)
        out["truncated"].append(sum(keeps[k] < len(sp.body) for k in range(n_resp)) if not drop else 0)
    return out


def tokenize_lists(batch: dict, prompts: list, featurizer: Featurizer) -> dict:
    """Lists: the prompt's tokens once, every response's tokens and how much prompt each keeps. A list
    is dropped whole (``too_long``, ``identical_after_tokenization``): a ranking with a response left out
    is another ranking. ``n_tokens`` counts every sequence in full (prompt once per response), the same
    unit as pairs, so batch planning weighs items by what separate encoding would cost."""
    splits = featurizer.split_many(prompts, [json.loads(r) for r in batch["responses"]])
    out: dict[str, list] = {k: [] for k in ("head", "body", "resps", "keeps", "scores", "n_tokens", "drop",
                                            "truncated")}
    for i, sp in enumerate(splits):
        fits = [featurizer.fit(sp.head, sp.body, r) for r in sp.responses]
        drop = drop_reason(fits, sp.responses)
        keeps = [0 if k is None else k for k in fits]
        out["head"].append(sp.head)
        out["body"].append(sp.body)
        out["resps"].append(sp.responses)
        out["keeps"].append(keeps)
        out["scores"].append([float(x) for x in json.loads(batch["scores"][i])])
        out["n_tokens"].append(sum(len(sp.head) + k + len(r) for k, r in zip(keeps, sp.responses)))
        out["drop"].append(drop)
        out["truncated"].append(min(127, sum(k < len(sp.body) for k in keeps)) if not drop else 0)
    return out


def side_path(shard: Path | str) -> Path:
    return Path(str(shard)[:-len(".arrow")] + ".columns.arrow")


def canonical_batches(files: Canonical, start: int, stop: int) -> Iterator[tuple[int, Any]]:
    """(first row, record batch) of the canonical shards in order, from the batch holding row ``start`` to
    the one holding row ``stop - 1``; a shard that ends before ``start`` is skipped unread."""
    import pyarrow as pa

    row = 0
    for path, rows in files:
        if row + rows <= start:
            row += rows
            continue
        with pa.OSFile(path, "rb") as src:
            for batch in pa.ipc.open_stream(src):
                if row >= stop:
                    return
                yield row, batch
                row += batch.num_rows
        if row >= stop:
            return


class SmallWrites(io.RawIOBase):
    """A write-only file that hands the OS at most ``chunk`` bytes per ``write``.

    Why: on Linux kernels with large page-cache folios (6.x on ext4/xfs), a folio's size follows
    the size of the write that created it, and a memory-mapped read later maps the whole folio
    into the reader's resident set. The feature files are written once and then read a few rows
    at a time through a map: written in 25 MB buffers, reading one row mapped 2 MB; written in
    64 KB pieces, 64 KB (the kernel's fault-around). Measured: ``bench/data_throughput.py``.
    """

    def __init__(self, raw, chunk: int = 1 << 16):
        self.raw, self.chunk = raw, chunk

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        for at in range(0, len(view), self.chunk):
            piece = view[at:at + self.chunk]
            while piece:  # a raw write may take fewer bytes than offered
                piece = piece[self.raw.write(piece):]
        return len(view)


def map_feature_file(path: Path | str):
    """A ``datasets.Dataset`` over one feature file, memory-mapped with ``MADV_RANDOM``.

    Why not ``Dataset.from_file``: its map uses the kernel's default read-around, which on a
    cold cache reads (and maps) up to ``read_ahead_kb`` around each touched row, several MB on
    common VMs, so a run's resident memory grows with the rows it samples. Training reads rows in
    random order, which is what ``MADV_RANDOM`` tells the kernel. The result pickles like any
    memory-mapped dataset (by path, re-mapped by ``datasets`` on the other side).
    """
    import mmap

    import datasets
    import pyarrow as pa
    from datasets.table import MemoryMappedTable

    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(m, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        m.madvise(mmap.MADV_RANDOM)
    table = pa.ipc.open_stream(pa.BufferReader(pa.py_buffer(m))).read_all()
    return datasets.Dataset(MemoryMappedTable(table, str(path)))


def mapped_batch(part, fn, fn_kwargs: dict, schema, keep: list[str]):
    """``fn``'s columns for one batch of canonical rows, beside the canonical columns it keeps.

    The kept columns are copied into buffers of their own (``concat_arrays``): a slice of a canonical
    record batch would otherwise carry its offset into the written file, and the bytes of a feature
    file would depend on where the canonical pass cut its shards, not only on the rows.
    """
    import pyarrow as pa

    made = fn(part.to_pydict(), **fn_kwargs)
    arrays = [pa.concat_arrays(part.column(f.name).cast(f.type).chunks) if f.name in keep
              else pa.array(made[f.name], type=f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def map_range(job: tuple, out: str, start: int, stop: int, batch_size: int = 512) -> str:
    """Rows ``[start, stop)`` of the canonical shards through ``fn`` in batches of ``batch_size``,
    written to ``out`` in record batches of ``batch_rows`` rows (the job's last item), their scalar columns to a
    side shard. What ``Dataset.map(fn, batched=True)`` does, for a row range.

    Why not ``map`` itself: it memory-maps its input and, with ``num_proc``, opens every output
    shard in the calling process; each record batch touched faults in the kernel's read-around
    window, so the builder's RSS grew with N (+300 MB from 20k to 100k pairs before, +20 MB at
    100k through the shards). Here the canonical shards are read through ``OSFile`` streams (a
    batch is freed once written; a shard wholly before ``start`` is not opened), nothing is
    memory-mapped, and the output has few, large record batches (~25 MB each at HelpSteer2 lengths),
    so opening it later touches few pages. ``index`` is the row's position in the whole table (each
    canonical shard of a parallel pass numbers its own rows from 0).
    """
    import pyarrow as pa
    from datasets.arrow_writer import ArrowWriter

    canonical, fn, fn_kwargs, features, keep, batch_rows = job
    schema = features.arrow_schema
    scalar = scalar_fields(schema)
    done: list = []
    with pa.OSFile(str(side_path(out)), "wb") as side_sink, open(out, "wb", buffering=0) as raw, \
            ArrowWriter(features=features, stream=SmallWrites(raw), writer_batch_size=batch_rows) as writer:
        side = pa.ipc.new_stream(side_sink, pa.schema([schema.field(c) for c in scalar]))

        def flush() -> None:
            table = pa.concat_tables(done).combine_chunks()
            writer.write_table(table, writer_batch_size=table.num_rows)  # one record batch per flush
            side.write_table(table.select(scalar))
            done.clear()

        pending = []
        for lo, record_batch in canonical_batches(canonical, start, stop):
            row = lo + record_batch.num_rows
            if row <= start:
                continue
            first = max(start, lo)
            part = record_batch.slice(first - lo, min(stop, row) - first)
            column = part.schema.get_field_index("index")
            pending.append(part.set_column(column, "index", pa.array(np.arange(first, first + part.num_rows),
                                                                   pa.int64())))
            if sum(b.num_rows for b in pending) < batch_size:
                continue
            table = pa.Table.from_batches(pending)
            for at in range(0, table.num_rows - table.num_rows % batch_size, batch_size):
                done.append(mapped_batch(table.slice(at, batch_size), fn, fn_kwargs, schema, keep))
            rest = table.num_rows % batch_size
            pending = table.slice(table.num_rows - rest).to_batches() if rest else []
            if sum(t.num_rows for t in done) >= batch_rows:
                flush()
        if pending:
            done.append(mapped_batch(pa.Table.from_batches(pending), fn, fn_kwargs, schema, keep))
        if done:
            flush()
        side.close()
        writer.finalize()
    return out


def report_with_drops(report: ValidationReport, side, source: str, max_examples: int,
                       max_length: int) -> ValidationReport:
    """The reader's report plus the rows tokenization dropped, counted by reason, a few named."""
    import pyarrow.compute as pc

    drop = side.column("drop")
    index = side.column("index").to_numpy(zero_copy_only=False)
    reasons = [r.as_py() for r in pc.unique(drop) if r.as_py()]
    for reason in sorted(reasons):
        where = np.nonzero(pc.equal(drop, reason).to_numpy(zero_copy_only=False))[0]
        report.filtered[reason] += len(where)
        for i in where[:max_examples]:
            what = DROP_REASONS[reason].format(max_length) if reason in DROP_REASONS else reason
            report._example(reason, f"{source}: example {int(index[i])} (0-based, after reading): {what}")
    report.kept -= int(pc.sum(pc.not_equal(drop, "")).as_py() or 0)
    return report
