"""Reading raw records: local JSONL, JSON, Parquet, CSV (``.gz`` for JSON/JSONL) or a hub dataset.

Records come out as ``(index, record)``; an undecodable line is a :class:`~rmlib.data.schema.DataError`
in the stream, so that ``on_invalid="skip"`` counts it. A local JSONL or Parquet file can be read in
:class:`FilePart` s by parallel workers.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rmlib.data.schema import DataError
from rmlib.io import DATA_SUFFIXES, is_hub_id

if TYPE_CHECKING:
    from rmlib.data.formats.registry import Record


_SUFFIXES = DATA_SUFFIXES


def read_records(source: str | Path, *, split: str | None = None,
                 data_dir: str | None = None) -> Iterator[tuple[int, dict | DataError]]:
    """Yield ``(index, record)`` for every record of a local file/directory or a hub dataset.

    An undecodable JSONL line is yielded as a :class:`DataError` (reason ``undecodable_line``)
    rather than raised, so that ``on_invalid="skip"`` can count it like any other bad record.
    """
    return _open(source, split, data_dir)[1]


def _open(source: str | Path, split: str | None, data_dir: str | None) -> tuple[str, Iterator[Record]]:
    """Resolve a source to (name used in errors, record iterator); fail fast on a missing local path."""
    path = Path(source)
    if path.exists():
        file = _pick_file(path, split, data_dir) if path.is_dir() else _check_local_split(path, split)
        return str(file), _read_file(file)
    name = str(source)
    if not is_hub_id(name):
        raise FileNotFoundError(f"{name}: no such file or directory (and not a hub dataset name like 'owner/name')")
    label = name if split is None else f"{name}[{split}]"
    return label, _read_hub(name, split, data_dir)


def _check_local_split(path: Path, split: str | None) -> Path:
    """A single local file is one split ("train", as in ``datasets``); asking for another is a mistake."""
    if split not in (None, "train"):
        raise ValueError(f"{path}: split={split!r} was given for a single file; a single file is the whole "
                         "'train' split (pass a directory to choose among split files)")
    return path


def _pick_file(root: Path, split: str | None, data_dir: str | None) -> Path:
    """A local directory must resolve to exactly one data file (optionally by data_dir and split prefix)."""
    folder = root / data_dir if data_dir else root
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such directory")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(_SUFFIXES))
    if split is not None:
        files = [p for p in files if p.name.split(".")[0] == split or p.name.startswith(f"{split}-")]
    if len(files) != 1:
        found = ", ".join(p.name for p in files) or "none"
        raise ValueError(f"{folder}: expected exactly one data file{f' for split {split!r}' if split else ''} "
                         f"({'/'.join(_SUFFIXES)}), found: {found}; pass split= or data_dir=")
    return files[0]


def _read_file(path: Path) -> Iterator[Record]:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return _read_jsonl(path)
    if name.endswith((".json", ".json.gz")):
        return _read_json(path)
    if name.endswith(".parquet"):
        return _read_parquet(path)
    if name.endswith((".csv", ".csv.gz")):
        return _read_csv(path)
    raise ValueError(f"{path}: unsupported file type; expected one of {', '.join(_SUFFIXES)}")


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _read_jsonl(path: Path, part: FilePart | None = None) -> Iterator[Record]:
    """Read JSONL ourselves so one bad line becomes a counted DataError instead of aborting the file.

    Blank lines are ignored and do not consume a record index; the error names the 1-based line.
    ``part``: only the lines that start in its byte range, numbered from its ``index`` and ``lineno``.
    """
    index, first = (0, 1) if part is None else (part.index, part.lineno)
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(_lines(fh, part), start=first):
            if not raw.strip():
                continue
            try:
                record: Any = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                record = DataError(str(path), index, None, f"line {lineno} is not valid UTF-8 JSON ({err})",
                                   "undecodable_line")
            yield index, record
            index += 1


@dataclass(frozen=True)
class FilePart:
    """One piece of a local file, read on its own by a worker of a parallel pass over that file.

    JSONL: bytes ``[start, stop)``, a line belonging to the piece it starts in; Parquet: row groups
    ``[start, stop)``. ``index`` (0-based) and ``lineno`` (1-based, JSONL) are the file's own record index
    and line number where the piece begins, so every error and report names the same record as a
    reading of the whole file would.
    """

    start: int
    stop: int
    index: int = 0
    lineno: int = 1


def part_kind(path: str | Path) -> Literal["jsonl", "parquet"] | None:
    """How a local file can be cut into :class:`FilePart` s: ``"jsonl"`` (uncompressed: a byte offset can be
    sought), ``"parquet"`` (by row group), or None (gzip, a JSON array, CSV: read whole)."""
    name = str(path).lower()
    return "jsonl" if name.endswith(".jsonl") else "parquet" if name.endswith(".parquet") else None


def _lines(fh: Any, part: FilePart | None) -> Iterator[bytes]:
    """The lines of a binary file, or only those that start in ``part``'s byte range."""
    if part is None:
        yield from fh
        return
    if part.start:
        fh.seek(part.start - 1)
        fh.readline()  # the rest of the line that byte start - 1 is in (just b"\n" when a line starts at start)
    pos = fh.tell()
    for raw in fh:
        if pos >= part.stop:
            return
        pos += len(raw)
        yield raw


