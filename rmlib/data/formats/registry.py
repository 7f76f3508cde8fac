"""The format registry: :data:`FORMATS` (name -> :class:`FormatSpec`), :func:`register_format` and
:func:`detect_format`.

The registry imports no format family: the built-in readers (:mod:`rmlib.data.formats.builtin`) are
registered by the package, in their fixed order, when :mod:`rmlib.data.formats` is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rmlib.data.schema import DataError, Example, ValidationReport

Kind = Literal["pairs", "ratings", "judge", "lists"]
Record = tuple[int, Any]


DETECT_SAMPLE = 5
"""How many leading records :func:`load` hands to :func:`detect_format`."""


@dataclass(frozen=True)
class _Ctx:
    """What a converter needs besides the record: the source name for errors, the report for rule-based filtering."""

    source: str
    report: ValidationReport


Converter = Callable[[Any, int, _Ctx], "Example | None"]
Prepare = Callable[[Iterable[Record], str], Iterator[Record]]


@dataclass(frozen=True)
class FormatSpec:
    """One registered format.

    ``detect`` looks at a single raw record's keys and value types (never its values' meaning);
    ``specificity`` breaks overlaps, so a format with distinguishing columns (Skywork's ``source``,
    UltraFeedback's ``score_chosen``) wins over the generic TRL shape they also satisfy.
    ``prepare`` is for formats whose examples span several rows (NeMo BT line pairs) or whose rows
    must be checked against their neighbours (HelpSteer2's positional pairs).
    """

    kind: Kind
    detect: Callable[[Mapping[str, Any]], bool]
    convert: Converter
    specificity: int = 2
    prepare: Prepare | None = None
    doc: str = ""


FORMATS: dict[str, FormatSpec] = {}
"""Every registered format by name, in registration order (the built-ins first); detection tries them all."""


def register_format(name: str, spec: FormatSpec) -> None:
    """Add a reader to the registry; detection, ``load``, ``rmlib data`` and training then know it.

    A second format under an existing name is an error: silently replacing a built-in reader
    would change how every file of that shape is read.
    """
    if name in FORMATS and FORMATS[name] is not spec:
        raise ValueError(f"format {name!r} is already registered ({FORMATS[name].doc})")
    FORMATS[name] = spec


def _describe_keys(records: Sequence[Mapping[str, Any]]) -> str:
    seen: dict[str, set[str]] = {}
    for r in records:
        for k, v in r.items():
            seen.setdefault(str(k), set()).add(type(v).__name__)
    return ", ".join(f"{k} ({'|'.join(sorted(t))})" for k, t in sorted(seen.items()))


def detect_format(records: list[dict], source: str, *, tolerant: bool = False) -> str:
    """Name the registered format the first records match.

    Among matches the most specific wins; a tie is ambiguous and raises rather than guessing,
    because a wrong guess (e.g. UltraFeedback read as plain TRL) loses the scores silently.
    ``tolerant`` (what ``load`` uses): the format most of the sample matches, so a bad record among
    the first ones is converted like any other: named (``on_invalid="error"``) or refused and
    counted (``"skip"``), instead of making detection fail. When nothing matches, the message names the field the closest format misses.
    """
    sample = [r for r in records if isinstance(r, Mapping)][:DETECT_SAMPLE]
    if not sample:
        raise DataError(source, None, None, "no readable records to detect the format from; pass format=",
                        "no_records")
    hits = {name: sum(bool(spec.detect(r)) for r in sample) for name, spec in FORMATS.items()}
    need = len(sample) // 2 + 1 if tolerant else len(sample)
    matches = [name for name, n in hits.items() if n >= need]
    if tolerant and matches:
        most = max(hits[m] for m in matches)
        matches = [m for m in matches if hits[m] == most]
    if not matches:
        raise DataError(source, None, None, f"could not detect the format{_closest(sample[0], source)}; keys seen "
                        f"in the first {len(sample)} records: {_describe_keys(sample)}. Pass format= (one of "
                        f"{', '.join(FORMATS)}) or column_map= to rename columns to a format's names.",
                        "unknown_format")
    top = max(FORMATS[m].specificity for m in matches)
    best = [m for m in matches if FORMATS[m].specificity == top]
    if len(best) > 1:
        raise DataError(source, None, None, f"ambiguous format, the records match {', '.join(best)}; pass format=",
                        "ambiguous_format")
    return best[0]


def _closest(record: Mapping[str, Any], source: str) -> str:
    """What the first registered format's converter says about ``record``: the usual cause of
    "could not detect" is one absent, misspelled or mistyped column, and this names it."""
    for name, spec in FORMATS.items():
        try:
            spec.convert(record, 0, _Ctx(source, ValidationReport(source)))
        except DataError as e:
            if e.field:
                return f" (read as {name}: field '{e.field}': {e.message})"
        except Exception:  # noqa: BLE001 - a converter that cannot even start says nothing useful here
            continue
    return ""
