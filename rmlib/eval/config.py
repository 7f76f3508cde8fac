"""The typed configuration of ``rmlib eval``: one dataclass tree per suite, loaded like ``rmlib train``'s.

``rmlib eval MODEL --suite pairs --data FILE [--config eval.yaml] [key=value ...]`` merges the defaults
below ← the YAML file ← ``--data`` ← the dotted ``key=value`` overrides (``batch_size=32``,
``options.group_column=task``, ``heads.weights.helpfulness=1``). ``options`` is the suite's own options
dataclass, so an option another suite takes is as much an unknown key as a typo.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmlib.config import ConfigError, load_structured
from rmlib.eval.registry import Suite, get_suite

__all__ = ["EvalConfig", "HeadsConfig", "JudgeConfig", "eval_schema", "load_eval_config"]


@dataclass
class HeadsConfig:
    weights: Any = field(default=None, metadata={
        "help": "combine the heads of a multi-head model into the reward: by name {helpfulness: 1, "
                "verbosity: -0.5} (unnamed heads weigh 0) or by position [1, 0, 0, 0, -0.5]; required for "
                "a multi-head model except by per-head suites (agreement)"})
    search: bool = field(default=False, metadata={
        "help": "rewardbench only: search the head weights on a grid from -1 to 1 (HelpSteer2-Preference's "
                "5-attribute weighting) for the best overall score, on scores computed once, and report with them"})
    search_step: float = field(default=0.1, metadata={"help": "grid step of heads.search"})


@dataclass
class JudgeConfig:
    both_orders: bool = field(default=False, metadata={
        "help": "generative judges (a causal-LM MODEL): judge each pair in both orders and report the accuracy "
                "per order, position bias and JudgeBench two-game netting"})
    max_new_tokens: int = field(default=256, metadata={"help": "generative judges: token cap of each judgement"})
    seed: int = field(default=0, metadata={
        "help": "generative judges, one order: seed of the coin that puts the chosen response first or second"})


@dataclass
class EvalConfig:
    data: str | None = field(default=None, metadata={
        "help": "benchmark file (.jsonl/.json/.parquet/.csv, optionally .gz), directory, or hub dataset name"})
    split: str | None = field(default=None, metadata={
        "help": "split of a hub dataset or directory (default: the suite's, e.g. 'filtered' for rewardbench)"})
    batch_size: int = field(default=16, metadata={"help": "sequences per forward pass when scoring"})
    max_length: int | None = field(default=None, metadata={
        "help": "longest tokenized prompt + response; null: the model's position limit, at most 1024"})
    trust_remote_code: bool = field(default=False, metadata={"help": "passed to from_pretrained"})
    reward_token: str = field(default="auto", metadata={
        "help": "where a reward model's reward is read: auto (rmlib checkpoints: the end-of-response token; a "
                "decoder trained elsewhere with pad == eos, as TRL's RewardTrainer does: the token before the "
                "final eos), end, or last_non_pad"})
    heads: HeadsConfig = field(default_factory=HeadsConfig, metadata={"help": "multi-head models"})
    judge: JudgeConfig = field(default_factory=JudgeConfig, metadata={
        "help": "generative judges (Pairwise Justifier): a MODEL whose config names a *ForCausalLM architecture"})
    options: Any = field(default=None, metadata={"help": "the suite's options (rmlib eval --help lists them)"})


def eval_schema(suite: str | Suite) -> type:
    """:class:`EvalConfig` with ``options`` typed as the suite's options dataclass."""
    s = get_suite(suite)
    name = "".join(part.title() for part in re.split(r"\W+", s.name) if part) + "EvalConfig"
    return dataclasses.make_dataclass(name, [("options", s.options, field(default_factory=s.options))],
                                      bases=(EvalConfig,))


def load_eval_config(suite: str | Suite, path: str | Path | None = None, overrides: list[str] | None = None,
                     base: dict | None = None) -> EvalConfig:
    """Defaults ← YAML ``path`` ← ``base`` ← ``key=value`` overrides, typed by :func:`eval_schema`.

    An unknown key, a wrong type or a value the suite's options reject is a :class:`ConfigError` naming
    the key; head weights are normalised to a {name: float} dict or a list of floats.
    """
    s = get_suite(suite)
    try:
        cfg = load_structured(eval_schema(s), path, overrides, base)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"config key 'options' ({s.name}): {e}") from None
    cfg.heads.weights = _weights(cfg.heads.weights)
    if cfg.heads.search and (s.name != "rewardbench" or cfg.heads.weights is not None or cfg.heads.search_step <= 0):
        raise ConfigError("config key 'heads.search': needs --suite rewardbench, no heads.weights and "
                          f"heads.search_step > 0 (got suite {s.name!r}, step {cfg.heads.search_step})")
    tokens = ("auto", "end", "last_non_pad")  # rmlib.models.reward_model.REWARD_TOKENS (models sit below eval)
    if cfg.reward_token not in tokens:
        raise ConfigError(f"config key 'reward_token': must be one of {tokens}, got {cfg.reward_token!r}")
    if cfg.batch_size < 1 or (cfg.max_length is not None and cfg.max_length < 1):
        raise ConfigError(f"config keys 'batch_size', 'max_length': must be >= 1, got {cfg.batch_size}, "
                          f"{cfg.max_length}")
    return cfg


def _weights(w: Any) -> dict[str, float] | list[float] | None:
    if w is None:
        return None
    try:
        if isinstance(w, Mapping):
            return {str(k): float(v) for k, v in w.items()}
        if isinstance(w, (list, tuple)):
            return [float(v) for v in w]
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config key 'heads.weights': {e}") from None
    raise ConfigError(f"config key 'heads.weights': give {{head name: weight}} or a list of weights, got {w!r}")