def count_jsonl_part(path: str | Path, start: int, stop: int) -> tuple[int, int]:
    """(lines, records) that start in bytes ``[start, stop)`` of a JSONL file (a record: a line that is not
    blank): what a part needs to know of the parts before it to number its records and lines."""
    lines = records = 0
    with open(path, "rb") as fh:
        for raw in _lines(fh, FilePart(start, stop)):
            lines += 1
            records += bool(raw.strip())
    return lines, records


def _read_json(path: Path) -> Iterator[Record]:
    """A JSON array of records; a ``.json`` file holding JSON lines is read as JSONL (as ``datasets`` does)."""
    with _open_binary(path) as fh:
        text = fh.read().decode("utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        yield from _read_jsonl(path)
        return
    if not isinstance(data, list):
        raise DataError(str(path), None, None, f"expected a JSON array of records, got a {type(data).__name__}",
                        "wrong_type")
    yield from enumerate(data)


def _read_parquet(path: Path, part: FilePart | None = None) -> Iterator[Record]:
    """Rows in batches of 1,024; ``part``: only its row groups, numbered from its ``index``."""
    import pyarrow.parquet as pq

    groups = None if part is None else list(range(part.start, part.stop))
    rows = (row for batch in pq.ParquetFile(path).iter_batches(batch_size=1024, row_groups=groups)
            for row in batch.to_pylist())
    yield from enumerate(rows, start=0 if part is None else part.index)


def _read_csv(path: Path) -> Iterator[Record]:
    """CSV via pyarrow so numeric columns (``margin``) arrive as numbers; empty strings stay strings.

    Read in record batches (``open_csv``), so a file larger than memory streams.
    """
    import pyarrow.csv as pacsv

    rows = (row for batch in pacsv.open_csv(path) for row in batch.to_pylist())
    yield from enumerate(rows)


def _read_hub(name: str, split: str | None, data_dir: str | None) -> Iterator[Record]:
    """Load a hub dataset lazily (only when iterated); failures name the source and the fix."""
    import datasets

    try:
        ds = datasets.load_dataset(name, data_dir=data_dir, split=split)
    except Exception as err:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ...)
        raise ValueError(f"{name!r} is not an existing local path, and loading it as a Hugging Face hub "
                         f"dataset failed: {type(err).__name__}: {err}") from err
    if isinstance(ds, datasets.DatasetDict):
        if len(ds) != 1:
            raise ValueError(f"{name!r} has splits {sorted(ds)}; pass split=")
        ds = next(iter(ds.values()))
    yield from enumerate(ds)
