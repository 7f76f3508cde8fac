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
"""

from __future__ import annotations

import gzip
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rmlib.data.helpsteer2 import NEITHER_VALID, parse_helpsteer2_prompt
from rmlib.data.schema import (
    DataError,
    Example,
    Message,
    OnInvalid,
    ValidationReport,
    all_tied,
    apply_policy,
    check_messages,
    check_number,
    check_text,
    make_judge,
    make_list,
    make_pair,
    make_rated,
    require,
)
from rmlib.io import DATA_SUFFIXES, is_hub_id
from rmlib.io import write_jsonl as _io_write_jsonl

Kind = Literal["pairs", "ratings", "judge", "lists"]
Record = tuple[int, Any]

__all__ = [
    "ALL_STEERLM_ATTRIBUTES", "FORMATS", "HELPSTEER2_ATTRIBUTES", "MULTIPREF_VOTES", "FormatSpec", "Loaded",
    "FilePart", "count_jsonl_part", "detect_format", "load", "part_kind", "read_records", "stream_part",
    "write_jsonl",
]

HELPSTEER2_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
"""HelpSteer2's five Likert attributes (0..4), in the order of the ``nvidia/HelpSteer2`` dataset card
(HelpSteer2, arXiv 2406.08673); see docs/data.md."""

ALL_STEERLM_ATTRIBUTES = ("quality", "toxicity", "humor", "creativity", *HELPSTEER2_ATTRIBUTES)
"""NeMo-Aligner's regression label order (``ALL_STEERLM_ATTRIBUTES`` in its
``examples/nlp/data/steerlm/process_to_regression_format.py``); slot 4 is helpfulness. See docs/data.md."""

MULTIPREF_VOTES = {
    "A-is-clearly-better": 2.0, "A-is-slightly-better": 1.0, "Tie": 0.0,
    "B-is-slightly-better": -1.0, "B-is-clearly-better": -2.0,
}
"""MultiPref ``overall_pref`` labels (``allenai/multipref`` dataset card) as signed votes in A-over-B
orientation; see docs/data.md."""

DETECT_SAMPLE = 5
"""How many leading records :func:`load` hands to :func:`detect_format`."""


# ---------------------------------------------------------------------------------------------
# Registry types


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


@dataclass
class Loaded:
    """The result of :func:`load`: canonical examples plus what was kept, skipped and filtered."""

    examples: list[Example]
    kind: str
    format: str
    report: ValidationReport


# ---------------------------------------------------------------------------------------------
# Reading raw records

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


# ---------------------------------------------------------------------------------------------
# Shared parsing helpers


def _is_messages(value: Any) -> bool:
    """TRL's ``is_conversational`` test on one value: a list whose first item is a dict with a role."""
    return isinstance(value, list) and bool(value) and isinstance(value[0], Mapping) and "role" in value[0]


def _user_prompt(text: str) -> list[Message]:
    """A string prompt is one user turn; an empty one (no shared prefix) is no turn at all."""
    return [{"role": "user", "content": text}] if text else []


def _text(record: Mapping[str, Any], key: str, ctx: _Ctx, index: int) -> str:
    """A required string column (empty allowed here; make_pair/make_rated reject empty responses)."""
    return check_text(require(record, key, ctx.source, index), ctx.source, index, key, allow_empty=True)


