"""Training data: features for the training and evaluation sets, checked against the loss.

Everything that can fail because of the data fails here, before a model is loaded: regression on
a preference file, a loss label the data lacks, an empty split. Features come from the Arrow
feature cache (``rmlib.data.features``): built once by the main process, memory-mapped by every
rank and every later run. Splitting, hold-out and the train/eval overlap check only choose row
numbers, from the hash columns, with numpy.
"""

from __future__ import annotations

import array
import copy
import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rmlib.config import Config, ConfigError
from rmlib.data.features import (
    LIST_LABELS,
    FeatureSet,
    FeatureTable,
    KindMismatch,
    MixedSet,
    SourceSpec,
    build_features,
)
from rmlib.data.schema import ValidationReport
from rmlib.data.tokenize import Featurizer


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


def _spec(cfg: Config, source: str, hub_split: str | None, *, training: bool = False) -> SourceSpec:
    """How a source is read; only training sources are expanded to every annotation (``data.annotations``)."""
    d = cfg.data
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
            raise ConfigError(f"loss '{loss_name}' consumes the label '{name}' on every example; {source}: "
                              f"example {first} (0-based, after reading) has none ({len(missing)} without it). "
                              + _LABEL_HINTS.get(name, "Put it in each example's meta."))


def load_examples(cfg: Config, featurizer: Featurizer) -> Examples:
    """Features of the training and evaluation sets (built or memory-mapped), split and checked."""
    from rmlib.losses import get_loss_class

    loss = get_loss_class(cfg.loss.name)
    d = cfg.data
    attrs = list(cfg.model.attributes) if cfg.model.attributes else loss.data_attributes(cfg.loss.options)
    try:  # loss options that shape the features (the justifier's target and flip), part of the cache key
        data_options = loss.data_options(cfg.loss.options)
    except ValueError as e:
        raise ConfigError(f"config key 'loss.options': {e}") from None
    kw = dict(labels=loss.labels, attributes=attrs, cache_dir=d.cache_dir, num_proc=d.num_proc,
              expect_kind=(loss.data_kind, f"loss '{cfg.loss.name}' is {loss.family} and needs {loss.data_kind} data"),
              data_options=data_options)
    try:
        table = build_features(_spec(cfg, d.train, d.hub_split, training=True), featurizer, **kw)
    except KindMismatch as e:
        raise ConfigError(str(e)) from None
    report = copy.deepcopy(table.report)  # the cached table's report stays as built
    valid = _valid(table)
    train_mask = valid.copy()
    if d.train_split is not None:
        train_mask &= _split_rows(table, d.train_split, report, "other_split", d.train)
    tables = [table]
    if d.eval:
        etable = build_features(_spec(cfg, d.eval, d.eval_hub_split), featurizer,
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
        raise ConfigError(f"no training examples left in {d.train} (see the data report)\n{report.format()}")
    _check_labels(train, loss.labels, cfg.loss.name, d.train)
    _check_labels(held, loss.labels, cfg.loss.name, eval_source)
    if d.mix:  # more sources, each checked and reported on its own, drawn with their weights
        parts, weights, names = [train], [1.0], [d.train]
        for m in d.mix:
            mt = build_features(SourceSpec(m.path, m.format or d.format, None, None, tuple(sorted(d.column_map.items())),
                                           d.on_invalid, d.annotations), featurizer,
                                **{**kw, "attributes": table.attributes})
            tables.append(mt)
            report.merge(mt.report)
            part = drop_eval_overlap(FeatureSet(mt, np.nonzero(_valid(mt))[0]), held, report)
            _check_labels(part, loss.labels, cfg.loss.name, m.path)
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
        et = build_features(_spec(cfg, path, None), featurizer, **{**kw, "attributes": table.attributes})
        tables.append(et)
        extra[name] = FeatureSet(et, np.nonzero(_valid(et))[0])
        _check_labels(extra[name], loss.labels, cfg.loss.name, path)
    if table.kind in ("pairs", "lists") and cfg.model.attributes and len(cfg.model.attributes) != 1:
        raise ConfigError(f"{loss.family} losses train one output, got model.attributes={list(cfg.model.attributes)}")
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


def resolve_max_length(cfg: Config) -> int:
    """``data.max_length`` checked against the model's position limit (from its config.json alone)
    and written back into the config, so features, the model and the saved config agree."""
    from transformers import AutoConfig

    from rmlib.io import resolve_model
    from rmlib.models.lora import is_adapter_dir, read_info
    from rmlib.models.reward_model import resolve_max_length as resolve

    m, d = cfg.model, cfg.data
    src = resolve_model(m.name_or_path)
    if is_adapter_dir(src):  # a LoRA run's output: the limit is its base model's
        src = resolve_model(read_info(src)["base_model"])
    try:
        config = AutoConfig.from_pretrained(src, trust_remote_code=m.trust_remote_code)
    except (OSError, ValueError) as e:
        raise ConfigError(f"config key 'model.name_or_path': cannot read a model config from {m.name_or_path}: "
                          f"{str(e).splitlines()[0]}") from None
    try:
        d.max_length = resolve(d.max_length, config, "data.max_length")
    except ValueError as e:
        raise ConfigError(f"config key {e}") from None
    return d.max_length


def featurizer_for(cfg: Config) -> Featurizer:
    """The tokenizer of the run's model, with the run's length and truncation settings."""
    from rmlib.models.reward_model import load_tokenizer

    m, d = cfg.model, cfg.data
    return Featurizer(load_tokenizer(m.name_or_path, trust_remote_code=m.trust_remote_code), d.max_length,
                      d.keep_system)


def prepare_features(cfg: Config) -> Examples:
    """Build (or find) a config's feature caches ahead of training, e.g. on a CPU machine before a GPU job."""
    resolve_max_length(cfg)
    return load_examples(cfg, featurizer_for(cfg))


def data_fingerprint(cfg: Config) -> str:
    """SHA-256 over the training and evaluation files' bytes (a hub id stands for itself).

    Why content and not names: a file rewritten in place under the same name is other data, and a
    resumed run must not silently continue on it.
    """
    h = hashlib.sha256()
    for source in (cfg.data.train, cfg.data.eval):
        if not source:
            continue
        p = Path(source).expanduser()
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p] if p.is_file() else []
        h.update(str(source).encode() if not files else b"")
        for f in files:
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()
