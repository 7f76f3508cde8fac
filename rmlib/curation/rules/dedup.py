"""Exact deduplication of preference pairs on (conversation history, chosen, rejected).

Skywork-Reward-V2 (Liu et al., arXiv 2507.01352) deduplicates its preference pool on the conversation
history together with both responses. Here each pair is hashed twice (in batches, on the data layer's
worker processes: :func:`~rmlib.curation.rules.table.map_columns`): its key
``(prompt, chosen, rejected)`` and its swapped key ``(prompt, rejected, chosen)``. The rule:

* **duplicate**: a pair whose key equals an earlier pair's key is removed; the first occurrence (lowest
  input index) is kept.
* **conflict**: two pairs with the same conversation and the same two responses but opposite labels
  (one's key is the other's swapped key) contradict each other. With ``conflicts="drop"`` (default) every
  pair of such a group is removed from the output and written to ``conflicts.jsonl`` so a person can
  decide; with ``conflicts="keep_first"`` the earliest one is kept and the later, opposite ones removed.
  Neither rule keeps both, which would train the model on both answers at once.

Keys are 64-bit hashes (:func:`rmlib.data.canonical.hash64`); two different pairs collide with
probability about n²/2⁶⁵ (≈3·10⁻⁴ for 100 million pairs).
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

import numpy as np

from rmlib.curation.rules.table import (
    DATA_FILE,
    StepReport,
    check_not_inside,
    map_columns,
    read_pairs,
    step_output,
    write_rows,
)
from rmlib.data.canonical import hash64
from rmlib.data.schema import OnInvalid

__all__ = ["dedup_pairs", "pair_keys", "dedup_masks"]

Conflicts = Literal["drop", "keep_first"]


def pair_keys(prompt_json: str, chosen: str, rejected: str) -> tuple[int, int]:
    """(key, swapped key) of one pair: hashes of ``[prompt, chosen, rejected]`` and ``[prompt, rejected, chosen]``
    as JSON (so no separator inside a text can make two different pairs equal)."""
    return (hash64(json.dumps([prompt_json, chosen, rejected], ensure_ascii=False)),
            hash64(json.dumps([prompt_json, rejected, chosen], ensure_ascii=False)))


def keys_batch(batch: dict[str, list]) -> dict[str, list]:
    """:func:`pair_keys` of a batch of table rows (dedup's keys; retrieval's ``exclude`` matches on them)."""
    keys = [pair_keys(p, c, r) for p, c, r in zip(batch["prompt"], batch["chosen"], batch["rejected"])]
    return {"key": [k for k, _ in keys], "swap": [s for _, s in keys]}


def dedup_masks(key: np.ndarray, swap: np.ndarray, conflicts: Conflicts = "drop") -> tuple[np.ndarray, np.ndarray]:
    """``(duplicate, conflict)`` boolean masks over the rows from their key and swapped-key columns.

    ``duplicate``: a later row with an earlier row's key. ``conflict``: with ``"drop"``, every first
    occurrence whose swapped key is some row's key; with ``"keep_first"``, such a first occurrence only when
    the opposite pair came first. A row is in at most one mask. Pure numpy (sort + search), O(n log n).
    """
    key, swap = np.asarray(key, dtype=np.int64), np.asarray(swap, dtype=np.int64)
    n = key.size
    _, first = np.unique(key, return_index=True)
    duplicate = np.ones(n, dtype=bool)
    duplicate[first] = False
    order = np.argsort(key[first], kind="stable")
    sorted_keys, sorted_first = key[first][order], first[order]
    pos = np.searchsorted(sorted_keys, swap)
    pos_c = np.minimum(pos, max(sorted_keys.size - 1, 0))
    has_opposite = (sorted_keys.size > 0) & (sorted_keys[pos_c] == swap) & (swap != key)
    conflict = has_opposite & ~duplicate
    if conflicts == "keep_first":
        opposite_first = sorted_first[pos_c]
        conflict &= opposite_first < np.arange(n)
    elif conflicts != "drop":
        raise ValueError(f"conflicts must be 'drop' or 'keep_first', got {conflicts!r}")
    return duplicate, conflict


def dedup_pairs(source: str | os.PathLike, out_dir: str | os.PathLike, *, format: str | None = None,
                conflicts: Conflicts = "drop", num_proc: int | None = None, on_invalid: OnInvalid = "error",
                max_examples: int = 3) -> StepReport:
    """Exact dedup of ``source`` into ``out_dir``: ``data.jsonl`` (kept pairs, input order), ``conflicts.jsonl``
    (every pair of a label conflict), ``report.json``. See the module docstring for the rule."""
    check_not_inside(source, out_dir)
    report = StepReport("dedup", str(source), {"conflicts": conflicts, "key": "hash64(prompt, chosen, rejected)"},
                        max_examples=max_examples)
    with step_output(out_dir, report) as (stage, work):
        table = read_pairs(source, work, format=format, on_invalid=on_invalid, max_examples=max_examples)
        report.source, report.read = table.source, table.report.to_dict()
        report.n_in = len(table)
        hashed = map_columns(table, keys_batch, {"key": np.int64, "swap": np.int64}, num_proc)
        key, swap = hashed["key"], hashed["swap"]
        duplicate, conflict = dedup_masks(key, swap, conflicts)
        report.remove("duplicate", duplicate.sum())
        report.remove("conflict", conflict.sum())
        # first row of each key, by binary search in numpy (no per-row Python objects: memory stays 8-16 bytes
        # per pair); the conflicts file holds every pair of a conflicting group, so both labels are visible
        uniq, first = np.unique(key, return_index=True)

        def first_of(keys: np.ndarray) -> np.ndarray:
            return first[np.minimum(np.searchsorted(uniq, keys), max(uniq.size - 1, 0))]

        in_group = conflict.copy()
        in_group[first_of(swap[conflict])] = True
        for reason, mask, of in (("duplicate", duplicate, key), ("conflict", conflict, swap)):
            rows = np.flatnonzero(mask)[:max_examples]
            for i, f in zip(rows, first_of(of[rows])):
                report.example(reason, table.ds[int(i)], of=int(f))
        keep = ~(duplicate | conflict)
        report.n_out = write_rows(table, stage / DATA_FILE, keep)
        report.extra["conflict_groups"] = int(np.unique(np.minimum(key[conflict], swap[conflict])).size)
        if in_group.any():
            write_rows(table, stage / "conflicts.jsonl", in_group, make=_conflict_row(conflict))
    return report


def _conflict_row(removed: np.ndarray):
    from rmlib.curation.rules.table import pair_row

    def make(row: dict[str, Any]) -> dict[str, Any]:
        return pair_row(row, curation={"conflict": True, "input_index": int(row["index"]),
                                       "kept": not bool(removed[row["index"]])})

    return make
