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
"""

from __future__ import annotations

import hashlib
import io
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
from rmlib.data.labels import read_labels
from rmlib.data.schema import PreferencePair, RankedList, RatedResponse, ValidationReport
from rmlib.data.tokenize import (
    DROP_REASONS,
    Encoded,
    Featurizer,
    ListFeatures,
    PairFeatures,
    RatedFeatures,
    drop_reason,
)
from rmlib.data.workers import row_ranges, run_in_workers, worker_processes
from rmlib.io import publish_dir, staging_dir

FEATURE_VERSION = "4"  # bump when the stored columns change: old caches become other keys
MANIFEST = "manifest.json"
COLUMNS_FILE = "columns.arrow"  # the per-row scalar columns, contiguous (see _write_scalar_columns)
#: rows per record batch of the feature files: few batches, so opening a file touches few pages
TOKENS_BATCH_ROWS = 8192
#: labels held as one value per attribute (``targets``, ratings) or per response (``scores``, lists): list
#: columns of their own, not the scalar ``label_<name>`` columns of the other labels
LIST_LABELS = ("targets", "scores")


def default_cache_dir() -> Path:
    """``$RMLIB_CACHE``, else ``$XDG_CACHE_HOME/rmlib`` or ``~/.cache/rmlib``; features go in ``features/``."""
    root = os.environ.get("RMLIB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "rmlib")
    return Path(root) / "features"


def hash64(text: str) -> int:
    """A stable 64-bit hash (first 8 bytes of SHA-1): prompts and examples are compared by it."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "little", signed=True)


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
    side = _write_scalar_columns([_side_path(f) for f in shards], tmp / COLUMNS_FILE)
    for f in shards:
        _side_path(f).unlink()
    manifest = {"version": FEATURE_VERSION, "key": key, "kind": kind, "format": fmt, "attributes": attrs,
                "labels": list(labels), "rows": n, "files": files, "columns_file": COLUMNS_FILE,
                "types": list(featurizer._types) if featurizer._types else None,
                "middle_len": len(getattr(featurizer, "_middle", []) or []),
                "truncated_prompts": int(np.count_nonzero(side.column("truncated").to_numpy(zero_copy_only=False))),
                "report": _report_with_drops(report, side, source, max_examples, featurizer.max_length).to_dict()}
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
        n, names = _write_examples(iter(examples), path, kind, labels, attributes)
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
                        side=_read_scalar_columns(directory / m["columns_file"]))


def _read_scalar_columns(path: Path):
    import pyarrow as pa

    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def _write_scalar_columns(files: Sequence[Path], out: Path):
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
    return _read_scalar_columns(out)


def _scalar_fields(schema) -> list[str]:
    """The per-row scalar columns of a feature schema: everything but the token-id lists."""
    import pyarrow as pa

    return [f.name for f in schema if not (pa.types.is_list(f.type) or pa.types.is_large_list(f.type))]


def _canonical_features(kind: str, labels: Sequence[str]):
    import datasets

    v = datasets.Value
    cols = {"index": v("int64"), "prompt": v("string"), "prompt_hash": v("int64"), "content_hash": v("int64"),
            "split": v("string")}
    if kind == "pairs":
        cols.update({"chosen": v("string"), "rejected": v("string")})
    elif kind == "judge":
        cols.update(judge_features.canonical_columns(v))
    elif kind == "lists":  # JSON lists: one string column each, whatever k
        cols.update({"responses": v("string"), "scores": v("string")})
    else:
        cols.update({"response": v("string"), "scores": v("string")})
    cols.update({f"label_{n}": v("float64") for n in labels if n not in LIST_LABELS})
    return datasets.Features(cols)


