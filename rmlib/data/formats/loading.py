"""Detection, conversion and writing: :func:`load` and :func:`stream` (a source through its format, under
the ``on_invalid`` policy), :func:`stream_part` (one part of a file, for parallel workers), :func:`write_jsonl`."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from rmlib.data.formats import registry
from rmlib.data.formats.files import FilePart, _open, _read_jsonl, _read_parquet, part_kind
from rmlib.data.formats.registry import DETECT_SAMPLE, Record, _Ctx, detect_format
from rmlib.data.schema import DataError, Example, OnInvalid, ValidationReport, apply_policy
from rmlib.io import write_jsonl as _io_write_jsonl


@dataclass
class Loaded:
    """The result of :func:`load`: canonical examples plus what was kept, skipped and filtered."""

    examples: list[Example]
    kind: str
    format: str
    report: ValidationReport


def _rename(records: Iterable[Record], column_map: Mapping[str, str], source: str) -> Iterator[Record]:
    """Rename user columns to a format's expected names (a collision is a config error, not data)."""
    for index, record in records:
        if isinstance(record, Mapping):
            renamed = {column_map.get(k, k): v for k, v in record.items()}
            if len(renamed) != len(record):
                raise ValueError(f"{source}: column_map {dict(column_map)} renames a column onto an existing one "
                                 f"(columns: {sorted(record)})")
            record = renamed
        yield index, record


def _peek(records: Iterator[Record], n: int) -> tuple[list[Record], Iterator[Record]]:
    """Read ahead until n readable records (or 100 rows) for detection, without losing them."""
    head: list[Record] = []
    for item in records:
        head.append(item)
        if sum(isinstance(r, Mapping) for _, r in head) >= n or len(head) >= 100:
            break
    return head, itertools.chain(head, records)


def _check_column_map(head: list[Record], column_map: Mapping[str, str], source: str) -> None:
    """A column_map key that no record has is almost certainly a typo: fail instead of ignoring it."""
    columns = {k for _, r in head if isinstance(r, Mapping) for k in r}
    missing = sorted(set(column_map) - columns)
    if head and missing:
        raise ValueError(f"{source}: column_map names columns not in the data: {missing}; "
                         f"columns seen: {sorted(columns)}")


def load(source: str | Path, format: str | None = None, *, split: str | None = None, data_dir: str | None = None,
         column_map: dict[str, str] | None = None, on_invalid: OnInvalid = "error",
         max_examples: int = 3) -> Loaded:
    """Every example of ``source`` in a list (see :func:`stream` for the rules and the options)."""
    st = stream(source, format, split=split, data_dir=data_dir, column_map=column_map, on_invalid=on_invalid,
                max_examples=max_examples)
    return Loaded(list(st.examples), st.kind, st.format, st.report)


def stream(source: str | Path, format: str | None = None, *, split: str | None = None,
           data_dir: str | None = None, column_map: dict[str, str] | None = None, on_invalid: OnInvalid = "error",
           max_examples: int = 3) -> Stream:
    """Read ``source`` and convert every record with the named (or detected) format.

    ``column_map`` renames the user's columns (``{"question": "prompt"}``) before detection and
    conversion. ``on_invalid="error"`` raises the first :class:`DataError`; ``"skip"`` drops bad
    records and counts them by reason in ``Loaded.report`` (``max_examples`` messages kept per
    reason). Valid records removed by a documented rule (a zero-strength HelpSteer2 pair, a
    MultiPref pair without majority) are counted in ``report.filtered`` under both policies.
    """
    if format is not None and format not in registry.FORMATS:
        raise ValueError(f"unknown format {format!r}; registered formats: {', '.join(registry.FORMATS)}")
    if on_invalid not in ("error", "skip"):
        raise ValueError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")
    name, records = _open(source, split, data_dir)
    head, records = _peek(records, DETECT_SAMPLE)
    if column_map:
        _check_column_map(head, column_map, name)
        records = _rename(records, column_map, name)
        head, records = _peek(records, DETECT_SAMPLE)
    if format is None:
        format = detect_format([r for _, r in head if isinstance(r, Mapping)], name, tolerant=True)
    return _converted(records, name, format, column_map, on_invalid, max_examples)


def stream_part(file: str | Path, format: str, part: FilePart, *, column_map: dict[str, str] | None = None,
                on_invalid: OnInvalid = "error", max_examples: int = 3) -> Stream:
    """:func:`stream` of one :class:`FilePart` of a local JSONL or Parquet ``file`` whose format is known (the
    caller detected it with :func:`stream` on the whole file, which also checked ``column_map``).

    The report counts this part only; :meth:`ValidationReport.merge` of the parts' reports in file order
    is the report of the whole file. A format whose ``prepare`` groups neighbouring rows cannot be read in
    parts (a ValueError)."""
    if registry.FORMATS[format].prepare is not None:
        raise ValueError(f"format {format!r} pairs neighbouring rows; read {file} whole")
    path, kind = Path(file), part_kind(file)
    if kind is None:
        raise ValueError(f"{file}: only uncompressed JSONL and Parquet files can be read in parts")
    records = _read_jsonl(path, part) if kind == "jsonl" else _read_parquet(path, part)
    if column_map:
        records = _rename(records, column_map, str(file))
    return _converted(records, str(file), format, column_map, on_invalid, max_examples)


def _converted(records: Iterator[Record], name: str, format: str, column_map: dict[str, str] | None,
               on_invalid: OnInvalid, max_examples: int) -> Stream:
    """Records of a source → its examples under the policy, counted in a new report (``stream``'s second half)."""
    spec = registry.FORMATS[format]
    if spec.prepare is not None:
        records = spec.prepare(records, name)
    report = ValidationReport(name, max_examples=max_examples)
    ctx = _Ctx(name, report)
    convert = spec.convert
    if column_map:  # errors name the user's columns, not the format's names they were mapped to
        users = {v: k for k, v in column_map.items()}

        def convert(r, i, c, _convert=spec.convert):
            try:
                return _convert(r, i, c)
            except DataError as e:
                raise e.renamed(users) from None
    examples = apply_policy(records, lambda i, r: convert(r, i, ctx), on_invalid, report)
    return Stream(examples, spec.kind, format, report)


@dataclass
class Stream:
    """:func:`stream`'s result: examples converted one at a time while ``report`` counts them.

    Why: a source larger than memory is read, validated and written to Arrow record by record;
    nothing but the current record is held.
    """

    examples: Iterator[Example]
    kind: str
    format: str
    report: ValidationReport


def write_jsonl(examples: Iterable[Example], path: str | Path) -> Path:
    """Write canonical JSONL (one ``to_dict()`` per line) atomically, see :func:`write_jsonl_rows`."""
    return _io_write_jsonl((ex.to_dict() for ex in examples), path)


# the one atomic JSONL writer lives in rmlib.io; the data layer's name for it stays importable
write_jsonl_rows = _io_write_jsonl
