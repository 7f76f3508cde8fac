"""The annotate step's append-only journal: what a killed run has already been told, so a rerun resumes.

``<out>.journal.jsonl`` sits beside the output directory (the step's staging directory ``<out>.tmp`` is
wiped at every start, the journal must outlive it). Its first line is a header naming the run's options
that change an answer (model, template, orders, seed, ...); every further line is one answered request:
``{"i": pair index, "p": position of the input's chosen response (1 or 2), "k": the pair's 64-bit key,
"content": ..., "finish": ..., "attempts": n}``.

* each line is written whole and flushed at once (a killed process loses only the requests in flight), and
  the file is fsync'd every ``fsync_every`` lines or ``fsync_seconds`` (a power cut loses at most that);
* on resume a torn last line (a kill mid-write) is cut off; a header from a run with other options, a
  line naming a pair outside the input, or a pair whose key differs (the input changed) is an error that
  names the journal and the line, never a silent mix of two runs;
* only answered requests are journaled: a request that failed (429s past the retries, a dead server) is
  asked again by the next run, so no pair is lost, and no answered pair is asked twice.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rmlib.data.schema import DataError

__all__ = ["Journal", "journal_path"]

VERSION = 1


def journal_path(out_dir: str | os.PathLike) -> Path:
    """``curated/annotate`` → ``curated/annotate.journal.jsonl``."""
    out = Path(out_dir)
    return out.with_name(out.name + ".journal.jsonl")


class Journal:
    """Open (or create) the journal of a run over ``n`` pairs with ``slots`` requests per pair.

    ``offsets[i, s]`` is the byte offset of the line answering pair ``i``'s slot ``s`` (-1: not answered),
    ``keys[i]`` the key that line recorded (checked against the input by the caller with :meth:`check_keys`).
    """

    def __init__(self, path: str | os.PathLike, header: Mapping[str, Any], n: int, slots: int, *,
                 fsync_every: int = 64, fsync_seconds: float = 2.0) -> None:
        self.path, self.n, self.slots = Path(path), n, slots
        self.header = {"journal": "rmlib-annotate", "version": VERSION, **header}
        self.fsync_every, self.fsync_seconds = fsync_every, fsync_seconds
        self.offsets = np.full((n, slots), -1, dtype=np.int64)
        self.keys = np.zeros(n, dtype=np.int64)
        self.resumed = 0
        self.torn = False
        self._pending = 0
        self._last_sync = time.monotonic()
        if self.path.exists() and self.path.stat().st_size:
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "wb") as fh:
                fh.write(self._line(self.header))
                fh.flush()
                os.fsync(fh.fileno())
        self._fh = open(self.path, "ab")
        self._reader = open(self.path, "rb")

    @staticmethod
    def _line(rec: Mapping[str, Any]) -> bytes:
        return (json.dumps(rec, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")

    def _load(self) -> None:
        path = str(self.path)
        with open(self.path, "rb") as fh:
            data = fh.read()
        pos, line_no, end = 0, 0, len(data)
        while pos < end:
            nl = data.find(b"\n", pos)
            raw = data[pos:] if nl < 0 else data[pos:nl]
            try:
                rec = json.loads(raw)
            except ValueError:
                if nl < 0:
                    # the last line, torn by a kill mid-write: cut it off and ask that request again
                    with open(self.path, "r+b") as w:
                        w.truncate(pos)
                    self.torn = True
                    return
                raise DataError(path, line_no, None, "a journal line is not JSON (the file was edited or "
                                "corrupted); delete the journal to start over", "bad_json") from None
            if line_no == 0:
                self._check_header(rec)
            else:
                self._record(rec, pos, line_no)
            line_no += 1
            pos = end if nl < 0 else nl + 1

    def _check_header(self, rec: Any) -> None:
        if not isinstance(rec, dict) or rec.get("journal") != "rmlib-annotate":
            raise DataError(str(self.path), 0, None, "is not an rmlib annotate journal", "wrong_kind")
        diff = sorted(k for k in set(rec) | set(self.header) if rec.get(k) != self.header.get(k))
        if diff:
            detail = "; ".join(f"{k}: journal {rec.get(k)!r}, now {self.header.get(k)!r}" for k in diff)
            raise ValueError(f"annotate journal {self.path} was written by a run with other options ({detail}); "
                             "rerun with the same options to resume it, or delete it to start over")

    def _record(self, rec: Any, offset: int, line_no: int) -> None:
        path = str(self.path)
        if not isinstance(rec, dict):
            raise DataError(path, line_no, None, "a journal line must be an object", "wrong_type")
        i, p = rec.get("i"), rec.get("p")
        if not isinstance(i, int) or not 0 <= i < self.n:
            raise DataError(path, line_no, "i", f"pair {i!r} is outside the input's {self.n} pairs: the journal "
                            "belongs to another input", "bad_value")
        slot = self.slot_of(p)
        if self.offsets[i, slot] >= 0:  # answered twice (a duplicate line): the first answer stands
            return
        self.offsets[i, slot] = offset
        self.keys[i] = int(rec.get("k", 0))
        self.resumed += 1

    def slot_of(self, position: Any) -> int:
        if position not in (1, 2):
            raise DataError(str(self.path), None, "p", f"position must be 1 or 2, got {position!r}", "bad_value")
        return 0 if self.slots == 1 else position - 1

    def check_keys(self, index: np.ndarray, keys: np.ndarray) -> None:
        """Raise unless every journaled pair among ``index`` has the recorded key (the input is unchanged)."""
        done = (self.offsets[index] >= 0).any(axis=1)
        bad = np.flatnonzero(done & (self.keys[index] != keys))
        if bad.size:
            i = int(index[bad[0]])
            raise ValueError(f"annotate journal {self.path}: pair {i} of the input is not the pair the journal "
                             f"answered ({bad.size} such pairs in this batch): the input changed since the "
                             "journal was written; delete the journal to start over")

    def append(self, rec: Mapping[str, Any]) -> int:
        """Write one answered request; returns its byte offset. Flushed now, fsync'd in batches."""
        line = self._line(rec)
        offset = self._fh.seek(0, os.SEEK_END)
        self._fh.write(line)
        self._fh.flush()
        self._pending += 1
        if self._pending >= self.fsync_every or time.monotonic() - self._last_sync >= self.fsync_seconds:
            self.sync()
        i, slot = rec["i"], self.slot_of(rec["p"])
        self.offsets[i, slot] = offset
        self.keys[i] = rec["k"]
        return offset

    def sync(self) -> None:
        if self._pending:
            os.fsync(self._fh.fileno())
        self._pending, self._last_sync = 0, time.monotonic()

    def read(self, offset: int) -> dict[str, Any]:
        self._reader.seek(offset)
        return json.loads(self._reader.readline())

    def lines(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(offset, record)`` of every answered request, in file order (the header skipped)."""
        with open(self.path, "rb") as fh:
            fh.readline()
            while True:
                offset = fh.tell()
                raw = fh.readline()
                if not raw:
                    return
                yield offset, json.loads(raw)

    def close(self) -> None:
        self.sync()
        self._fh.close()
        self._reader.close()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