Canonical = list[tuple[str, int]]
"""The canonical pass's output: its Arrow shards in record order, each with its number of rows."""


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
        n, names = _write_examples(examples, path, st.kind, labels, attributes)
        return st.kind, st.format, st.report, names, [(path, n)]
    st.examples.close()  # only the format, kind and source name of the whole-file stream are used
    file, processes, plan = parts
    job = (file, st.format, st.kind, dict(spec.column_map) or None, spec.on_invalid, max_examples, list(labels),
           attributes)
    tasks = [(part, str(tmp / f"canonical-{k:05d}.arrow")) for k, part in enumerate(plan)]
    done = run_in_workers(_canonical_part, job, tasks, processes, what="canonical (read and validate)",
                          setting="data.num_proc")
    report = ValidationReport(st.report.source, max_examples=max_examples)
    names: list[str] = list(attributes) if attributes is not None else []
    for _, _, part_report, part_names in done:
        report.merge(part_report)
        names += [a for a in part_names if a not in names]
    return st.kind, st.format, report, names, [(path, n) for path, n, _, _ in done]


def _write_examples(examples: Iterator, path: str, kind: str, labels: Sequence[str],
                    attributes: Sequence[str] | None) -> tuple[int, list[str]]:
    """Examples → one canonical Arrow file, one at a time; returns (rows, attributes in order of first
    appearance, or ``attributes`` when given)."""
    from datasets.arrow_writer import ArrowWriter

    names: list[str] = list(attributes) if attributes is not None else []
    n = 0
    with ArrowWriter(features=_canonical_features(kind, labels), path=path, writer_batch_size=1000) as w:
        for ex in examples:
            d = ex.to_dict()
            prompt = json.dumps(d["prompt"], ensure_ascii=False)
            meta = d.get("meta") or {}
            row = {"index": n, "prompt": prompt, "prompt_hash": hash64(json.dumps(d["prompt"], sort_keys=True)),
                   "content_hash": hash64(json.dumps({k: v for k, v in d.items() if k != "meta"}, sort_keys=True,
                                                     default=str)),
                   "split": None if meta.get("split") is None else str(meta["split"])}
            if kind == "pairs":
                row.update({"chosen": ex.chosen, "rejected": ex.rejected})
            elif kind == "ratings":
                row.update({"response": ex.response, "scores": json.dumps(dict(ex.attributes))})
                if attributes is None:
                    names += [a for a in ex.attributes if a not in names]
            elif kind == "lists":
                row.update({"responses": json.dumps(list(ex.responses), ensure_ascii=False),
                            "scores": json.dumps(list(ex.scores))})
            else:
                row.update(judge_features.canonical_row(ex))
            values = read_labels(ex, [x for x in labels if x not in LIST_LABELS])
            row.update({f"label_{k}": None if v is None else float(v) for k, v in values.items()})
            w.write(row)
            n += 1
        w.finalize()
    return n, names


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
    counts = run_in_workers(_count_part, str(file), ranges, processes, what="canonical (count lines)",
                            setting="data.num_proc")
    lines = np.concatenate([[0], np.cumsum([c[0] for c in counts])]).astype(int).tolist()
    records = np.concatenate([[0], np.cumsum([c[1] for c in counts])]).astype(int).tolist()
    return str(file), processes, [formats.FilePart(a, b, records[k], lines[k] + 1)
                                  for k, (a, b) in enumerate(ranges)]


def _count_part(file: str, start: int, stop: int) -> tuple[int, int]:
    from rmlib.data.formats import count_jsonl_part

    return count_jsonl_part(file, start, stop)


def _canonical_part(job: tuple, part: Any, out: str) -> tuple[str, int, ValidationReport, list[str]]:
    """One part of the file through the readers into its own canonical shard (runs in a worker)."""
    from rmlib.data.formats import stream_part

    file, fmt, kind, column_map, on_invalid, max_examples, labels, attributes = job
    st = stream_part(file, fmt, part, column_map=column_map, on_invalid=on_invalid, max_examples=max_examples)
    n, names = _write_examples(st.examples, out, kind, labels, attributes)
    return out, n, st.report, names


