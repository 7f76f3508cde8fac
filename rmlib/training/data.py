"""Training data: load, check against the loss, hold out an eval split, tokenize.

Everything that can fail because of the data fails here, before a model is loaded: a loss that
needs strengths on data without them, regression on a preference file, an empty split.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from rmlib.config import Config, ConfigError
from rmlib.data.labels import check_labels
from rmlib.data.schema import DataError, RatedResponse, ValidationReport


@dataclass
class Examples:
    train: list
    eval: list
    kind: str  # "pairs" | "ratings"
    attributes: list[str]
    report: ValidationReport
    eval_source: str


def _load(source: str, cfg: Config, hub_split: str | None, meta_split: str | None):
    from rmlib.data import formats

    local = Path(source).exists()
    loaded = formats.load(source, cfg.data.format, split=None if local else hub_split,
                          data_dir=None if local else cfg.data.data_dir,
                          column_map=dict(cfg.data.column_map) or None, on_invalid=cfg.data.on_invalid)
    examples = loaded.examples
    if meta_split is not None:
        kept = [e for e in examples if e.meta.get("split") == meta_split]
        for e in examples:
            if e.meta.get("split") != meta_split:
                loaded.report.filter("other_split", f"{source}: meta.split is {e.meta.get('split')!r}, "
                                     f"not {meta_split!r}")
        examples = kept
    return examples, loaded.kind, loaded.report


def _prompt_key(example) -> str:
    return hashlib.sha1(json.dumps(list(example.prompt), sort_keys=True).encode()).hexdigest()


def holdout(examples: list, fraction: float, seed: int) -> tuple[list, list]:
    """Seeded eval slice, split by prompt so no prompt appears on both sides."""
    keys = sorted({_prompt_key(e) for e in examples})
    random.Random(seed).shuffle(keys)
    n_eval = max(1, round(len(keys) * fraction))
    eval_keys = set(keys[:n_eval])
    train = [e for e in examples if _prompt_key(e) not in eval_keys]
    held = [e for e in examples if _prompt_key(e) in eval_keys]
    return train, held


def _content_key(example) -> str:
    d = example.to_dict()
    d.pop("meta", None)
    return json.dumps(d, sort_keys=True, default=str)


def drop_eval_overlap(train: list, held: list, report: ValidationReport) -> list:
    """Training rows identical to an evaluation row (meta aside) are removed and counted, so an
    evaluation file that shares rows with the training file cannot inflate held-out scores."""
    seen = {_content_key(e) for e in held}
    kept = [e for e in train if _content_key(e) not in seen]
    for _ in range(len(train) - len(kept)):
        report.filter("in_eval_set", "a training row identical to an evaluation row was removed from training")
    return kept


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


def load_examples(cfg: Config) -> Examples:
    """Read, split and check the data against the loss: the labels it declares must all be there."""
    from rmlib.losses import get_loss_class

    loss = get_loss_class(cfg.loss.name)
    d = cfg.data
    train, kind, report = _load(d.train, cfg, d.hub_split, d.train_split)
    if kind != loss.data_kind:
        raise ConfigError(f"loss '{cfg.loss.name}' is {loss.family} and needs {loss.data_kind} data, but "
                          f"{cfg.data.train} holds {kind}")
    if cfg.data.eval:
        held, _, eval_report = _load(d.eval, cfg, d.eval_hub_split, d.eval_split)
        report.merge(eval_report)
        report.source = f"{d.train} + {d.eval}"
        eval_source = cfg.data.eval
    elif cfg.data.eval_split:
        held, _, _ = _load(d.train, cfg, d.hub_split, d.eval_split)
        eval_source = f"{cfg.data.train} split {cfg.data.eval_split}"
        if d.train_split is None:  # train on everything *except* the evaluation split
            for e in train:
                if e.meta.get("split") == d.eval_split:
                    report.filter("eval_split", f"{d.train}: meta.split is {d.eval_split!r} (used for evaluation)")
            train = [e for e in train if e.meta.get("split") != d.eval_split]
    else:
        train, held = holdout(train, cfg.data.eval_fraction, cfg.data.seed)
        eval_source = f"{cfg.data.eval_fraction:.0%} of {cfg.data.train} held out by prompt (seed {cfg.data.seed})"
    train = drop_eval_overlap(train, held, report)
    if not train:
        raise ConfigError(f"no training examples left in {cfg.data.train} (see the data report)")
    attributes = list(cfg.model.attributes) if cfg.model.attributes else _default_attributes(kind, train)
    for split, examples in (("training", train), ("evaluation", held)):
        try:
            check_labels(examples, loss.labels, f"{eval_source if split == 'evaluation' else d.train} ({split} "
                         "examples, 0-based after splitting)", attributes)
        except DataError as e:
            raise ConfigError(f"loss '{cfg.loss.name}' consumes the label '{e.field}' on every example; {e}. "
                              + _LABEL_HINTS.get(e.field or "", "")) from None
    if kind == "pairs" and len(attributes) != 1:
        raise ConfigError(f"pairwise losses train one output, got model.attributes={attributes}")
    return Examples(train, held, kind, attributes, report, eval_source)


# what a user can do when a built-in label is missing (a label of a user's own loss is read from meta)
_LABEL_HINTS = {
    "margin": "It is the preference strength (HelpSteer2-Preference strengths, a TRL 'margin' column, "
              "NeMo BT strength): use a file that has one, or the 'bt' loss.",
    "target_prob": "It comes from per-annotator votes (a 'votes' list): use a file that has them, or the 'bt' loss.",
}


def _default_attributes(kind: str, train: list) -> list[str]:
    if kind == "pairs":
        return ["reward"]
    names: list[str] = []
    for e in train:
        assert isinstance(e, RatedResponse)
        names += [a for a in e.attributes if a not in names]
    return names
