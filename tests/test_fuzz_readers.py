"""200 generated bad inputs across every reader: each is named or counted, never an unhandled
exception, a silently dropped record, or a partial output file.

Valid records of every bundled format are mutated the ways real files go wrong: a field deleted,
a value of the wrong type, a truncated line, invalid bytes, an empty or a huge string, a broken
chat message. Generation is seeded (stdlib ``random``), so a failure reproduces.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from rmlib.data.formats import FORMATS, load
from rmlib.data.inspect import prepare
from rmlib.data.schema import DataError

SAMPLES = Path(__file__).resolve().parents[1] / "rmlib" / "data" / "samples" / "formats"
CASES = 200


def _records(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if path.suffix == ".json":
        return json.loads(path.read_text())
    return load(path).examples and []  # parquet/csv are covered through their JSONL twins


SOURCES = {p: load(p).format for p in sorted(SAMPLES.iterdir()) if p.suffix in (".jsonl", ".json")}


def _mutate(rng: random.Random, record: dict) -> bytes | dict:
    """One way a record goes bad; bytes for line-level damage, else the damaged record."""
    r = json.loads(json.dumps(record))
    kind = rng.choice(["delete", "type", "truncate", "bytes", "empty", "huge", "message"])
    keys = list(r) or ["x"]
    key = rng.choice(keys)
    if kind == "delete":
        r.pop(key, None)
    elif kind == "type":
        r[key] = rng.choice([17, 2.5, None, True, [], {}, "text", [1, 2], {"a": 1}])
    elif kind == "truncate":
        line = json.dumps(r).encode()
        return line[: rng.randint(1, max(1, len(line) - 2))]
    elif kind == "bytes":
        line = bytearray(json.dumps(r).encode())
        at = rng.randint(0, len(line))
        line[at:at] = rng.choice([b"\xff\xfe", b"\x80", b"\xc3\x28", b"\x00"])
        return bytes(line)
    elif kind in ("empty", "huge"):
        strings = [k for k, v in r.items() if isinstance(v, str)] or keys
        r[rng.choice(strings)] = "" if kind == "empty" else "word " * 200_000
    else:
        lists = [k for k, v in r.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if lists:
            msgs = r[rng.choice(lists)]
            m = rng.choice(msgs)
            m[rng.choice(["role", "content"])] = rng.choice([5, None, "robot", ["x"]])
        else:
            r[key] = [{"role": "robot", "content": 1}]
    return r


def _write(path: Path, records: list[bytes | dict], as_json_array: bool) -> None:
    if as_json_array and all(isinstance(r, dict) for r in records):
        path.write_text(json.dumps(records))
        return
    path.write_bytes(b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in records) + b"\n")


def _cases():
    rng = random.Random(20261202)
    sources = list(SOURCES)
    for case in range(CASES):
        source = sources[case % len(sources)]
        yield case, source, rng.randint(0, 2**31)


@pytest.mark.parametrize("case,source,seed", list(_cases()), ids=lambda v: getattr(v, "name", str(v)))
def test_a_bad_record_is_named_or_counted_never_crashes_or_half_writes(tmp_path, case, source, seed):
    rng = random.Random(seed)
    fmt = SOURCES[source]
    records = _records(source)
    victim = rng.randrange(len(records))
    bad = [_mutate(rng, r) if i == victim else r for i, r in enumerate(records)]
    path = tmp_path / f"case{case}{'.json' if source.suffix == '.json' else '.jsonl'}"
    _write(path, bad, source.suffix == ".json")
    for policy in ("error", "skip"):
        try:
            loaded = load(path, fmt, on_invalid=policy)
        except DataError as e:
            assert str(path) in str(e)  # names the file (and, for a record, its index and field)
            continue
        rep = loaded.report
        assert rep.kept == len(loaded.examples)
        assert rep.seen == rep.kept + rep.n_skipped + rep.n_filtered or FORMATS[fmt].prepare is not None
    out = tmp_path / "out.jsonl"
    try:
        prepare(str(path), str(out), fmt, on_invalid="error")
    except DataError:
        assert not out.exists() and not list(tmp_path.glob(".out.jsonl.*"))  # no partial output
    else:
        assert len(out.read_text().splitlines()) == len(load(path, fmt).examples)