def _tokenize_batch(batch: dict, *, featurizer: Featurizer, kind: str, attributes: list[str]) -> dict:
    prompts = [json.loads(p) for p in batch["prompt"]]
    if kind == "lists":
        return _tokenize_lists(batch, prompts, featurizer)
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


def _tokenize_lists(batch: dict, prompts: list, featurizer: Featurizer) -> dict:
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


def _tokenize(canonical_files: Canonical, tmp: Path, kind: str, featurizer: Featurizer, attributes: list[str],
              n: int, num_proc: int | None, data_options: Mapping[str, Any] | None = None) -> list[Path]:
    """Tokenize the canonical shards (read as one table of ``n`` rows) into feature shards (in row order),
    each with a side shard of its scalar columns (:func:`_side_path`); in this process or in ``num_proc``
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
        fn, fn_kwargs = _tokenize_batch, {"featurizer": featurizer, "kind": kind, "attributes": attributes}
        cols.update({"head": ids, "body": ids, "n_tokens": v("int32"), "drop": v("string"), "truncated": v("int8")})
        if kind == "lists":  # k responses, k any number: nested lists
            cols.update({"resps": datasets.Sequence(ids), "keeps": datasets.Sequence(v("int32")),
                         "scores": datasets.Sequence(v("float64"))})
        for k in range({"pairs": 2, "lists": 0}.get(kind, 1)):
            cols.update({f"resp_{k}": ids, f"keep_{k}": v("int32")})
        if kind == "ratings":
            cols["targets"] = datasets.Sequence(v("float64"))
    job = (canonical_files, fn, fn_kwargs, datasets.Features(cols), keep)
    ranges = row_ranges(n, num_proc or 1)
    tasks = [(str(tmp / f"features-{k:05d}.arrow"), a, b) for k, (a, b) in enumerate(ranges)]
    return [Path(f) for f in run_in_workers(_map_range, job, tasks, num_proc, what="tokenize",
                                            setting="data.num_proc")]


def _side_path(shard: Path | str) -> Path:
    return Path(str(shard)[:-len(".arrow")] + ".columns.arrow")


def _map_range(job: tuple, out: str, start: int, stop: int, batch_size: int = 512) -> str:
    """Rows ``[start, stop)`` of the canonical shards through ``fn`` in batches of ``batch_size``,
    written to ``out`` in record batches of ``TOKENS_BATCH_ROWS`` rows, their scalar columns to a
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

    canonical, fn, fn_kwargs, features, keep = job
    schema = features.arrow_schema
    scalar = _scalar_fields(schema)
    done: list = []
    with pa.OSFile(str(_side_path(out)), "wb") as side_sink, open(out, "wb", buffering=0) as raw, \
            ArrowWriter(features=features, stream=SmallWrites(raw), writer_batch_size=TOKENS_BATCH_ROWS) as writer:
        side = pa.ipc.new_stream(side_sink, pa.schema([schema.field(c) for c in scalar]))

        def flush() -> None:
            table = pa.concat_tables(done).combine_chunks()
            writer.write_table(table, writer_batch_size=table.num_rows)  # one record batch per flush
            side.write_table(table.select(scalar))
            done.clear()

        pending = []
        for lo, record_batch in _canonical_batches(canonical, start, stop):
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
                done.append(_mapped(table.slice(at, batch_size), fn, fn_kwargs, schema, keep))
            rest = table.num_rows % batch_size
            pending = table.slice(table.num_rows - rest).to_batches() if rest else []
            if sum(t.num_rows for t in done) >= TOKENS_BATCH_ROWS:
                flush()
        if pending:
            done.append(_mapped(pa.Table.from_batches(pending), fn, fn_kwargs, schema, keep))
        if done:
            flush()
        side.close()
        writer.finalize()
    return out


def _canonical_batches(files: Canonical, start: int, stop: int) -> Iterator[tuple[int, Any]]:
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


def _mapped(part, fn, fn_kwargs: dict, schema, keep: list[str]):
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


def _report_with_drops(report: ValidationReport, side, source: str, max_examples: int,
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
