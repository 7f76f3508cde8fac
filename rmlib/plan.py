"""Predict the peak accelerator memory of a LoRA / QLoRA reward-model run, and pick settings that fit.

Why a formula and not a trial run: the question "does an 8B reward model train on my 24 GiB GPU,
and with which micro-batch?" should be answered before the model is downloaded. The estimate is
built from the model's exact parameter shapes (the model is instantiated on the ``meta`` device,
which allocates nothing) plus per-token activation coefficients measured with autograd's
saved-tensor hooks (see ``docs/lora.md``). All terms are in bytes:

* ``weights``: frozen base. Linear layers outside the head at 4 bits are ``n/2`` bytes plus the
  nf4 block statistics (one absmax per 64 weights: fp32 = ``n/16`` bytes, or with double
  quantization uint8 = ``n/64`` plus fp32 per 256 blocks = ``n/4096``, and ~1.1 kB of lookup tables
  per layer); at 8 bits ``n`` bytes plus
  one fp32 scale per output row. Everything else is stored in the base dtype, except that QLoRA's
  ``prepare_model_for_kbit_training`` casts every non-quantized tensor (embeddings, norms) to fp32.
* ``lora_params``: ``r * (in + out)`` per adapted linear layer, fp32 (4 bytes); plus the reward
  head (``num_labels * hidden`` (+ a pooler's ``hidden**2 + hidden``)), fp32 as well.
* ``grads``: one fp32 gradient per trainable parameter (4 bytes each).
* ``optimizer``: AdamW's two fp32 moments (8 bytes per trainable parameter).
* ``activations``: tokens ``T = micro_batch * sequences_per_item * seq_len`` (a preference pair is
  two sequences). Per token and block, with bf16 compute, autograd keeps
  ``A = 16 h + 8 I + 4 kv_dim + 19 r`` bytes (``36 h + 10 I + 4 kv_dim + 19 r`` with LoRA dropout,
  which stores a dropped copy of every adapted layer's input); ``h`` hidden size, ``I`` MLP width,
  ``kv_dim`` = key/value heads x head dim. Without gradient checkpointing all ``L`` blocks are
  kept: ``L * T * A``. With it only each block's input is kept (``L * T * h * b``, ``b`` bytes
  per activation element) plus one block recomputed during backward (``T * A``). Another
  ``T * (4 h + 2 I) * b`` covers the backward's transient activation gradients, and
  ``T * h * b`` the embedding output. fp32 compute doubles the ``h``/``I`` terms. Under the
  trainer's bf16 autocast over fp32 adapters (``mixed_precision=True``, the default) ``A`` is
  ``15.25 h + 11.93 I + 4 kv_dim + 19 r`` (bf16 base) or ``15.25 h + 17.93 I + ...`` (QLoRA), measured
  at the 8B width; under QLoRA the residual stream is fp32, so the checkpointed block inputs and
  the embedding output take 4 bytes per element.
* ``overhead``: CUDA context and cuBLAS workspaces (512 MiB) plus 5 % allocator fragmentation.

``total`` is the sum. ``peak_allocated`` (``total`` without ``overhead``) is what
``torch.cuda.max_memory_allocated()`` reports. The activation coefficients were measured on CPU;
the GPU calibration (an 8B-shaped model at 4k tokens) is still pending, see ``docs/lora.md``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rmlib.io import resolve_model, torch_dtype

GIB = 1024 ** 3
# Shapes of common backbones, so a plan needs neither the network nor the weights. Values are the
# published config.json fields; any local config or cached hub config can be used instead.
PRESETS: dict[str, dict[str, Any]] = {
    "meta-llama/Llama-3.1-8B": {
        "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False},
    "Qwen/Qwen2.5-7B": {
        "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": False},
}
PRESETS["meta-llama/Llama-3.1-8B-Instruct"] = PRESETS["meta-llama/Llama-3.1-8B"]
PRESETS["meta-llama/Meta-Llama-3-8B-Instruct"] = PRESETS["meta-llama/Llama-3.1-8B"]
PRESETS["Qwen/Qwen2.5-7B-Instruct"] = PRESETS["Qwen/Qwen2.5-7B"]

CONTEXT_BYTES = 512 * 1024 ** 2
FRAGMENTATION = 0.05


@dataclass
class Estimate:
    """Predicted peak memory, in bytes per term (see the module docstring for each formula)."""

    weights: int
    lora_params: int
    grads: int
    optimizer: int
    activations: int
    overhead: int
    trainable_params: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def peak_allocated(self) -> int:
        return self.weights + self.lora_params + self.grads + self.optimizer + self.activations

    @property
    def total(self) -> int:
        return self.peak_allocated + self.overhead

    def gib(self) -> dict[str, float]:
        terms = ("weights", "lora_params", "grads", "optimizer", "activations", "overhead")
        out = {t: round(getattr(self, t) / GIB, 3) for t in terms}
        out["total"] = round(self.total / GIB, 3)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total, "peak_allocated": self.peak_allocated, "gib": self.gib()}


@dataclass
class _Shape:
    hidden: int
    intermediate: int
    layers: int
    kv_dim: int
    targets: list[tuple[int, int]]  # (in, out) of every adapted linear layer
    quantizable: int  # parameters in linear layers outside the head (what bitsandbytes quantizes)
    quantizable_rows: int  # their output rows (8-bit keeps one fp32 scale per row)
    quantizable_modules: int  # their number (each 4-bit layer carries its own small lookup tables)
    other: int  # every other base parameter (embeddings, norms)
    head: int  # reward head (+ pooler) parameters


def load_model_config(config_or_dict: Any, num_labels: int = 1):
    """A transformers config from a config object, a dict, a directory or config.json path, a
    preset name (``PRESETS``) or a hub name already in the local cache."""
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(config_or_dict, PretrainedConfig):
        cfg = config_or_dict
    elif isinstance(config_or_dict, dict):
        d = dict(config_or_dict)
        cfg = AutoConfig.for_model(d.pop("model_type"), **d)
    else:
        src = str(config_or_dict)
        p = Path(src)
        if p.is_file():
            return load_model_config(json.loads(p.read_text()), num_labels)
        if src in PRESETS and not p.exists():
            return load_model_config(PRESETS[src], num_labels)
        cfg = AutoConfig.from_pretrained(resolve_model(src))  # aliases (minilm-l6), local dirs, hub ids
    cfg.num_labels = num_labels
    return cfg


def _shape(cfg, target_modules: list[str] | None) -> _Shape:
    """Exact parameter shapes from a model built on the meta device (no memory is allocated)."""
    import re

    import torch
    from torch import nn
    from transformers import AutoModelForSequenceClassification

    from rmlib.models.lora import _is_linear, default_target_modules, head_module_names

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(cfg)
    heads = head_module_names(model)
    head_prefixes = [f"{model.base_model_prefix}.pooler" if h == "pooler" else h for h in heads]

    def in_head(name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in head_prefixes)

    pattern = default_target_modules(model) if not target_modules else None
    targets, quantizable, rows, modules, linear_params = [], 0, 0, 0, set()
    for name, mod in model.named_modules():
        if not _is_linear(mod) or in_head(name):
            continue
        w = mod.weight
        out_f, in_f = (w.shape[0], w.shape[1]) if isinstance(mod, nn.Linear) else (w.shape[1], w.shape[0])
        quantizable += w.numel()
        rows += out_f
        modules += 1
        linear_params.add(id(w))
        hit = re.fullmatch(pattern, name) if pattern else any(name == t or name.endswith("." + t)
                                                               for t in target_modules)
        if hit:
            targets.append((in_f, out_f))
    head = sum(p.numel() for n, p in model.named_parameters() if in_head(n))
    other = sum(p.numel() for n, p in model.named_parameters() if id(p) not in linear_params and not in_head(n))
    hidden = cfg.hidden_size
    heads_n = getattr(cfg, "num_attention_heads", 1)
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads_n
    kv = getattr(cfg, "num_key_value_heads", None) or heads_n
    inter = getattr(cfg, "intermediate_size", None) or 4 * hidden
    return _Shape(hidden, inter, cfg.num_hidden_layers, kv * head_dim, targets, quantizable, rows, modules, other,
                  head)


# Per-token, per-block bytes under the trainer's bf16 autocast with fp32 adapters and head (see
# block_activation_bytes): (h, I) coefficients for a bf16 base and for a 4-bit (QLoRA) base; 8-bit
# takes the 4-bit values (same fp32 stream and input casts), not measured.
AUTOCAST_COEFFS = {"none": (15.25, 11.93), "4bit": (15.25, 17.93), "8bit": (15.25, 17.93)}


def block_activation_bytes(hidden: int, intermediate: int, kv_dim: int, lora_rank: int, dtype_bytes: int = 2, *,
                           lora_dropout: bool = False, autocast: str | None = None) -> float:
    """Bytes autograd keeps per token for one transformer block with LoRA on every projection.

    Measured with ``torch.autograd.graph.saved_tensors_hooks`` on Llama-style blocks in bf16
    (least squares over five shapes, residual < 3 bytes): ``16 h + 8 I + 4 kv_dim + 19 r``, or
    ``36 h + 10 I + ...`` with LoRA dropout. The ``h``/``I`` terms scale with the activation dtype.

    ``autocast`` (the base's quantization: ``"none"``, ``"4bit"``, ``"8bit"``) selects the
    trainer's real setting instead: bf16 autocast over fp32 LoRA weights (every adapter input gets
    its own bf16 cast) and, under QLoRA, fp32 embeddings and norms (the residual stream is fp32).
    Measured the same way at the Llama-3.1-8B width (h 4096, I 14336) and at h 256 / I 704, both
    exactly fitted: ``15.25 h + 11.93 I`` (bf16 base) and ``15.25 h + 17.93 I`` (4-bit base), plus
    the same ``4 kv_dim + 19 r``: 1.29x and 1.75x the plain-bf16 formula at the 8B width
    (``bench/memory_shapes.py``, docs/lora.md). LoRA dropout adds the plain formula's difference
    (``20 h + 2 I``), not re-measured under autocast.
    """
    if autocast is not None:
        a_h, a_i = AUTOCAST_COEFFS[autocast]
        extra = (20 * hidden + 2 * intermediate) if lora_dropout else 0  # the plain formula's dropout copies
        return a_h * hidden + a_i * intermediate + extra + 4 * kv_dim + 19 * lora_rank
    scale = dtype_bytes / 2
    return (((36 if lora_dropout else 16) * hidden + (10 if lora_dropout else 8) * intermediate) * scale
            + 4 * kv_dim + 19 * lora_rank)


def estimate_memory(config_or_dict: Any, lora_rank: int = 16, quantization: str = "none", seq_len: int = 4096,
                    micro_batch: int = 1, gradient_checkpointing: bool = True, *, dtype: str = "bfloat16",
                    sequences_per_item: int = 2, lora_dropout: bool = False, double_quant: bool = True,
                    target_modules: list[str] | None = None, num_labels: int = 1,
                    mixed_precision: bool = True) -> Estimate:
    """Peak memory of one process training a LoRA (``quantization="none"``) or QLoRA reward model.

    ``micro_batch`` counts items (pairs for pairwise losses: ``sequences_per_item=2``; rows for
    regression: 1); ``seq_len`` is the padded length of each sequence. ``dtype`` is the compute
    and base-weight dtype (bf16 on GPU). ``mixed_precision``: the trainer's bf16 autocast over fp32
    adapters (``train.mixed_precision: bf16``), whose activation coefficients were measured at
    8B width; applies when ``dtype`` is 16-bit. Formulas: see the module docstring.
    """
    if quantization not in ("none", "4bit", "8bit"):
        raise ValueError(f"quantization must be none, 4bit or 8bit, got {quantization!r}")
    s = config_or_dict if isinstance(config_or_dict, _Shape) else _shape(
        load_model_config(config_or_dict, num_labels), target_modules)
    b = torch_dtype(dtype).itemsize
    if quantization == "4bit":
        stats = s.quantizable / 64 + s.quantizable / (64 * 256) * 4 if double_quant else s.quantizable / 64 * 4
        stats += s.quantizable_modules * (1100 if double_quant else 68)  # nf4 table (+ the 8-bit table of the nesting)
        weights = s.quantizable / 2 + stats + s.other * 4  # prepare_model_for_kbit_training: the rest in fp32
    elif quantization == "8bit":
        weights = s.quantizable + s.quantizable_rows * 4 + s.other * 4
    else:
        weights = (s.quantizable + s.other) * b
    lora = sum(lora_rank * (i + o) for i, o in s.targets)
    trainable = lora + s.head
    tokens = micro_batch * sequences_per_item * seq_len
    h, inter, kv = s.hidden, s.intermediate, s.kv_dim
    autocast = quantization if mixed_precision and b == 2 else None
    per_block = block_activation_bytes(h, inter, kv, lora_rank, b, lora_dropout=lora_dropout, autocast=autocast)
    # QLoRA: prepare_model_for_kbit_training keeps embeddings and norms in fp32, so the residual
    # stream (each checkpointed block input, the embedding output) is fp32 whatever the compute dtype
    stream = 4 if quantization != "none" else b
    if gradient_checkpointing:
        acts = s.layers * tokens * h * stream + tokens * per_block
    else:
        acts = s.layers * tokens * per_block
    acts += tokens * (4 * h + 2 * inter) * b + tokens * h * stream
    sub = weights + trainable * 4 + trainable * 4 + trainable * 8 + acts
    return Estimate(weights=int(weights), lora_params=int(trainable * 4), grads=int(trainable * 4),
                    optimizer=int(trainable * 8), activations=int(acts),
                    overhead=int(CONTEXT_BYTES + FRAGMENTATION * sub), trainable_params=int(trainable),
                    settings={"lora_rank": lora_rank, "quantization": quantization, "seq_len": seq_len,
                              "micro_batch": micro_batch, "gradient_checkpointing": gradient_checkpointing,
                              "dtype": dtype, "sequences_per_item": sequences_per_item,
                              "lora_dropout": lora_dropout, "mixed_precision": mixed_precision})


def recommend(model_config: Any, budget_gib: float, seq_len: int = 4096, *, ranks: tuple[int, ...] = (16, 32, 64),
              micro_batches: tuple[int, ...] = (1, 2, 4, 8), headroom: float = 0.1,
              **kwargs: Any) -> list[Estimate]:
    """Every (quantization, checkpointing, micro-batch, rank) whose estimate fits in
    ``budget_gib * (1 - headroom)`` (the headroom stands for the estimator's error until it is
    calibrated on a GPU), best first: full-precision base before 8-bit before 4-bit (quality), then no checkpointing
    (speed), then the larger micro-batch (throughput; accumulate to reach the global batch), then
    the larger rank."""
    shape = _shape(load_model_config(model_config, kwargs.pop("num_labels", 1)), kwargs.pop("target_modules", None))
    fits = []
    for q in ("none", "8bit", "4bit"):
        for gc in (False, True):
            for mb in micro_batches:
                for r in ranks:
                    e = estimate_memory(shape, r, q, seq_len, mb, gc, **kwargs)
                    if e.total <= budget_gib * (1 - headroom) * GIB:
                        fits.append(e)
    order = {"none": 0, "8bit": 1, "4bit": 2}
    fits.sort(key=lambda e: (order[e.settings["quantization"]], e.settings["gradient_checkpointing"],
                             -e.settings["micro_batch"], -e.settings["lora_rank"]))
    return fits


def format_plan(model: str, estimates: list[Estimate], budget_gib: float, limit: int = 8) -> str:
    lines = [f"{model}: {len(estimates)} setting(s) fit in {budget_gib:g} GiB with 10% headroom "
             "(estimates, not yet GPU-calibrated: see docs/lora.md)",
             f"{'quant':>5} {'ckpt':>4} {'micro':>5} {'rank':>4} {'weights':>8} {'train':>7} {'acts':>7} "
             f"{'total':>7} GiB"]
    for e in estimates[:limit]:
        s, g = e.settings, e.gib()
        train = g["lora_params"] + g["grads"] + g["optimizer"]
        lines.append(f"{s['quantization']:>5} {'yes' if s['gradient_checkpointing'] else 'no':>4} "
                     f"{s['micro_batch']:>5} {s['lora_rank']:>4} {g['weights']:>8.2f} {train:>7.2f} "
                     f"{g['activations']:>7.2f} {g['total']:>7.2f}")
    return "\n".join(lines)


def estimate_for_config(train_config: str | Path, sequences_per_item: int = 2) -> Estimate:
    """The estimate for exactly the settings of an rmlib training YAML (model, LoRA, lengths, batch)."""
    from rmlib.config import load_config

    c = load_config(train_config, check_sources=False)
    lo = c.model.lora
    if not lo.enabled:
        raise ValueError(f"{train_config}: the estimator covers LoRA runs (model.lora.enabled=true)")
    return estimate_memory(c.model.name_or_path, lo.r, lo.quantization, c.data.max_length,
                           c.train.per_device_batch_size, c.model.gradient_checkpointing, dtype=c.model.dtype,
                           sequences_per_item=sequences_per_item, lora_dropout=lo.dropout > 0,
                           double_quant=lo.double_quant, target_modules=lo.target_modules,
                           mixed_precision=c.train.mixed_precision in ("bf16", "fp16"))


def add_cli_arguments(p) -> None:
    p.add_argument("model", help="a LoRA training YAML, model directory, config.json, a cached hub name or a "
                                 "preset: " + ", ".join(PRESETS))
    p.add_argument("--seq-len", type=int, default=None,
                   help="tokens per sequence (padded length; default: the YAML's data.max_length, else 4096)")
    p.add_argument("--budget", type=float, default=24.0, help="GiB available on one device")
    p.add_argument("--rank", type=int, default=None, help="only this LoRA rank")
    p.add_argument("--micro-batch", type=int, default=None, help="only this micro-batch (items)")
    p.add_argument("--sequences-per-item", type=int, default=2, help="2 for preference pairs, 1 for ratings")
    p.add_argument("--json", action="store_true", help="print every fitting estimate as JSON")


def cli(args) -> int:
    kw = {"sequences_per_item": args.sequences_per_item}
    if args.rank:
        kw["ranks"] = (args.rank,)
    if args.micro_batch:
        kw["micro_batches"] = (args.micro_batch,)
    model, seq_len, own = args.model, args.seq_len, None
    if model.endswith((".yaml", ".yml")):
        from rmlib.config import load_config

        own = estimate_for_config(model, args.sequences_per_item)
        cfg = load_config(model, check_sources=False)
        model, seq_len = cfg.model.name_or_path, seq_len or cfg.data.max_length
    fits = recommend(model, args.budget, seq_len or 4096, **kw)
    if args.json:
        print(json.dumps({"config": own.to_dict() if own else None, "fits": [e.to_dict() for e in fits]}, indent=2))
        return 0 if fits else 1
    if own is not None:
        verdict = "fits" if own.total <= args.budget * GIB else "does NOT fit"
        print(f"{args.model}: estimated peak {own.gib()['total']:.2f} GiB, {verdict} in {args.budget:g} GiB "
              f"({', '.join(f'{k} {v:.2f}' for k, v in own.gib().items() if k != 'total')})")
    print(format_plan(model, fits, args.budget))
    return 0 if fits else 1
