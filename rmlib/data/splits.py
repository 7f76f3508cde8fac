"""A run's training and evaluation sets, assembled from the data config in one call: :func:`build_splits`.

Everything that can fail because of the data fails here, before a model is loaded: a loss label the
data lacks, data of another kind than the loss reads, an empty split. Features come from the Arrow
feature cache (:mod:`rmlib.data.features`): built once by the main process, memory-mapped by every
rank and every later run. Splitting, hold-out and the train/eval overlap check only choose row
numbers, from the hash columns, with numpy.

What the loss reads is given as a :class:`DataNeeds` (the data layer knows no loss), and the
data config is read, never written.
"""

from __future__ import annotations

import array
import copy
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rmlib.data.canonical import LIST_LABELS
from rmlib.data.features import (
    FeatureSet,
    FeatureTable,
    KindMismatch,
    MixedSet,
    SourceSpec,
    build_features,
)
from rmlib.data.schema import ValidationReport
from rmlib.data.tokenize import Featurizer

if TYPE_CHECKING:
    from rmlib.config import DataConfig


class SplitError(ValueError):
    """The data cannot give the splits a run asks for (the message names the source and the fix)."""


@dataclass(frozen=True)
class DataNeeds:
    """What a loss reads from the data: its kind, its labels, its attributes and feature options.

    ``attributes=None`` keeps every attribute the ratings name; ``options`` shape the features (part
    of the cache key). ``loss`` and ``family`` only name the loss in error messages.
    """

    loss: str
    family: str
    kind: str
    labels: tuple[str, ...] = ()
    attributes: list[str] | None = None
    options: Mapping[str, Any] | None = None


@dataclass
class Examples:
    """The training and evaluation features of a run and what loading them found."""

    train: FeatureSet | MixedSet
    eval: FeatureSet
    kind: str  # "pairs" | "ratings" | "judge" | "lists"
    attributes: list[str]
    report: ValidationReport
    eval_source: str
    truncated_prompts: int = 0
    built: bool = True  # False when every table was a cache hit
    tokenize_seconds: float = 0.0
    eval_sets: dict[str, FeatureSet] = field(default_factory=dict)  # data.eval_sets, by name


def _spec(d: DataConfig, source: str, hub_split: str | None, *, training: bool = False) -> SourceSpec:
    """How a source is read; only training sources are expanded to every annotation (``data.annotations``)."""
    return SourceSpec(source, d.format, hub_split, d.data_dir, tuple(sorted(d.column_map.items())), d.on_invalid,
                      d.annotations if training else "aggregate")


def _valid(table: FeatureTable) -> np.ndarray:
    return table.equals("drop", "")


def _split_rows(table: FeatureTable, name: str | None, report: ValidationReport, reason: str,
                source: str, keep_equal: bool = True) -> np.ndarray:
    """Rows whose ``meta["split"]`` is (``keep_equal``) or is not ``name``; the others are counted."""
    match = table.equals("split", name)
    chosen = match if keep_equal else ~match
    dropped = int(np.count_nonzero(~chosen & _valid(table)))
    if dropped:
        report.filtered[reason] += dropped
        report._example(reason, f"{source}: {dropped} records whose meta.split is "
                                f"{'not ' if keep_equal else ''}{name!r}")
    return chosen


