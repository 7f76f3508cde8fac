"""Features at the scale reward models train on: Arrow on disk, tokenized once, cached, shared.

A data source becomes features in two stages, both written with ``datasets`` into one cache
directory per *key*:

1. **canonical** (:func:`_write_canonical`): records are read and validated one at a time (the
   same readers, converters, named errors and skip report as everywhere else) and written to Arrow
   shards: texts, hashes of the prompt and of the whole example (``uint64``), and the value of
   every label the loss consumes. Nothing but the current record is held in memory, so a source
   larger than RAM streams. A large local JSONL or Parquet file is cut into byte ranges or row
   groups read by the data layer's worker processes (:mod:`rmlib.data.workers`), one shard each;
   their reports merge, in file order, into the serial pass's report.
2. **tokenized**: a batched ``map`` (in this process, or ``num_proc`` worker processes:
   :func:`rmlib.data.workers.worker_processes`) renders and tokenizes each prompt once
   (:meth:`Featurizer.split_many`) and stores its tokens once per pair beside each response's
   tokens and how many prompt tokens each sequence keeps. Dropped pairs (too long, identical after
   tokenization) keep their row with the reason, and are counted in the report.

The key is a hash of everything that changes tokens: the source files (path, size, mtime), the
reading options, the tokenizer (its vocabulary, normalisation and chat template), ``max_length``,
``keep_system``, the labels and attributes. A changed input is a new key, never a stale hit; a
finished cache is published atomically (``rmlib.io.publish_dir``) and every later run, and every
other rank, memory-maps it (:class:`FeatureTable`). A :class:`FeatureSet` is a table plus the row
numbers one split uses; a batch materializes only its own rows.

What one canonical pass (or part) writes lives in :mod:`rmlib.data.canonical`; how the tokenized rows
are laid out on disk and mapped back (feature shards, side files of scalar columns) in
:mod:`rmlib.data.feature_files`. This module keys, plans, builds and opens the cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rmlib.data import judge_features
from rmlib.data.canonical import LIST_LABELS, canonical_part, count_part, write_examples
from rmlib.data.feature_files import (
    Canonical,
    map_feature_file,
    map_range,
    read_scalar_columns,
    report_with_drops,
    side_path,
    tokenize_rows,
    write_scalar_columns,
)
from rmlib.data.schema import PreferencePair, RankedList, RatedResponse, ValidationReport
from rmlib.data.tokenize import (
    Encoded,
    Featurizer,
    ListFeatures,
    PairFeatures,
    RatedFeatures,
)
from rmlib.data.workers import row_ranges, run_in_workers, worker_processes
from rmlib.io import publish_dir, staging_dir

FEATURE_VERSION = "4"  # bump when the stored columns change: old caches become other keys
MANIFEST = "manifest.json"
COLUMNS_FILE = "columns.arrow"  # the per-row scalar columns, contiguous (see write_scalar_columns)
#: rows per record batch of the feature files: few batches, so opening a file touches few pages
TOKENS_BATCH_ROWS = 8192


def default_cache_dir() -> Path:
    """``$RMLIB_CACHE``, else ``$XDG_CACHE_HOME/rmlib`` or ``~/.cache/rmlib``; features go in ``features/``."""
    root = os.environ.get("RMLIB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "rmlib")
    return Path(root) / "features"




def _source_stamp(source: str) -> list:
    """What identifies a source's contents cheaply: (path, size, mtime) of each file, or the hub id."""
    p = Path(source).expanduser()
    if not p.exists():
        return [str(source)]
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    return [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def tokenizer_fingerprint(tok) -> str:
    """Vocabulary, merges, normalisation, special tokens and chat template: anything that changes ids."""
    h = hashlib.sha256(type(tok).__name__.encode())
    backend = getattr(tok, "backend_tokenizer", None)
    h.update(backend.to_str().encode() if backend is not None else json.dumps(sorted(tok.get_vocab().items())).encode())
    h.update(json.dumps([str(getattr(tok, "chat_template", None)), tok.special_tokens_map,
                         tok.padding_side], sort_keys=True, default=str).encode())
    return h.hexdigest()


class KindMismatch(ValueError):
    """The source holds another kind of examples than the loss trains on (found before tokenizing)."""


@dataclass(frozen=True)
class SourceSpec:
    """Where examples come from and how they are read (everything before tokenization)."""

    path: str
    format: str | None = None
    split: str | None = None  # hub split
    data_dir: str | None = None
    column_map: tuple[tuple[str, str], ...] = ()
    on_invalid: str = "error"
    annotations: str = "aggregate"  # "all": every annotator's label its own example (rmlib.data.annotations)


@dataclass
class FeatureTable:
    """A built (or cache-hit) feature cache: the memory-mapped dataset and what building it found."""

    ds: Any  # datasets.Dataset, memory-mapped
    kind: str
    format: str
    report: ValidationReport
    attributes: list[str]
    labels: tuple[str, ...]
    directory: Path
    built: bool  # False: a cache hit (nothing was read or tokenized)
    tokenize_seconds: float
    types: tuple[int, int] | None = None  # encoder segment ids (first, second); None for decoders
    middle_len: int = 0

    side: Any = None  # pyarrow.Table of the per-row scalar columns (COLUMNS_FILE), memory-mapped

    _columns: dict = field(default_factory=dict, repr=False)

    def equals(self, name: str, value: str | None) -> np.ndarray:
        """Boolean mask of rows whose string column ``name`` is ``value`` (computed in Arrow: a string
        column is never turned into millions of Python strings)."""
        import pyarrow.compute as pc

        col = self.side.column(name)
        mask = pc.is_null(col) if value is None else pc.fill_null(pc.equal(col, value), False)
        return mask.to_numpy(zero_copy_only=False)

    def column(self, name: str) -> np.ndarray:
        """One numeric column as a numpy array (read once from the scalar-column file, then kept)."""
        if name not in self._columns:
            self._columns[name] = self.side.column(name).to_numpy(zero_copy_only=False)
        return self._columns[name]


@dataclass
class FeatureSet:
    """The rows of a :class:`FeatureTable` one split uses (train, eval, one mixture source).

    Why rows and not a copy: splitting, hold-out and mixing only choose row numbers; token ids stay
    in the memory-mapped Arrow file and a batch reads just its own rows.
    """

    table: FeatureTable
    rows: np.ndarray
    lengths: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.rows = np.asarray(self.rows, dtype=np.int64)
        self.lengths = self.table.column("n_tokens")[self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator:
        for start in range(0, len(self), 1024):
            yield from self.take(range(start, min(start + 1024, len(self))))

    def take(self, idx: Sequence[int]) -> list[PairFeatures | RatedFeatures]:
        """Features of items ``idx`` (positions in this set), read from Arrow for this call only."""
        t = self.table
        rows = t.ds[[int(self.rows[i]) for i in idx]] if len(idx) else {}
        if t.kind == "judge":  # rmlib.data.judge_features: original (+ flipped) sequence per item
            return [judge_features.take_row(rows, j) for j in range(len(idx))]
        out = []
        labels = [n for n in t.labels if n not in LIST_LABELS]
        for j in range(len(idx)):
            head, body = rows["head"][j], rows["body"][j]
            values = {n: rows[f"label_{n}"][j] for n in labels}
            if t.kind == "lists":  # one sequence per response, the prompt stored once
                seqs = [self._encoded(head, body, r, k) for r, k in zip(rows["resps"][j], rows["keeps"][j])]
                out.append(ListFeatures(seqs, {"scores": list(rows["scores"][j]), **values}, int(rows["index"][j])))
            elif t.kind == "pairs":
                c = self._encoded(head, body, rows["resp_0"][j], rows["keep_0"][j])
                r = self._encoded(head, body, rows["resp_1"][j], rows["keep_1"][j])
                out.append(PairFeatures(c, r, values, int(rows["index"][j])))
            else:
                targets = [math.nan if v is None else v for v in rows["targets"][j]]
                values = {"targets": targets, **values}
                out.append(RatedFeatures(self._encoded(head, body, rows["resp_0"][j], rows["keep_0"][j]), values,
                                         int(rows["index"][j])))
        return out

    def _encoded(self, head: list[int], body: list[int], resp: list[int], keep: int) -> Encoded:
        kept = body[len(body) - keep:] if keep else []
        ids = head + kept + resp
        prompt_len = len(head) + keep
        types = None
        if self.table.types is not None:
            n_first = prompt_len + self.table.middle_len
            types = [self.table.types[0]] * n_first + [self.table.types[1]] * (len(ids) - n_first)
        return Encoded(ids, prompt_len, types)

    def labels(self, idx: Sequence[int]):
        """The loss labels of items ``idx`` as float32 tensors, without reading any token ids."""
        import torch

        rows = self.rows[np.asarray(list(idx), dtype=np.int64)]
        out = {}
        for name in self.table.labels:
            if name in LIST_LABELS:  # ragged for lists: NaN-padded to the longest list of these items
                raw = self.table.ds.select_columns([name])[rows.tolist()][name]
                width = max((len(t) for t in raw), default=0)
                values = [[math.nan if v is None else v for v in t] + [math.nan] * (width - len(t)) for t in raw]
            else:
                values = self.table.column(f"label_{name}")[rows]
            out[name] = torch.tensor(np.asarray(values, dtype=np.float32))
        if self.table.kind == "judge":  # target tokens per item: the unit the justifier loss divides by
            out["n_target"] = torch.tensor(self.table.column("n_target")[rows].astype(np.float32))
        return out

    def subset(self, positions: np.ndarray) -> FeatureSet:
        return FeatureSet(self.table, self.rows[np.asarray(positions, dtype=np.int64)])


class MixedSet:
    """Several :class:`FeatureSet` s drawn with sampling weights, seen as one set of items.

    Each part contributes ``round(weight × len(part))`` items: below 1 a seeded subsample without
    replacement, above 1 every item ``floor(weight)`` times plus a seeded remainder. The draw is
    fixed by the seed; the trainer's global batches shuffle it each epoch like any other set.
    """

    def __init__(self, parts: Sequence[FeatureSet], weights: Sequence[float], names: Sequence[str], seed: int):
        rng = np.random.default_rng(seed)
        src, pos, self.counts = [], [], {}
        for k, (part, w, name) in enumerate(zip(parts, weights, names)):
            whole, frac = divmod(float(w), 1.0)
            chosen = [np.tile(np.arange(len(part)), int(whole))]
            extra = round(frac * len(part))
            if extra:
                chosen.append(np.sort(rng.choice(len(part), size=extra, replace=False)))
            idx = np.concatenate(chosen).astype(np.int64)
            src.append(np.full(len(idx), k, dtype=np.int64))
            pos.append(idx)
            self.counts[name] = {"examples": len(part), "weight": float(w), "per_epoch": len(idx)}
        self.parts = list(parts)
        self.src, self.pos = np.concatenate(src), np.concatenate(pos)
        self.lengths = np.concatenate([p.lengths[i] for p, i in zip(self.parts, pos)]) if len(self.src) else np.zeros(0)

    def __len__(self) -> int:
        return len(self.src)

    def __iter__(self) -> Iterator:
        for start in range(0, len(self), 1024):
            yield from self.take(range(start, min(start + 1024, len(self))))

    def _gather(self, idx: Sequence[int], fn) -> list:
        idx = np.asarray(list(idx), dtype=np.int64)
        out: list = [None] * len(idx)
        for k, part in enumerate(self.parts):
            where = np.nonzero(self.src[idx] == k)[0]
            if len(where):
                for w, item in zip(where, fn(part, self.pos[idx[where]])):
                    out[w] = item
        return out

    def take(self, idx: Sequence[int]) -> list:
        return self._gather(idx, lambda part, p: part.take(p.tolist()))

    def labels(self, idx: Sequence[int]):
        import torch

        rows = self._gather(idx, lambda part, p: [{k: v[j] for k, v in part.labels(p.tolist()).items()}
                                                  for j in range(len(p))])
        return {k: torch.stack([r[k] for r in rows]) for k in (rows[0] if rows else {})}


# -- building -----------------------------------------------------------------------------------


def feature_key(spec: SourceSpec, featurizer: Featurizer, labels: Sequence[str],
                attributes: Sequence[str] | None, data_options: Mapping[str, Any] | None = None) -> str:
    payload = {"version": FEATURE_VERSION, "source": _source_stamp(spec.path), "spec": spec.__dict__,
               "tokenizer": tokenizer_fingerprint(featurizer.tok), "max_length": featurizer.max_length,
               "keep_system": featurizer.keep_system, "labels": list(labels),
               "attributes": None if attributes is None else list(attributes)}
    if data_options:  # only when given, so the keys of kinds without options never change
        payload["data_options"] = dict(data_options)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def build_features(spec: SourceSpec, featurizer: Featurizer, *, labels: Sequence[str] = (),
                   attributes: Sequence[str] | None = None, cache_dir: str | Path | None = None,
                   num_proc: int | None = None, max_examples: int = 3,
                   expect_kind: tuple[str, str] | None = None,
                   data_options: Mapping[str, Any] | None = None) -> FeatureTable:
    """The features of one source: a cache hit if this key was built before, else built now.

    ``attributes=None`` uses every attribute the ratings name, in order of first appearance.
    ``expect_kind`` = (kind, message): a source of another kind raises :class:`KindMismatch` as
    soon as its format is known, before anything is written or tokenized.
    Only the process that calls this builds; run it under ``accelerator.main_process_first()`` so
    the other ranks find the finished cache and only memory-map it.
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    key = feature_key(spec, featurizer, labels, attributes, data_options)
    final = cache / key
    if (final / MANIFEST).is_file():
        table = _open(final, built=False, tokenize_seconds=0.0)
        if expect_kind and table.kind != expect_kind[0]:
            raise KindMismatch(f"{expect_kind[1]}, but {spec.path} holds {table.kind}")
        return table
    cache.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(final)
    t0 = time.perf_counter()
    kind, fmt, report, attrs, canonical = _write_canonical(spec, tmp, labels, attributes, max_examples, expect_kind,
                                                           num_proc)
    _finish(tmp, key, kind, fmt, report, attrs, canonical, featurizer, labels, num_proc, data_options, spec.path,
            max_examples)
    publish_dir(tmp, final)
    return _open(final, built=True, tokenize_seconds=time.perf_counter() - t0)


def _finish(tmp: Path, key: str, kind: str, fmt: str, report: ValidationReport, attrs: list[str],
            canonical: Canonical, featurizer: Featurizer, labels: Sequence[str], num_proc: int | None,
            data_options: Mapping[str, Any] | None, source: str, max_examples: int) -> None:
    """Canonical shards → feature shards, the scalar side file and the manifest, in ``tmp`` (the canonical
    shards are removed); what a build does between reading its source and publishing its directory."""
    n = sum(rows for _, rows in canonical)
    shards = _tokenize(canonical, tmp, kind, featurizer, attrs, n, num_proc, data_options)
    files = [f.name for f in shards]
    side = write_scalar_columns([side_path(f) for f in shards], tmp / COLUMNS_FILE)
    for f in shards:
        side_path(f).unlink()
    manifest = {"version": FEATURE_VERSION, "key": key, "kind": kind, "format": fmt, "attributes": attrs,
                "labels": list(labels), "rows": n, "files": files, "columns_file": COLUMNS_FILE,
                "types": list(featurizer._types) if featurizer._types else None,
                "middle_len": len(getattr(featurizer, "_middle", []) or []),
                "truncated_prompts": int(np.count_nonzero(side.column("truncated").to_numpy(zero_copy_only=False))),
                "report": report_with_drops(report, side, source, max_examples, featurizer.max_length).to_dict()}
    del side
    for path, _ in canonical:
        Path(path).unlink()
    (tmp / MANIFEST).write_text(json.dumps(manifest))


def encode_examples(featurizer: Featurizer, examples: Iterable[PreferencePair | RatedResponse],
                    report: ValidationReport, labels: Sequence[str] = (),
                    attributes: Sequence[str] | None = None) -> list[PairFeatures | RatedFeatures]:
    """Features of examples held in memory, through the Arrow path itself, read back as Python objects.

    Why: tests, benchmarks and small tools want the features of a few pairs without a file, and must get
    exactly what training gets. So this is no second tokenization: the examples go through the canonical
    writer, the tokenize stage and :meth:`FeatureSet.take` of the feature cache, in a temporary directory
    (this process, no cache key, nothing kept). The pairs (or rated responses, with the target
    ``attributes``; by default those the rows name, in order of first appearance) it cannot use are left
    out and counted in ``report`` by reason, named as ``"<report.source>: example i"``; ``index`` of each
    item is its position in ``examples``. ``labels``: what the loss reads (``"targets"`` for ratings is
    always there).
    """
    import tempfile

    examples = list(examples)
    kinds = {"pairs" if isinstance(e, PreferencePair) else "ratings" if isinstance(e, RatedResponse)
             else "lists" if isinstance(e, RankedList) else None for e in examples}
    if not examples:
        return []
    if len(kinds) != 1 or None in kinds:
        raise TypeError("encode_examples takes PreferencePair, RatedResponse or RankedList examples, one kind at a time")
    kind = kinds.pop()
    if kind in ("ratings", "lists"):  # the kind's own label is always there
        labels = tuple(dict.fromkeys(("targets" if kind == "ratings" else "scores", *labels)))
    else:
        labels = tuple(labels)
    with tempfile.TemporaryDirectory(prefix="rmlib-features-") as tmp:
        path = str(Path(tmp) / "canonical-00000.arrow")
        n, names = write_examples(iter(examples), path, kind, labels, attributes)
        read = ValidationReport(report.source, max_examples=report.max_examples, seen=n, kept=n)
        _finish(Path(tmp), "in-memory", kind, "in-memory", read, names, [(path, n)], featurizer, labels, 1, None,
                report.source, report.max_examples)
        table = _open(Path(tmp), built=True, tokenize_seconds=0.0)
        valid = np.nonzero(table.equals("drop", ""))[0]
        items = FeatureSet(table, valid).take(range(len(valid)))
        report.merge(table.report)
        del table
    return items


def _open(directory: Path, *, built: bool, tokenize_seconds: float) -> FeatureTable:
    import datasets

    m = json.loads((directory / MANIFEST).read_text())
    parts = [map_feature_file(directory / f) for f in m["files"]]
    ds = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    r = m["report"]
    report = ValidationReport(r["source"], seen=r["seen"], kept=r["kept"])
    report.skipped.update(r["skipped"])
    report.filtered.update(r["filtered"])
    report.examples = {k: list(v) for k, v in r["examples"].items()}
    return FeatureTable(ds, m["kind"], m["format"], report, list(m["attributes"]), tuple(m["labels"]), directory,
                        built, tokenize_seconds, tuple(m["types"]) if m["types"] else None, m["middle_len"],
                        side=read_scalar_columns(directory / m["columns_file"]))












def _write_canonical(spec: SourceSpec, tmp: Path, labels: Sequence[str], attributes: Sequence[str] | None,
                     max_examples: int, expect_kind: tuple[str, str] | None, num_proc: int | None = None
                     ) -> tuple[str, str, ValidationReport, list[str], Canonical]:
    """Stream records → validated examples → Arrow shards ``tmp/canonical-*.arrow``; returns (kind, format,
    report, attributes, shards).

    One shard from this process, or one per part of the file from the data layer's worker processes
    (:func:`_canonical_parts`: an uncompressed JSONL or Parquet file large enough, read in byte ranges
    or row groups). Both give the same rows in the same order, the same report (counts, and examples
    that name the file's own 0-based record indices and line numbers) and the same attributes; the cache
    key does not depend on which ran.
    """
    from rmlib.data import formats

    local = Path(spec.path).expanduser().exists()
    st = formats.stream(spec.path, spec.format, split=None if local else spec.split,
                        data_dir=None if local else spec.data_dir, column_map=dict(spec.column_map) or None,
                        on_invalid=spec.on_invalid, max_examples=max_examples)
    if expect_kind and st.kind != expect_kind[0]:
        raise KindMismatch(f"{expect_kind[1]}, but {spec.path} holds {st.kind}")
    if st.kind not in ("pairs", "ratings", "judge", "lists"):
        raise ValueError(f"{spec.path}: {st.kind} data has no features for reward-model training")
    parts = _canonical_parts(spec, st, local, num_proc)
    if parts is None:
        examples = st.examples
        if spec.annotations == "all":
            from rmlib.data.annotations import iter_all_annotations

            examples = iter_all_annotations(examples, spec.path, st.report)
        path = str(tmp / "canonical-00000.arrow")
        n, names = write_examples(examples, path, st.kind, labels, attributes)
        return st.kind, st.format, st.report, names, [(path, n)]
    st.examples.close()  # only the format, kind and source name of the whole-file stream are used
    file, processes, plan = parts
    job = (file, st.format, st.kind, dict(spec.column_map) or None, spec.on_invalid, max_examples, list(labels),
           attributes)
    tasks = [(part, str(tmp / f"canonical-{k:05d}.arrow")) for k, part in enumerate(plan)]
    done = run_in_workers(canonical_part, job, tasks, processes, what="canonical (read and validate)",
                          setting="data.num_proc")
    report = ValidationReport(st.report.source, max_examples=max_examples)
    names: list[str] = list(attributes) if attributes is not None else []
    for _, _, part_report, part_names in done:
        report.merge(part_report)
        names += [a for a in part_names if a not in names]
    return st.kind, st.format, report, names, [(path, n) for path, n, _, _ in done]




PART_ESTIMATE_BYTES = 1 << 16
"""How much of a JSONL file's head estimates its number of records (the worker rule counts rows)."""


def _canonical_parts(spec: SourceSpec, st: Any, local: bool, num_proc: int | None
                     ) -> tuple[str, int, list] | None:
    """(file, processes, parts) for a parallel canonical pass, or None to read the source in this process.

    In parts: a local uncompressed JSONL file (byte ranges, cut at line starts) or a Parquet file (runs
    of row groups) whose format reads one record at a time (not NeMo BT's line pairs nor HelpSteer2's
    positional pairs: ``prepare``), without ``annotations: all`` (which numbers examples across
    records), and large enough for the data layer's worker rule (:func:`worker_processes`; a JSONL
    file's rows are estimated from the lines of its first 64 KB). A JSONL part's first record index and
    line number come from a counting pass over the parts before it, also in the workers (it reads the
    bytes and counts line breaks: a small share of the parse it precedes).
    """
    from rmlib.data import formats

    file = Path(st.report.source)
    kind = formats.part_kind(file)
    if (not local or kind is None or not file.is_file() or formats.FORMATS[st.format].prepare is not None
            or spec.annotations == "all"):
        return None
    if kind == "parquet":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(file).metadata
        rows = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        processes = worker_processes(sum(rows), num_proc)
        if processes is None or len(rows) < 2:
            return None
        at = np.concatenate([[0], np.cumsum(rows)])
        cuts = sorted({int(np.searchsorted(at, t)) for t in np.linspace(0, at[-1], min(processes, len(rows)) + 1)})
        cuts = [c for c in cuts if 0 < c < len(rows)]
        bounds = [0, *cuts, len(rows)]
        return str(file), processes, [formats.FilePart(a, b, int(at[a])) for a, b in zip(bounds[:-1], bounds[1:])]
    size = file.stat().st_size
    with open(file, "rb") as fh:
        head = fh.read(PART_ESTIMATE_BYTES)
    estimate = size if size <= len(head) else size * max(1, head.count(b"\n")) // max(1, len(head))
    processes = worker_processes(estimate, num_proc)
    if processes is None:
        return None
    ranges = [(a, b) for a, b in row_ranges(size, processes) if b > a]
    counts = run_in_workers(count_part, str(file), ranges, processes, what="canonical (count lines)",
                            setting="data.num_proc")
    lines = np.concatenate([[0], np.cumsum([c[0] for c in counts])]).astype(int).tolist()
    records = np.concatenate([[0], np.cumsum([c[1] for c in counts])]).astype(int).tolist()
    return str(file), processes, [formats.FilePart(a, b, records[k], lines[k] + 1)
                                  for k, (a, b) in enumerate(ranges)]










def _tokenize(canonical_files: Canonical, tmp: Path, kind: str, featurizer: Featurizer, attributes: list[str],
              n: int, num_proc: int | None, data_options: Mapping[str, Any] | None = None) -> list[Path]:
    """Tokenize the canonical shards (read as one table of ``n`` rows) into feature shards (in row order),
    each with a side shard of its scalar columns (:func:`side_path`); in this process or in ``num_proc``
    forked workers (:func:`rmlib.data.workers.run_in_workers`: the workers inherit the featurizer; only
    file names and row ranges travel). The feature shards follow the rows, not the canonical shards: the
    same rows give the same files however the canonical pass was cut."""
    import datasets
    import pyarrow as pa

    with pa.OSFile(canonical_files[0][0], "rb") as src:  # the schema only: nothing mapped
        canonical = datasets.Features.from_arrow_schema(pa.ipc.open_stream(src).schema)
    num_proc = worker_processes(n, num_proc)  # the data layer's one rule: from 4,000 rows, one per core
    keep = ["index", "prompt_hash", "content_hash", "split"] + [c for c in canonical if c.startswith("label_")]
    v, ids = datasets.Value, datasets.Sequence(datasets.Value("int32"))  # int32 ids: half the bytes of int64
    cols = {c: canonical[c] for c in keep}
    if kind == "judge":  # rmlib.data.judge_features: prompt + target ids, prompt length, target count
        cols.update(judge_features.tokenized_columns(datasets))
        fn, fn_kwargs = judge_features.tokenize_batch, {"tokenizer": featurizer.tok,
                                                        "max_length": featurizer.max_length,
                                                        "options": dict(data_options or {})}
    else:
        fn, fn_kwargs = tokenize_rows, {"featurizer": featurizer, "kind": kind, "attributes": attributes}
        cols.update({"head": ids, "body": ids, "n_tokens": v("int32"), "drop": v("string"), "truncated": v("int8")})
        if kind == "lists":  # k responses, k any number: nested lists
            cols.update({"resps": datasets.Sequence(ids), "keeps": datasets.Sequence(v("int32")),
                         "scores": datasets.Sequence(v("float64"))})
        for k in range({"pairs": 2, "lists": 0}.get(kind, 1)):
            cols.update({f"resp_{k}": ids, f"keep_{k}": v("int32")})
        if kind == "ratings":
            cols["targets"] = datasets.Sequence(v("float64"))
    job = (canonical_files, fn, fn_kwargs, datasets.Features(cols), keep, TOKENS_BATCH_ROWS)
    ranges = row_ranges(n, num_proc or 1)
    tasks = [(str(tmp / f"features-{k:05d}.arrow"), a, b) for k, (a, b) in enumerate(ranges)]
    return [Path(f) for f in run_in_workers(map_range, job, tasks, num_proc, what="tokenize",
                                            setting="data.num_proc")]