def _common_prefix_len(a: Sequence[Any], b: Sequence[Any]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _string_prefix_split(chosen: str, rejected: str) -> tuple[str, str, str]:
    """TRL ``extract_prompt`` for strings: the longest common prefix, stepping back over a trailing space.

    Re-implemented (not imported) because trl is only a dev dependency and must not load with
    rmlib. Two deliberate differences from trl's loop: when one string is a prefix of the other the
    whole shorter string is the prompt (trl keeps its last character as the completion), and the
    space rule is not applied at position 0 (trl would look at the string's last character).
    """
    idx = _common_prefix_len(chosen, rejected)
    if 0 < idx < min(len(chosen), len(rejected)) and chosen[idx - 1] == " ":
        idx -= 1
    return chosen[:idx], chosen[idx:], rejected[idx:]


def _single_assistant(completion: Sequence[Message], name: str, ctx: _Ctx, index: int) -> str:
    """After prompt extraction a completion must be exactly one assistant message."""
    if len(completion) != 1 or completion[0]["role"] != "assistant":
        roles = ", ".join(m["role"] for m in completion) or "none"
        raise DataError(ctx.source, index, name, "after removing the shared prompt, expected exactly one assistant "
                        f"message, got {len(completion)} (roles: {roles})", "malformed_messages")
    return completion[0]["content"]


def _conversation_split(chosen: Any, rejected: Any, ctx: _Ctx, index: int,
                        prompt: Any = None) -> tuple[tuple[Message, ...], str, str]:
    """Split conversational chosen/rejected into (prompt, chosen text, rejected text).

    With an explicit ``prompt`` the completions are used as they are; otherwise the longest common
    message prefix is the prompt (TRL's implicit-prompt rule).
    """
    c = check_messages(chosen, ctx.source, index, "chosen")
    r = check_messages(rejected, ctx.source, index, "rejected")
    if prompt is not None:
        p = check_messages(prompt, ctx.source, index, "prompt")
    else:
        if c == r:
            raise DataError(ctx.source, index, "rejected", "is identical to 'chosen'", "identical_responses")
        k = _common_prefix_len(c, r)
        p, c, r = c[:k], c[k:], r[k:]
    return p, _single_assistant(c, "chosen", ctx, index), _single_assistant(r, "rejected", ctx, index)


def _extras(record: Mapping[str, Any], used: Iterable[str]) -> dict[str, Any]:
    """Columns a converter did not consume go to meta, so e.g. RewardBench's ``subset`` survives."""
    skip = set(used)
    return {k: v for k, v in record.items() if k not in skip}


# ---------------------------------------------------------------------------------------------
# Converters: one function per format. Each takes (record, index, ctx) and returns an example,
# or None after recording a rule-based removal in ctx.report.


def _convert_trl(record: Any, index: int, ctx: _Ctx) -> Example:
    """All four TRL preference variants; the variant is read from the value types (TRL docs, "Dataset formats")."""
    chosen = require(record, "chosen", ctx.source, index)
    rejected = require(record, "rejected", ctx.source, index)
    prompt = record.get("prompt")
    meta = _extras(record, ("prompt", "chosen", "rejected", "margin"))
    strength = record.get("margin")
    if isinstance(chosen, (list, tuple)) or isinstance(rejected, (list, tuple)) or isinstance(prompt, (list, tuple)):
        p, c, r = _conversation_split(chosen, rejected, ctx, index, prompt)
        return make_pair(ctx.source, index, p, c, r, strength=strength, meta=meta, strength_field="margin")
    c = check_text(chosen, ctx.source, index, "chosen", allow_empty=True)
    r = check_text(rejected, ctx.source, index, "rejected", allow_empty=True)
    if prompt is None:
        if c == r:
            raise DataError(ctx.source, index, "rejected", "is identical to 'chosen'", "identical_responses")
        prompt, c, r = _string_prefix_split(c, r)
    prompt = check_text(prompt, ctx.source, index, "prompt", allow_empty=True)
    return make_pair(ctx.source, index, _user_prompt(prompt), c, r, strength=strength, meta=meta,
                     strength_field="margin")


_HH_HUMAN, _HH_ASSISTANT = "\n\nHuman: ", "\n\nAssistant: "
_HH_TURN = re.compile(r"(\n\nHuman: |\n\nAssistant: )")


def _hh_messages(prompt_text: str, ctx: _Ctx, index: int) -> list[Message]:
    """Split an HH transcript prefix (without the final assistant marker) on its turn markers."""
    parts = _HH_TURN.split(prompt_text)
    if parts[0]:
        raise DataError(ctx.source, index, "chosen", f"transcript must start with {_HH_HUMAN!r}, starts with "
                        f"{parts[0][:40]!r}", "malformed_messages")
    return [{"role": "user" if marker == _HH_HUMAN else "assistant", "content": content}
            for marker, content in zip(parts[1::2], parts[2::2])]


def _convert_hh_rlhf(record: Any, index: int, ctx: _Ctx) -> Example:
    """Anthropic HH transcripts: the shared prefix up to the last assistant marker is the prompt.

    Same split as TRL's ``examples/datasets/hh-rlhf-helpful-base.py``; format in docs/data.md.
    """
    chosen, rejected = _text(record, "chosen", ctx, index), _text(record, "rejected", ctx, index)
    if chosen == rejected:
        raise DataError(ctx.source, index, "rejected", "is identical to 'chosen'", "identical_responses")
    cut = chosen[:_common_prefix_len(chosen, rejected)].rfind(_HH_ASSISTANT)
    if cut < 0:
        raise DataError(ctx.source, index, "chosen", f"chosen and rejected share no {_HH_ASSISTANT!r} turn",
                        "malformed_messages")
    prefix_len = cut + len(_HH_ASSISTANT)
    c, r = chosen[prefix_len:], rejected[prefix_len:]
    for name, text in (("chosen", c), ("rejected", r)):
        if _HH_TURN.search(text):
            raise DataError(ctx.source, index, name, "the reply after the shared prompt holds more than one turn",
                            "malformed_messages")
    prompt = _hh_messages(chosen[:cut], ctx, index)
    return make_pair(ctx.source, index, prompt, c, r, meta=_extras(record, ("chosen", "rejected")))


def _convert_ultrafeedback(record: Any, index: int, ctx: _Ctx) -> Example:
    """UltraFeedback-binarized (``HuggingFaceH4/ultrafeedback_binarized`` card): full conversations in
    chosen/rejected; scores kept in meta."""
    p, c, r = _conversation_split(require(record, "chosen", ctx.source, index),
                                  require(record, "rejected", ctx.source, index), ctx, index)
    meta = {"prompt_id": require(record, "prompt_id", ctx.source, index)}
    for key in ("score_chosen", "score_rejected"):
        meta[key] = check_number(require(record, key, ctx.source, index), ctx.source, index, key)
    return make_pair(ctx.source, index, p, c, r, meta=meta)


def _convert_skywork(record: Any, index: int, ctx: _Ctx) -> Example:
    """Skywork-Reward-Preference (``Skywork/Skywork-Reward-Preference-80K-v0.2`` card): conversational,
    implicit prompt, plus a ``source`` column."""
    p, c, r = _conversation_split(require(record, "chosen", ctx.source, index),
                                  require(record, "rejected", ctx.source, index), ctx, index)
    return make_pair(ctx.source, index, p, c, r, meta={"source": _text(record, "source", ctx, index)})


def _helpsteer_prompt(record: Any, ctx: _Ctx, index: int) -> list[Message]:
    """HelpSteer2's marker-joined prompt as messages; the turn before the response must be the user's."""
    messages = parse_helpsteer2_prompt(_text(record, "prompt", ctx, index))
    if messages[-1]["role"] != "user":
        raise DataError(ctx.source, index, "prompt", "the last turn before the response must be the user's",
                        "malformed_messages")
    return messages


def _convert_helpsteer2(record: Any, index: int, ctx: _Ctx) -> Example:
    """HelpSteer2 ratings: five 0..4 attributes; rows 2k and 2k+1 answer one prompt (``pair_id`` k)."""
    prompt = _helpsteer_prompt(record, ctx, index)
    attrs = {a: require(record, a, ctx.source, index) for a in HELPSTEER2_ATTRIBUTES}
    return make_rated(ctx.source, index, prompt, require(record, "response", ctx.source, index), attrs,
                      meta={"pair_id": index // 2}, score_range=(0, 4))


def _convert_helpsteer2_disagreements(record: Any, index: int, ctx: _Ctx) -> Example:
    """HelpSteer2 disagreements (``data_dir="disagreements"``): per-annotator lists → their mean, lists kept."""
    prompt = _helpsteer_prompt(record, ctx, index)
    annotations: dict[str, list[Any]] = {}
    means: dict[str, float | None] = {}
    for a in HELPSTEER2_ATTRIBUTES:
        values = require(record, a, ctx.source, index)
        if not isinstance(values, list):
            raise DataError(ctx.source, index, a, f"expected a list of per-annotator scores, got "
                            f"{type(values).__name__}", "wrong_type")
        scores = [check_number(v, ctx.source, index, f"{a}[{i}]", low=0, high=4) for i, v in enumerate(values)]
        annotations[a] = list(values)
        means[a] = sum(scores) / len(scores) if scores else None
    return make_rated(ctx.source, index, prompt, require(record, "response", ctx.source, index), means,
                      meta={"annotations": annotations}, score_range=(0, 4))


def _helpsteer2_votes(record: Any, ctx: _Ctx, index: int, sign: float) -> list[float] | None:
    """Raw annotator strengths, −100 ("neither valid") dropped, flipped so > 0 prefers chosen."""
    raw = record.get("all_preferences_unprocessed")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise DataError(ctx.source, index, "all_preferences_unprocessed",
                        f"expected a list, got {type(raw).__name__}", "wrong_type")
    votes = []
    for i, entry in enumerate(raw):
        name = f"all_preferences_unprocessed[{i}].strength"
        value = require(entry, "strength", ctx.source, index)
        if value == NEITHER_VALID:
            continue
        votes.append(sign * check_number(value, ctx.source, index, name, low=-3, high=3))
    return votes or None


def _similar_strengths(record: Mapping[str, Any]) -> list[Any] | None:
    """The three aggregated annotations' raw strengths (source sign), for the paper's spread filter."""
    similar = record.get("three_most_similar_preferences")
    if not isinstance(similar, list):
        return None
    return [e.get("strength") if isinstance(e, Mapping) else None for e in similar]


def _convert_helpsteer2_preference(record: Any, index: int, ctx: _Ctx) -> Example | None:
    """HelpSteer2-Preference: the sign of ``preference_strength`` picks the winner, |s| is the strength.

    s < 0 → response_1 chosen, s > 0 → response_2 (``nvidia/HelpSteer2`` dataset card); s == 0 is
    removed by rule (``no_preference``), as HelpSteer2-Preference (arXiv 2410.01257, §2) drops those
    pairs. ``meta["split"]`` follows NeMo-Aligner: "train" is train, every other value is validation
    (None without a split column). See docs/data.md.
    """
    prompt = _helpsteer_prompt(record, ctx, index)
    r1, r2 = _text(record, "response_1", ctx, index), _text(record, "response_2", ctx, index)
    s = check_number(require(record, "preference_strength", ctx.source, index), ctx.source, index,
                     "preference_strength", low=-3, high=3)
    if s == 0:
        ctx.report.filter("no_preference", f"{ctx.source}: record {index}: preference_strength is 0")
        return None
    chosen, rejected, position, sign = (r1, r2, 1, -1.0) if s < 0 else (r2, r1, 2, 1.0)
    raw_split = record.get("split")
    meta = {"split": None if raw_split is None else "train" if raw_split == "train" else "validation",
            "raw_split": raw_split,
            "chosen_position": position, "preference_strength": record["preference_strength"],
            "statement": record.get("preference_statement"), "elaboration": record.get("preference_elaboration"),
            "similar_strengths": _similar_strengths(record)}
    return make_pair(ctx.source, index, prompt, chosen, rejected, strength=abs(s),
                     votes=_helpsteer2_votes(record, ctx, index, sign), meta=meta)


def _convert_helpsteer2_justifier(record: Any, index: int, ctx: _Ctx) -> Example | None:
    """HelpSteer2-Preference → one justifier example per kept task (:func:`rmlib.data.judge.overall_justification`)."""
    from rmlib.data.judge import overall_justification

    return overall_justification(record, index, ctx.source, ctx.report)


def _multipref_group(record: Any, key: str, ctx: _Ctx, index: int) -> list[float]:
    """One annotator group's ``overall_pref`` labels as A-over-B votes."""
    annotations = require(record, key, ctx.source, index)
    if not isinstance(annotations, list):
        raise DataError(ctx.source, index, key, f"expected a list, got {type(annotations).__name__}", "wrong_type")
    votes = []
    for i, a in enumerate(annotations):
        label = require(a, "overall_pref", ctx.source, index)
        if label not in MULTIPREF_VOTES:
            raise DataError(ctx.source, index, f"{key}[{i}].overall_pref",
                            f"unknown label {label!r}; expected one of {sorted(MULTIPREF_VOTES)}", "bad_value")
        votes.append(MULTIPREF_VOTES[label])
    return votes


def _multipref_pair(record: Any, index: int, ctx: _Ctx, rule: str) -> Example | None:
    """MultiPref: chosen is the side the votes prefer under ``rule`` (:func:`rmlib.data.annotations.preferred_side`:
    majority vote, or the summed strengths); no preferred side is removed (``no_majority``)."""
    from rmlib.data.annotations import preferred_side

    normal = _multipref_group(record, "normal_worker_annotations", ctx, index)
    expert = _multipref_group(record, "expert_worker_annotations", ctx, index)
    if not normal and not expert:
        raise DataError(ctx.source, index, "normal_worker_annotations",
                        "no annotations in either annotator group", "missing_field")
    side = preferred_side(normal + expert, rule)
    if side == 0:
        ctx.report.filter("no_majority", f"{ctx.source}: record {index}: votes {normal + expert} give no "
                          f"preferred side ({rule})")
        return None
    sign = float(side)
    a, b = require(record, "completion_a", ctx.source, index), require(record, "completion_b", ctx.source, index)
    chosen, rejected = (a, b) if side > 0 else (b, a)
    models = (record.get("model_a"), record.get("model_b"))
    meta = {"comparison_id": record.get("comparison_id"), "prompt_id": record.get("prompt_id"),
            "category": record.get("category"), "source": record.get("source"),
            "chosen_model": models[0 if side > 0 else 1], "rejected_model": models[1 if side > 0 else 0],
            "normal_votes": [sign * v for v in normal], "expert_votes": [sign * v for v in expert]}
    return make_pair(ctx.source, index, _user_prompt(_text(record, "text", ctx, index)), chosen, rejected,
                     votes=[sign * v for v in normal + expert], meta=meta)


def _convert_multipref(record: Any, index: int, ctx: _Ctx) -> Example | None:
    """MultiPref by majority vote (Diverging Preferences, arXiv 2410.14632: prior work aggregates by
    majority vote): chosen is the side more annotators prefer; equal counts are ``no_majority``."""
    return _multipref_pair(record, index, ctx, "majority")


def _convert_multipref_sum(record: Any, index: int, ctx: _Ctx) -> Example | None:
    """MultiPref by summed vote strengths (rmlib's rule before majority vote); a zero sum is ``no_majority``."""
    return _multipref_pair(record, index, ctx, "sum")


_NEMO_SYSTEM, _NEMO_END = "<extra_id_0>System\n", "<extra_id_2>"
_NEMO_TURN = re.compile(r"<extra_id_1>(User|Assistant)\n")


def _chomp(text: str) -> str:
    """Drop the one newline the NeMo template puts after every turn."""
    return text[:-1] if text.endswith("\n") else text


def _parse_nemo_text(text: str, name: str, ctx: _Ctx, index: int) -> tuple[list[Message], str]:
    """NeMo SteerLM text → (prompt messages, last assistant turn); the template is in docs/data.md."""
    body = text[:-len(_NEMO_END)] if text.endswith(_NEMO_END) else text
    if not body.startswith(_NEMO_SYSTEM):
        raise DataError(ctx.source, index, name, f"expected the text to start with {_NEMO_SYSTEM!r}",
                        "malformed_messages")
    parts = _NEMO_TURN.split(body[len(_NEMO_SYSTEM):])
    system = _chomp(parts[0])
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": role.lower(), "content": _chomp(content)} for role, content in zip(parts[1::2], parts[2::2])]
    if not messages or messages[-1]["role"] != "assistant":
        raise DataError(ctx.source, index, name, "the last turn must be the assistant's response",
                        "malformed_messages")
    return messages[:-1], messages[-1]["content"]


def _convert_nemo_regression(record: Any, index: int, ctx: _Ctx) -> Example:
    """NeMo regression JSONL: 9 labels in ALL_STEERLM_ATTRIBUTES order, −100 = missing."""
    prompt, response = _parse_nemo_text(_text(record, "text", ctx, index), "text", ctx, index)
    label = require(record, "label", ctx.source, index)
    if not isinstance(label, list) or len(label) != len(ALL_STEERLM_ATTRIBUTES):
        got = f"{len(label)} values" if isinstance(label, list) else type(label).__name__
        raise DataError(ctx.source, index, "label", f"expected a list of {len(ALL_STEERLM_ATTRIBUTES)} numbers "
                        f"({', '.join(ALL_STEERLM_ATTRIBUTES)}), got {got}",
                        "wrong_type" if not isinstance(label, list) else "bad_value")
    # -100 passes as a number here; make_rated reads it as missing, as it does for every reader
    attrs = {a: check_number(v, ctx.source, index, f"label[{i}]") for i, (a, v) in enumerate(zip(ALL_STEERLM_ATTRIBUTES, label))}
    return make_rated(ctx.source, index, prompt, response, attrs)


def _convert_nemo_bt(record: Any, index: int, ctx: _Ctx) -> Example:
    """A NeMo binary_ranking line pair (grouped by :func:`_pair_lines`): even line chosen, odd rejected.

    Texts in the SteerLM template are parsed into messages (the prompts must match); plain
    concatenated ``prompt || response`` texts fall back to TRL's common-prefix rule.
    """
    second = record["rejected_index"]
    chosen = _text(record["chosen"], "text", ctx, index)
    rejected = _text(record["rejected"], "text", ctx, second)
    if chosen == rejected:
        raise DataError(ctx.source, second, "text", f"is identical to the chosen line (record {index})",
                        "identical_responses")
    if chosen.startswith(_NEMO_SYSTEM) and rejected.startswith(_NEMO_SYSTEM):
        prompt, c = _parse_nemo_text(chosen, "text", ctx, index)
        prompt_r, r = _parse_nemo_text(rejected, "text", ctx, second)
        if prompt != prompt_r:
            raise DataError(ctx.source, second, "text", f"its prompt differs from the chosen line's (record {index})",
                            "pair_mismatch")
    else:
        text, c, r = _string_prefix_split(chosen, rejected)
        prompt = _user_prompt(text)
    return make_pair(ctx.source, index, prompt, c, r, meta={"pair_index": index // 2})


def _rmlib_meta(record: Any, ctx: _Ctx, index: int) -> dict[str, Any]:
    meta = record.get("meta") or {}
    if not isinstance(meta, Mapping):
        raise DataError(ctx.source, index, "meta", f"expected an object, got {type(meta).__name__}", "wrong_type")
    return dict(meta)


def _convert_rmlib_pairs(record: Any, index: int, ctx: _Ctx) -> Example:
    """Canonical :class:`PreferencePair` dicts (what :func:`write_jsonl` writes)."""
    return make_pair(ctx.source, index, require(record, "prompt", ctx.source, index),
                     require(record, "chosen", ctx.source, index), require(record, "rejected", ctx.source, index),
                     strength=record.get("strength"), votes=record.get("votes"), meta=_rmlib_meta(record, ctx, index))


def _convert_rmlib_ratings(record: Any, index: int, ctx: _Ctx) -> Example:
    """Canonical :class:`RatedResponse` dicts."""
    attrs = require(record, "attributes", ctx.source, index)
    if not isinstance(attrs, Mapping):
        raise DataError(ctx.source, index, "attributes", f"expected an object, got {type(attrs).__name__}",
                        "wrong_type")
    return make_rated(ctx.source, index, require(record, "prompt", ctx.source, index),
                      require(record, "response", ctx.source, index), attrs, meta=_rmlib_meta(record, ctx, index))


def _convert_rmlib_judge(record: Any, index: int, ctx: _Ctx) -> Example:
    """Canonical :class:`JudgeExample` dicts."""
    get = {k: require(record, k, ctx.source, index) for k in ("prompt", "response_1", "response_2",
                                                              "justification", "better")}
    return make_judge(ctx.source, index, get["prompt"], get["response_1"], get["response_2"], get["justification"],
                      get["better"], strength=record.get("strength"), meta=_rmlib_meta(record, ctx, index))


def _ranked(ctx: _Ctx, index: int, prompt: Any, responses: Any, scores: Any, *, meta: Mapping[str, Any] | None = None,
            responses_field: str = "responses", scores_field: str = "scores") -> Example | None:
    """A validated :class:`RankedList`, or None (counted as ``all_tied``) when it orders nothing."""
    ex = make_list(ctx.source, index, prompt, responses, scores, meta=meta, responses_field=responses_field,
                   scores_field=scores_field)
    if all_tied(ex):
        ctx.report.filter("all_tied", f"{ctx.source}: record {index}: all {len(ex.responses)} responses score "
                                      f"{ex.scores[0]:g}")
        return None
    return ex


def _convert_rmlib_lists(record: Any, index: int, ctx: _Ctx) -> Example | None:
    """Canonical :class:`RankedList` dicts: ``scores`` (higher is better) or ``ranks`` (1 = best; equal
    ranks are a tie), one per response; a string prompt is one user turn."""
    prompt = require(record, "prompt", ctx.source, index)
    if isinstance(prompt, str):
        prompt = _user_prompt(check_text(prompt, ctx.source, index, "prompt"))
    responses = require(record, "responses", ctx.source, index)
    if record.get("scores") is not None and record.get("ranks") is not None:
        raise DataError(ctx.source, index, "ranks", "give scores or ranks, not both", "bad_value")
    if record.get("ranks") is not None:
        ranks = record["ranks"]
        if not isinstance(ranks, (list, tuple)):
            raise DataError(ctx.source, index, "ranks", f"expected a list of numbers, got {type(ranks).__name__}",
                            "wrong_type")
        scores = [-check_number(v, ctx.source, index, f"ranks[{i}]", low=1) for i, v in enumerate(ranks)]
        return _ranked(ctx, index, prompt, responses, scores, meta=_rmlib_meta(record, ctx, index), scores_field="ranks")
    scores = require(record, "scores", ctx.source, index)
    return _ranked(ctx, index, prompt, responses, scores, meta=_rmlib_meta(record, ctx, index))


def _ultrafeedback_raw(score_key: str) -> Converter:
    """openbmb/UltraFeedback's raw rows (its dataset card and README): ``instruction`` and ``completions``,
    each completion a dict with the ``response`` and its ratings. ``score_key`` picks the rating the list
    ranks by. A completion without that rating (None or NaN) is left out (``meta["unrated"]`` counts them;
    the report counts records, not completions); a list left with fewer than 2 rated responses is
    filtered (``fewer_than_two_rated``)."""

    def convert(record: Any, index: int, ctx: _Ctx) -> Example | None:
        prompt = _user_prompt(_text(record, "instruction", ctx, index))
        completions = require(record, "completions", ctx.source, index)
        if not isinstance(completions, (list, tuple)):
            raise DataError(ctx.source, index, "completions", f"expected a list, got {type(completions).__name__}",
                            "wrong_type")
        responses, scores, models, unrated = [], [], [], 0
        for i, c in enumerate(completions):
            where = f"completions[{i}]"
            if not isinstance(c, Mapping):
                raise DataError(ctx.source, index, where, f"expected an object, got {type(c).__name__}", "wrong_type")
            value = c.get(score_key)
            if value is None or (isinstance(value, float) and value != value):
                unrated += 1
                continue
            responses.append(check_text(require(c, "response", ctx.source, index), ctx.source, index,
                                        f"{where}.response"))
            scores.append(check_number(value, ctx.source, index, f"{where}.{score_key}"))
            models.append(c.get("model"))
        if len(responses) < 2:
            ctx.report.filter("fewer_than_two_rated", f"{ctx.source}: record {index}: {len(responses)} rated "
                                                      "completion(s)")
            return None
        meta = {"source": record.get("source"), "models": models, "rating": score_key, "unrated": unrated}
        return _ranked(ctx, index, prompt, responses, scores, meta=meta, responses_field="completions",
                       scores_field=score_key)

    return convert


def _convert_rewardbench2(record: Any, index: int, ctx: _Ctx) -> Example | None:
    """RewardBench 2 rows (``allenai/reward-bench-2`` card): ``chosen`` and ``rejected`` lists of strings;
    the first ``num_correct`` of ``chosen + rejected`` are correct (default: every chosen one). Correct
    responses score 1 and form one tied group above the incorrect ones (score 0)."""
    prompt = _user_prompt(_text(record, "prompt", ctx, index))
    chosen, rejected = (require(record, k, ctx.source, index) for k in ("chosen", "rejected"))
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, (list, tuple)):
            raise DataError(ctx.source, index, name, f"expected a list of strings, got {type(value).__name__}",
                            "wrong_type")
    responses = list(chosen) + list(rejected)
    k = record.get("num_correct", len(chosen))
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < len(responses):
        raise DataError(ctx.source, index, "num_correct", f"{k!r} does not fit {len(chosen)}+{len(rejected)} "
                        "completions (1 <= num_correct < total)", "bad_value")
    meta = {"id": record.get("id"), "subset": record.get("subset")}
    return _ranked(ctx, index, prompt, responses, [1.0] * k + [0.0] * (len(responses) - k), meta=meta,
                   responses_field="chosen+rejected")


# ---------------------------------------------------------------------------------------------
# Multi-row formats


def _pair_lines(records: Iterable[Record], source: str) -> Iterator[Record]:
    """NeMo BT: group lines 2k (chosen) and 2k+1 (rejected) into one record indexed by the chosen line."""
    it = iter(records)
    for first in it:
        second = next(it, None)
        if second is None:
            yield first[0], DataError(source, first[0], None, "odd number of lines: this chosen line has no "
                                      "rejected line after it (binary_ranking files hold line pairs)", "unpaired_row")
            return
        bad = next((r for _, r in (first, second) if isinstance(r, DataError)), None)
        yield first[0], bad or {"chosen": first[1], "rejected": second[1], "rejected_index": second[0]}


def _prompt_key(record: Any) -> Any:
    return record.get("prompt") if isinstance(record, Mapping) else None


def _check_prompt_pairs(records: Iterable[Record], source: str) -> Iterator[Record]:
    """HelpSteer2 pairs rows by position (2k, 2k+1): verify each pair shares its prompt.

    A dropped or reordered row would otherwise silently pair answers to different prompts. A row
    whose partner is missing, unreadable or answers another prompt becomes a DataError.
    """
    it = iter(records)
    for first in it:
        second = next(it, None)
        if second is None:
            yield first[0], (first[1] if _prompt_key(first[1]) is None else DataError(
                source, first[0], "prompt", "is the last row and has no partner row (HelpSteer2 pairs rows "
                "2k and 2k+1)", "unpaired_row"))
            return
        yield from _verify_pair(first, second, source)


def _verify_pair(first: Record, second: Record, source: str) -> Iterator[Record]:
    (i, a), (j, b) = first, second
    pa, pb = _prompt_key(a), _prompt_key(b)
    if pa is not None and pa == pb:
        yield first
        yield second
        return
    for (k, rec), p, other in ((first, pa, j), (second, pb, i)):
        if p is None:  # unreadable or no prompt: the converter reports the record's own problem
            yield k, rec
        elif pa is not None and pb is not None:
            yield k, DataError(source, k, "prompt", f"differs from the prompt of its partner record {other} "
                               "(HelpSteer2 pairs rows 2k and 2k+1)", "pair_mismatch")
        else:
            yield k, DataError(source, k, "prompt", f"its partner record {other} is unreadable or has no prompt, "
                               "so the pair cannot be verified", "unpaired_row")


# ---------------------------------------------------------------------------------------------
# Detection predicates: keys and value types only.


def _has(record: Mapping[str, Any], *keys: str) -> bool:
    return all(k in record for k in keys)


def _detect_trl(r: Mapping[str, Any]) -> bool:
    c, rj, p = r.get("chosen"), r.get("rejected"), r.get("prompt")
    if isinstance(c, str) and isinstance(rj, str):
        return p is None or isinstance(p, str)
    return _is_messages(c) and _is_messages(rj) and (p is None or _is_messages(p))


def _detect_hh(r: Mapping[str, Any]) -> bool:
    c, rj = r.get("chosen"), r.get("rejected")
    return ("prompt" not in r and isinstance(c, str) and isinstance(rj, str)
            and all(text.startswith(_HH_HUMAN) and _HH_ASSISTANT in text for text in (c, rj)))


def _detect_ultrafeedback(r: Mapping[str, Any]) -> bool:
    return _has(r, "prompt_id", "score_chosen", "score_rejected") and _is_messages(r.get("chosen"))


def _detect_skywork(r: Mapping[str, Any]) -> bool:
    return "prompt" not in r and _has(r, "source") and _is_messages(r.get("chosen")) and _is_messages(r.get("rejected"))


def _detect_helpsteer2(r: Mapping[str, Any]) -> bool:
    return (_has(r, "prompt", "response", *HELPSTEER2_ATTRIBUTES) and isinstance(r["prompt"], str)
            and not isinstance(r["helpfulness"], list))


def _detect_helpsteer2_disagreements(r: Mapping[str, Any]) -> bool:
    return (_has(r, "prompt", "response", *HELPSTEER2_ATTRIBUTES) and isinstance(r["prompt"], str)
            and isinstance(r["helpfulness"], list))


def _detect_helpsteer2_preference(r: Mapping[str, Any]) -> bool:
    return _has(r, "prompt", "response_1", "response_2", "preference_strength")


def _detect_multipref(r: Mapping[str, Any]) -> bool:
    return (_has(r, "completion_a", "completion_b")
            and ("normal_worker_annotations" in r or "expert_worker_annotations" in r))


def _detect_nemo_regression(r: Mapping[str, Any]) -> bool:
    return isinstance(r.get("text"), str) and isinstance(r.get("label"), list)


def _detect_nemo_bt(r: Mapping[str, Any]) -> bool:
    return set(r) == {"text"} and isinstance(r["text"], str)


def _detect_rmlib_pairs(r: Mapping[str, Any]) -> bool:
    return (_has(r, "prompt", "chosen", "rejected", "strength", "votes", "meta") and isinstance(r["prompt"], list)
            and isinstance(r["chosen"], str))


def _detect_rmlib_ratings(r: Mapping[str, Any]) -> bool:
    return _has(r, "prompt", "response", "attributes", "meta") and isinstance(r["attributes"], Mapping)


def _detect_rmlib_judge(r: Mapping[str, Any]) -> bool:
    return _has(r, "prompt", "response_1", "response_2", "justification", "better")


def _detect_rmlib_lists(r: Mapping[str, Any]) -> bool:
    return _has(r, "prompt", "responses") and isinstance(r["responses"], list) and ("scores" in r or "ranks" in r)


def _detect_ultrafeedback_raw(r: Mapping[str, Any]) -> bool:
    c = r.get("completions")
    return (isinstance(r.get("instruction"), str) and isinstance(c, list) and bool(c) and isinstance(c[0], Mapping)
            and "response" in c[0])


def _detect_rewardbench2(r: Mapping[str, Any]) -> bool:
    c, rj = r.get("chosen"), r.get("rejected")
    return (isinstance(r.get("prompt"), str) and "num_correct" in r and isinstance(c, list) and isinstance(rj, list)
            and all(isinstance(x, str) for x in c + rj))


FORMATS: dict[str, FormatSpec] = {
    "trl": FormatSpec("pairs", _detect_trl, _convert_trl, specificity=1,
                      doc="TRL preference: standard/conversational × explicit/implicit prompt, optional margin"),
    "hh_rlhf": FormatSpec("pairs", _detect_hh, _convert_hh_rlhf, doc="Anthropic/hh-rlhf transcripts"),
    "ultrafeedback": FormatSpec("pairs", _detect_ultrafeedback, _convert_ultrafeedback,
                                doc="HuggingFaceH4/ultrafeedback_binarized"),
    "skywork": FormatSpec("pairs", _detect_skywork, _convert_skywork, doc="Skywork-Reward-Preference-80K"),
    "helpsteer2": FormatSpec("ratings", _detect_helpsteer2, _convert_helpsteer2, prepare=_check_prompt_pairs,
                             doc="nvidia/HelpSteer2 ratings (positional pairs verified)"),
    "helpsteer2_preference": FormatSpec("pairs", _detect_helpsteer2_preference, _convert_helpsteer2_preference,
                                        doc="nvidia/HelpSteer2 data_dir=preference"),
    "helpsteer2_disagreements": FormatSpec("ratings", _detect_helpsteer2_disagreements,
                                           _convert_helpsteer2_disagreements,
                                           doc="nvidia/HelpSteer2 data_dir=disagreements"),
    "multipref": FormatSpec("pairs", _detect_multipref, _convert_multipref,
                            doc="allenai/multipref default config, majority vote"),
    "multipref_sum": FormatSpec("pairs", _detect_multipref, _convert_multipref_sum, specificity=1,
                                doc="allenai/multipref default config, summed vote strengths"),
    "nemo_regression": FormatSpec("ratings", _detect_nemo_regression, _convert_nemo_regression,
                                  doc="NeMo-Aligner regression JSONL {text, label[9]}"),
    "nemo_bt": FormatSpec("pairs", _detect_nemo_bt, _convert_nemo_bt, prepare=_pair_lines,
                          doc="NeMo-Aligner binary_ranking JSONL (line pairs)"),
    "rmlib_pairs": FormatSpec("pairs", _detect_rmlib_pairs, _convert_rmlib_pairs, doc="canonical PreferencePair"),
    "rmlib_ratings": FormatSpec("ratings", _detect_rmlib_ratings, _convert_rmlib_ratings,
                                doc="canonical RatedResponse"),
    "rmlib_judge": FormatSpec("judge", _detect_rmlib_judge, _convert_rmlib_judge, doc="canonical JudgeExample"),
    "rmlib_lists": FormatSpec("lists", _detect_rmlib_lists, _convert_rmlib_lists,
                              doc="canonical RankedList: prompt, k responses, scores or ranks (ties allowed)"),
    "ultrafeedback_raw": FormatSpec("lists", _detect_ultrafeedback_raw, _ultrafeedback_raw("fine-grained_score"),
                                    doc="openbmb/UltraFeedback raw rows: the completions ranked by fine-grained_score"),
    "ultrafeedback_raw_overall": FormatSpec("lists", _detect_ultrafeedback_raw, _ultrafeedback_raw("overall_score"),
                                            specificity=1,
                                            doc="openbmb/UltraFeedback raw rows ranked by overall_score"),
    "rewardbench2": FormatSpec("lists", _detect_rewardbench2, _convert_rewardbench2,
                               doc="allenai/reward-bench-2 rows as lists: correct responses tied above the others"),
    # never detected (a HelpSteer2-Preference file reads as pairs unless this is named): judge examples
    "helpsteer2_justifier": FormatSpec("judge", lambda r: False, _convert_helpsteer2_justifier, specificity=0,
                                       doc="HelpSteer2-Preference as Pairwise Justifier examples (the paper's "
                                           "Overall Preference Justification set, rmlib.data.judge)"),
}


def register_format(name: str, spec: FormatSpec) -> None:
    """Add a reader to the registry; detection, ``load``, ``rmlib data`` and training then know it.

    A second format under an existing name is an error: silently replacing a built-in reader
    would change how every file of that shape is read.
    """
    if name in FORMATS and FORMATS[name] is not spec:
        raise ValueError(f"format {name!r} is already registered ({FORMATS[name].doc})")
    FORMATS[name] = spec


# ---------------------------------------------------------------------------------------------
# Detection, loading, writing


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
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; registered formats: {', '.join(FORMATS)}")
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
    if FORMATS[format].prepare is not None:
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
    spec = FORMATS[format]
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
