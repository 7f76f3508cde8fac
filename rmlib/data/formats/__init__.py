"""Readers that turn external preference / rating formats into canonical examples.

Every public dataset spells the same idea differently: a transcript with ``Human:`` markers, a
message list with the prompt hidden inside both answers, a signed strength whose sign picks the
winner, per-annotator votes as text labels. Each format here is one converter function plus one
line in :data:`FORMATS`; everything downstream sees only the canonical examples of
:mod:`rmlib.data.schema`, and every record that cannot become one is reported with its source,
record index and field (or counted by reason under ``on_invalid="skip"``) instead of failing later.

Sources are local files (JSONL, JSON array, Parquet, CSV; ``.gz`` for JSON/JSONL) or a
``datasets`` hub name. Both go through the same conversion path; the hub is touched only when the
source is not an existing local path (the library never calls the network otherwise).

The package, one module per job: :mod:`~rmlib.data.formats.registry` (``FORMATS``, ``FormatSpec``,
``register_format``, ``detect_format``), :mod:`~rmlib.data.formats.files` (raw records of files and
hub datasets), :mod:`~rmlib.data.formats.loading` (``load``, ``stream``, ``write_jsonl``), the shared
:mod:`~rmlib.data.formats.parsing` helpers, and one module per format family:
:mod:`~rmlib.data.formats.preference` (TRL, HH-RLHF, UltraFeedback, Skywork),
:mod:`~rmlib.data.formats.helpsteer`, :mod:`~rmlib.data.formats.multipref`, :mod:`~rmlib.data.formats.nemo`,
:mod:`~rmlib.data.formats.canonical` (rmlib's own rows) and :mod:`~rmlib.data.formats.ranked` (lists).
:mod:`~rmlib.data.formats.builtin` names the built-in formats in their order; they are registered here.
"""

from __future__ import annotations

import sys
import types

# "name as name": outside __all__, importable from here as before
from rmlib.data.formats import registry
from rmlib.data.formats.builtin import BUILTIN
from rmlib.data.formats.files import FilePart, count_jsonl_part, part_kind, read_records
from rmlib.data.formats.helpsteer import HELPSTEER2_ATTRIBUTES
from rmlib.data.formats.loading import Loaded, load, stream_part, write_jsonl
from rmlib.data.formats.loading import Stream as Stream
from rmlib.data.formats.loading import stream as stream
from rmlib.data.formats.loading import write_jsonl_rows as write_jsonl_rows
from rmlib.data.formats.multipref import MULTIPREF_VOTES
from rmlib.data.formats.nemo import ALL_STEERLM_ATTRIBUTES
from rmlib.data.formats.registry import DETECT_SAMPLE as DETECT_SAMPLE
from rmlib.data.formats.registry import FORMATS, FormatSpec, detect_format, register_format
from rmlib.data.formats.registry import Converter as Converter
from rmlib.data.formats.registry import Kind as Kind
from rmlib.data.formats.registry import Prepare as Prepare
from rmlib.data.formats.registry import Record as Record

__all__ = [
    "ALL_STEERLM_ATTRIBUTES", "FORMATS", "HELPSTEER2_ATTRIBUTES", "MULTIPREF_VOTES", "FormatSpec", "Loaded",
    "FilePart", "count_jsonl_part", "detect_format", "load", "part_kind", "read_records", "stream_part",
    "write_jsonl",
]

for _name, _spec in BUILTIN.items():
    register_format(_name, _spec)
del _name, _spec


class _Package(types.ModuleType):
    """``rmlib.data.formats.FORMATS`` *is* the registry's dict, read and rebound there: rebinding it here
    (as a test does to isolate the registry) rebinds the one registry, never a second copy."""

    @property
    def FORMATS(self) -> dict[str, FormatSpec]:  # noqa: N802 - the registry's name
        return registry.FORMATS

    @FORMATS.setter
    def FORMATS(self, value: dict[str, FormatSpec]) -> None:  # noqa: N802
        registry.FORMATS = value


sys.modules[__name__].__class__ = _Package
