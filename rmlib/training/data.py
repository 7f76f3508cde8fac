"""Training data: the run's splits (:func:`rmlib.data.splits.build_splits`), read the way its loss needs.

The loss declares what it reads (kind, labels, attributes, feature options); the data layer builds,
splits and checks the features from the data config, before a model is loaded. Here the config and
the loss meet: a data error is reported as a :class:`~rmlib.config.ConfigError`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from rmlib.config import Config, ConfigError
from rmlib.data.splits import (
    DataNeeds,
    Examples,
    SplitError,
    build_splits,
    drop_eval_overlap,
    holdout,
    member,
)
from rmlib.data.tokenize import Featurizer

__all__ = ["Examples", "data_fingerprint", "drop_eval_overlap", "featurizer_for", "holdout", "load_examples",
           "member", "prepare_features", "resolve_max_length"]


def load_examples(cfg: Config, featurizer: Featurizer) -> Examples:
    """Features of the training and evaluation sets (built or memory-mapped), split and checked."""
    from rmlib.losses import get_loss_class

    loss = get_loss_class(cfg.loss.name)
    attrs = list(cfg.model.attributes) if cfg.model.attributes else loss.data_attributes(cfg.loss.options)
    try:  # loss options that shape the features (the justifier's target and flip), part of the cache key
        data_options = loss.data_options(cfg.loss.options)
    except ValueError as e:
        raise ConfigError(f"config key 'loss.options': {e}") from None
    needs = DataNeeds(cfg.loss.name, loss.family, loss.data_kind, loss.labels, attrs, data_options)
    try:
        examples = build_splits(cfg.data, featurizer, needs)
    except SplitError as e:
        raise ConfigError(str(e)) from None
    if examples.kind in ("pairs", "lists") and cfg.model.attributes and len(cfg.model.attributes) != 1:
        raise ConfigError(f"{loss.family} losses train one output, got model.attributes={list(cfg.model.attributes)}")
    return examples


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