def holdout(prompt_hash: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded evaluation mask, split by prompt so that no prompt appears on both sides.

    The prompts are ordered by ``random.Random(seed).shuffle`` (the split every rmlib version
    made), run here over an ``array('q')`` of 8 bytes a key: a Python list of the keys cost
    ~40 bytes per prompt, 1 GB at 26M pairs.
    """
    keys = array.array("q", np.unique(prompt_hash).astype(np.int64).tobytes())  # 8 bytes a key, fast items
    draw = random.Random(seed).randrange
    for i in range(len(keys) - 1, 0, -1):  # random.shuffle's Fisher-Yates, draw for draw
        j = draw(i + 1)
        keys[i], keys[j] = keys[j], keys[i]
    n_eval = max(1, round(len(keys) * fraction))
    return member(prompt_hash, np.sort(np.frombuffer(keys, dtype=np.int64, count=n_eval).astype(prompt_hash.dtype)))


def member(values: np.ndarray, sorted_set: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """``np.isin(values, sorted_set)`` for a sorted set, a chunk of ``values`` at a time: the
    temporaries stay ~16 bytes x ``chunk`` whatever the number of rows (isin sorts both sides
    together: ~70 bytes per row)."""
    out = np.zeros(len(values), dtype=bool)
    if not len(sorted_set):
        return out
    for at in range(0, len(values), chunk):
        part = values[at:at + chunk]
        where = np.searchsorted(sorted_set, part)
        out[at:at + chunk] = sorted_set[np.minimum(where, len(sorted_set) - 1)] == part
    return out


def drop_eval_overlap(train: FeatureSet, held: FeatureSet, report: ValidationReport) -> FeatureSet:
    """Training rows identical to an evaluation row (meta aside) are removed and counted, so an
    evaluation file that shares rows with the training file cannot inflate held-out scores."""
    held_hashes = np.sort(held.table.column("content_hash")[held.rows])
    same = member(train.table.column("content_hash")[train.rows], held_hashes)
    n = int(np.count_nonzero(same))
    if n:
        report.filtered["in_eval_set"] += n
        report._example("in_eval_set", f"{n} training rows identical to an evaluation row were removed from training")
    return train.subset(np.nonzero(~same)[0])


def _check_labels(fs: FeatureSet, labels: tuple[str, ...], loss_name: str, source: str) -> None:
    for name in labels:
        if name in LIST_LABELS:  # the kind's own per-attribute / per-response label, always present
            continue
        missing = np.nonzero(np.isnan(fs.table.column(f"label_{name}")[fs.rows].astype(np.float64)))[0]
        if len(missing):
            first = int(fs.table.column("index")[fs.rows[missing[0]]])
            raise SplitError(f"loss '{loss_name}' consumes the label '{name}' on every example; {source}: "
                             f"example {first} (0-based, after reading) has none ({len(missing)} without it). "
                             + _LABEL_HINTS.get(name, "Put it in each example's meta."))


def build_splits(d: DataConfig, featurizer: Featurizer, needs: DataNeeds) -> Examples:
    """Features of the training and evaluation sets (built or memory-mapped), split and checked.

    The evaluation rows are ``data.eval`` (its ``data.eval_split`` rows when set), else the
    ``data.eval_split`` rows of ``data.train``, else a seeded ``data.eval_fraction`` of its prompts;
    training rows identical to an evaluation row are dropped; ``data.mix`` sources are drawn with
    their weights. Raises :class:`SplitError` for data the loss cannot train on.
    """
    kw = dict(labels=needs.labels, attributes=needs.attributes, cache_dir=d.cache_dir, num_proc=d.num_proc,
              expect_kind=(needs.kind, f"loss '{needs.loss}' is {needs.family} and needs {needs.kind} data"),
              data_options=needs.options)
    try:
        table = build_features(_spec(d, d.train, d.hub_split, training=True), featurizer, **kw)
    except KindMismatch as e:
        raise SplitError(str(e)) from None
    report = copy.deepcopy(table.report)  # the cached table's report stays as built
    valid = _valid(table)
    train_mask = valid.copy()
    if d.train_split is not None:
        train_mask &= _split_rows(table, d.train_split, report, "other_split", d.train)
    tables = [table]
    if d.eval:
        etable = build_features(_spec(d, d.eval, d.eval_hub_split), featurizer,
                                **{**kw, "attributes": table.attributes})
        tables.append(etable)
        report.merge(etable.report)
        report.source = f"{d.train} + {d.eval}"
        emask = _valid(etable)
        if d.eval_split is not None:
            emask &= _split_rows(etable, d.eval_split, report, "other_split", d.eval)
        held = FeatureSet(etable, np.nonzero(emask)[0])
        eval_source = d.eval
    elif d.eval_split:
        held = FeatureSet(table, np.nonzero(valid & table.equals("split", d.eval_split))[0])
        eval_source = f"{d.train} split {d.eval_split}"
        if d.train_split is None:  # train on everything *except* the evaluation split
            train_mask &= _split_rows(table, d.eval_split, report, "eval_split", d.train, keep_equal=False)
    else:
        in_eval = holdout(table.column("prompt_hash"), d.eval_fraction, d.seed)
        held = FeatureSet(table, np.nonzero(in_eval & valid)[0])
        train_mask &= ~in_eval
        eval_source = f"{d.eval_fraction:.0%} of {d.train} held out by prompt (seed {d.seed})"
    train = drop_eval_overlap(FeatureSet(table, np.nonzero(train_mask)[0]), held, report)
    if not len(train):
        raise SplitError(f"no training examples left in {d.train} (see the data report)\n{report.format()}")
    _check_labels(train, needs.labels, needs.loss, d.train)
    _check_labels(held, needs.labels, needs.loss, eval_source)
    if d.mix:  # more sources, each checked and reported on its own, drawn with their weights
        parts, weights, names = [train], [1.0], [d.train]
        for m in d.mix:
            mt = build_features(SourceSpec(m.path, m.format or d.format, None, None, tuple(sorted(d.column_map.items())),
                                           d.on_invalid, d.annotations), featurizer,
                                **{**kw, "attributes": table.attributes})
            tables.append(mt)
            report.merge(mt.report)
            part = drop_eval_overlap(FeatureSet(mt, np.nonzero(_valid(mt))[0]), held, report)
            _check_labels(part, needs.labels, needs.loss, m.path)
            parts.append(part)
            weights.append(m.weight)
            names.append(m.name or m.path)
        train = MixedSet(parts, weights, names, d.seed)
        report.source = " + ".join(names) + (f" + {d.eval}" if d.eval else "")
        for name, c in train.counts.items():
            report._example("mixture", f"{name}: {c['examples']} examples, weight {c['weight']:g} → "
                                       f"{c['per_epoch']} per epoch")
    extra = {}
    for name, path in d.eval_sets.items():
        et = build_features(_spec(d, path, None), featurizer, **{**kw, "attributes": table.attributes})
        tables.append(et)
        extra[name] = FeatureSet(et, np.nonzero(_valid(et))[0])
        _check_labels(extra[name], needs.labels, needs.loss, path)
    attributes = ["reward"] if table.kind in ("pairs", "lists") else table.attributes
    truncated = sum(int(t.column("truncated").sum()) for t in tables)
    return Examples(train, held, table.kind, attributes, report, eval_source, truncated,
                    built=any(t.built for t in tables), tokenize_seconds=sum(t.tokenize_seconds for t in tables),
                    eval_sets=extra)


# what a user can do when a built-in label is missing (a label of a user's own loss is read from meta)
_LABEL_HINTS = {
    "margin": "It is the preference strength (HelpSteer2-Preference strengths, a TRL 'margin' column, "
              "NeMo BT strength): use a file that has one, or the 'bt' loss.",
    "target_prob": "It comes from per-annotator votes (a 'votes' list): use a file that has them, or the 'bt' loss.",
}
