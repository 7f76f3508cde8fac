"""LoRA and QLoRA reward models whose reward head is trained in full and saved, by construction.

The failure other libraries ship most often with LoRA reward models is a reward head that is
frozen, given a low-rank adapter of its own, or left out of the saved adapter, so that the
reloaded model scores with a freshly initialised head. Here the head is not a setting:

* the head modules are read from the module tree (every top-level child of the
  ``*ForSequenceClassification`` other than its backbone, plus a backbone ``pooler``) and always go
  to PEFT's ``modules_to_save``: trained in full and written whole into the adapter file;
* the default target modules are the linear layers inside the repeated transformer blocks,
  found by structure (never by model name), so no head layer can be targeted by accident; a
  user list that reaches into the head is refused;
* :func:`verify_head` runs after every wrap and load and raises unless each head parameter is
  trainable (when training) and no LoRA parameter sits inside the head;
* every save (:func:`save_checked`, :func:`merge_adapter`) scores a fixed probe batch, reloads
  what it wrote, scores again and raises on a mismatch. Files go to ``<dir>.tmp`` and are
  published (:func:`rmlib.io.publish_dir`) only after the check passed, so a failed save leaves
  the previous output untouched.

Merging (``rmlib export``) goes through the library's one LoRA merge, :mod:`rmlib.models.merge`,
which streams base and adapter tensor by tensor. :class:`RewardModel.from_pretrained
<rmlib.models.reward_model.RewardModel>` loads adapter directories through the loader this module
registers on import, so imports go one way: ``lora`` → ``reward_model``.

Trainable weights (LoRA and head) are kept in float32 whatever the base dtype: the optimizer
then updates full-precision weights, and a bf16 base + fp32 head needs only the input cast that
:func:`_upcast_head` installs.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from rmlib.io import dtype_name, publish_dir, staging_dir, torch_dtype
from rmlib.models.contract import require_export_contract
from rmlib.models.distribution import DISTRIBUTION_KEY, distribution_from_config
from rmlib.models.merge import ADAPTER_CONFIG, is_adapter_dir, open_adapter, write_merged
from rmlib.models.reward_model import RewardModel, as_messages
from rmlib.runtime import enable_checkpointing, without_zero3_init, zero3_enabled

if TYPE_CHECKING:  # pragma: no cover
    from rmlib.config import LoraSettings

INFO_FILE = "rmlib.json"
# Fixed (prompt, response) pairs scored before and after every save; lengths differ on purpose so
# the probe batch has padding.
PROBE = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("Sort the list 3 1 2.", "1 2 3"),
    ("Answer yes or no: is 7 a prime number?", "yes"),
    ("Convert 10 meters to feet, please.", "10 meters is about 32.8 feet, since one meter is 3.28 feet."),
]
_RUN_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class SaveCheckError(RuntimeError):
    """A saved model does not score the probe batch as the model in memory did."""


class HeadNotTrainedError(RuntimeError):
    """The reward head would be frozen, adapted or left out of the save."""


# -- the module tree ---------------------------------------------------------------------------

def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def head_module_names(hf: nn.Module) -> list[str]:
    """Names of the reward head modules: top-level children other than the backbone, plus a
    backbone ``pooler`` (BERT's pooler feeds the classifier and is new/task-specific weight too)."""
    prefix = hf.base_model_prefix
    names = [n for n, c in hf.named_children() if n != prefix and _has_params(c)]
    pooler = getattr(getattr(hf, prefix, None), "pooler", None)
    if isinstance(pooler, nn.Module) and _has_params(pooler):
        names.append("pooler")
    if not names:
        raise HeadNotTrainedError(f"{type(hf).__name__} has no reward head outside its backbone '{prefix}'")
    return names


def _head_modules(hf: nn.Module) -> dict[str, nn.Module]:
    prefix = hf.base_model_prefix
    return {n: getattr(hf, prefix).pooler if n == "pooler" else getattr(hf, n)
            for n in head_module_names(hf)}


def _is_linear(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"  # bnb Linear4bit/8bitLt subclass Linear


def default_target_modules(hf: nn.Module) -> str:
    """A regex over module names: every linear layer inside the backbone's repeated blocks.

    The blocks are the ``nn.ModuleList`` of identical modules holding the most linear layers
    (Llama's ``model.layers``, BERT's ``bert.encoder.layer``): that gives all attention and MLP
    projections of a decoder (q/k/v/o, gate/up/down) and query/key/value/dense of a BERT encoder,
    and can never reach the head or the pooler, which live outside the blocks.
    """
    prefix = hf.base_model_prefix
    backbone = getattr(hf, prefix)
    best: tuple[int, str, list[str]] | None = None
    for name, mod in backbone.named_modules():
        if not isinstance(mod, nn.ModuleList) or len(mod) == 0 or len({type(b) for b in mod}) != 1:
            continue
        linears = [n for b in mod for n, m in b.named_modules() if _is_linear(m)]
        if linears and (best is None or len(linears) > best[0]):
            best = (len(linears), name, sorted({n.rsplit(".", 1)[-1] for n in linears}))
    if best is None:
        raise ValueError(f"found no repeated blocks with linear layers in {type(hf).__name__}; "
                         "set model.lora.target_modules")
    _, blocks, leaves = best
    return rf"{re.escape(prefix + '.' + blocks)}\.\d+\.(?:.*\.)?(?:{'|'.join(map(re.escape, leaves))})"


def _refuse_head_targets(hf: nn.Module, heads: list[str], targets: list[str] | str) -> None:
    """A user target list matched by suffix (PEFT's rule) must not reach into the head."""
    head_prefixes = [f"{hf.base_model_prefix}.pooler" if h == "pooler" else h for h in heads]
    for key, _ in hf.named_modules():
        if not any(key == p or key.startswith(p + ".") for p in head_prefixes):
            continue
        hit = re.fullmatch(targets, key) if isinstance(targets, str) else any(
            key == t or key.endswith("." + t) for t in targets)
        if hit:
            raise HeadNotTrainedError(f"model.lora.target_modules={targets} would put an adapter on the reward "
                                      f"head module '{key}'; the head {heads} is always trained in full, so "
                                      "leave it out of target_modules")


# -- quantization ------------------------------------------------------------------------------

def require_bitsandbytes(quantization: str, device: torch.device) -> None:
    """Fail early, naming both ways out, where k-bit weights cannot work."""
    hint = "install bitsandbytes>=0.45 (pip install 'rmlib[bnb]') or set model.lora.quantization=none"
    try:
        import bitsandbytes as bnb
        from packaging.version import Version
    except ImportError as e:
        raise ImportError(f"model.lora.quantization={quantization} needs bitsandbytes: {hint}") from e
    if Version(bnb.__version__) < Version("0.45"):
        raise ImportError(f"model.lora.quantization={quantization}: bitsandbytes {bnb.__version__} is too old "
                          f"(no CPU backend, older 4-bit kernels): {hint}")
    if quantization == "4bit":
        try:  # a 64-value round trip: cheap, and the error a user would otherwise meet mid-load
            import bitsandbytes.functional as F

            q, state = F.quantize_4bit(torch.ones(64, device=device), quant_type="nf4")
            F.dequantize_4bit(q, state)
        except Exception as e:  # noqa: BLE001 - any backend failure means "not available here"
            raise RuntimeError(f"4-bit weights are not available on {device} with bitsandbytes "
                               f"{bnb.__version__} ({type(e).__name__}: {e}); {hint}") from e


def compute_dtype(lo: LoraSettings, device: torch.device) -> torch.dtype:
    if lo.compute_dtype:
        return torch_dtype(lo.compute_dtype)
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def quantization_kwargs(lo: LoraSettings | dict, device: torch.device) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for a k-bit base ({} for none)."""
    from types import SimpleNamespace

    lo = SimpleNamespace(**lo) if isinstance(lo, dict) else lo
    if lo.quantization == "none":
        return {}
    require_bitsandbytes(lo.quantization, device)
    from transformers import BitsAndBytesConfig

    skip = ["score", "classifier", "pooler"]  # the head is never quantized: it trains in full
    if lo.quantization == "4bit":
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=lo.bnb_4bit_quant_type,
                               bnb_4bit_use_double_quant=lo.double_quant,
                               bnb_4bit_compute_dtype=compute_dtype(lo, device), llm_int8_skip_modules=skip)
    else:
        q = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return {"quantization_config": q, "device_map": {"": device.index or 0} if device.type == "cuda" else "cpu"}


def keep_cpu_4bit_exact(hf: nn.Module) -> None:
    """Stop bitsandbytes' CPU eval-time repacking of 4-bit weights.

    On CPUs with AVX512-BF16, bnb (0.50) repacks a ``Linear4bit`` the first time it runs in eval
    mode without grad, storing the block scales in bfloat16. That changes the model in place
    (training after an evaluation continues on the rounded weights, and a save writes them back),
    and makes eval-mode scores differ by ~1e-2 from the train-mode function and from the
    dequantized weights a merge uses. One kernel path everywhere keeps train, eval, reload and
    merge the same function; the speed of CPU 4-bit inference is not what CPU runs are for.
    """
    for m in hf.modules():
        if hasattr(m, "support_avx512bf16_for_cpu"):
            m.support_avx512bf16_for_cpu = False


def _upcast_non_quantized(hf: nn.Module) -> None:
    """What ``prepare_model_for_kbit_training`` does to the weights (fp16/bf16 -> fp32 for every
    non-quantized tensor); repeated when a QLoRA adapter is loaded, so it scores as it trained."""
    for p in hf.parameters():
        if p.dtype in (torch.float16, torch.bfloat16) and type(p).__name__ != "Params4bit":
            p.data = p.data.float()


def _upcast_head(hf: nn.Module) -> None:
    """Keep the head in float32 and cast its input to the head's dtype (a bf16 backbone feeds
    an fp32 head without autocast). Must run before PEFT copies the head into modules_to_save."""
    for mod in _head_modules(hf).values():
        if mod.__dict__.get("_rmlib_cast_hook") is not None:
            continue
        mod.float()

        def cast(m: nn.Module, args: tuple) -> tuple:
            dtype = next(m.parameters()).dtype
            return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

        mod._rmlib_cast_hook = mod.register_forward_pre_hook(cast)


# -- wrapping ----------------------------------------------------------------------------------

def apply_lora(rm: RewardModel, lo: LoraSettings, *, gradient_checkpointing: bool = False) -> RewardModel:
    """Wrap ``rm.model`` in a PEFT LoRA model (in place) and verify the head; returns ``rm``."""
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training

    hf = rm._hf
    heads = head_module_names(hf)
    targets: list[str] | str = list(lo.target_modules) if lo.target_modules else default_target_modules(hf)
    _refuse_head_targets(hf, heads, targets)
    gc_kwargs = {"use_reentrant": False}
    if getattr(hf, "is_quantized", False):
        hf = prepare_model_for_kbit_training(hf, use_gradient_checkpointing=gradient_checkpointing,
                                             gradient_checkpointing_kwargs=gc_kwargs)
    elif gradient_checkpointing:
        enable_checkpointing(hf)
    zero3 = zero3_enabled()
    if not zero3:
        _upcast_head(hf)
    cfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout,
                     target_modules=targets, use_rslora=lo.use_rslora, modules_to_save=heads)
    # ZeRO-3 flattens each group's parameters into one buffer of one dtype (and all-gathers persistent
    # ones in the first one's dtype): fp32 LoRA/head next to a bf16 base fails there. Under ZeRO-3 the
    # trainable weights therefore take the base's dtype; DeepSpeed keeps their fp32 master copies.
    rm.model = get_peft_model(hf, cfg, autocast_adapter_dtype=not zero3)
    verify_head(rm, trainable=True)
    return rm


def verify_head(rm: RewardModel, *, trainable: bool) -> None:
    """Raise unless every head module is a full (modules_to_save) copy with no LoRA inside, its
    parameters trainable when ``trainable``, and everything else but LoRA frozen."""
    hf = rm._hf
    problems = []
    head_params: set[int] = set()
    for name, mod in _head_modules(hf).items():
        if type(mod).__name__ != "ModulesToSaveWrapper":
            problems.append(f"'{name}' is not in modules_to_save (it would not be trained or saved)")
            continue
        lora = [n for n, _ in mod.named_parameters() if "lora_" in n]
        if lora:
            problems.append(f"'{name}' carries LoRA parameters {lora[:3]}")
        active = mod.modules_to_save[mod.active_adapters[0]] if hasattr(mod, "active_adapters") else None
        params = list(active.parameters()) if active is not None else []
        if not params:
            problems.append(f"'{name}' has no trainable copy")
        if trainable and not all(p.requires_grad for p in params):
            problems.append(f"'{name}' is frozen")
        head_params.update(id(p) for p in mod.parameters())
    if trainable:
        stray = [n for n, p in rm.model.named_parameters()
                 if p.requires_grad and "lora_" not in n and id(p) not in head_params]
        if stray:
            problems.append(f"base weights left trainable: {stray[:3]}")
        if not any(p.requires_grad for n, p in rm.model.named_parameters() if "lora_" in n):
            problems.append("no trainable LoRA parameters (target_modules matched nothing?)")
    if problems:
        raise HeadNotTrainedError("LoRA reward model is unsafe: " + "; ".join(problems))


# -- building and loading ----------------------------------------------------------------------

def build_lora_model(path: str, attributes: list[str], model_cfg, *, device: torch.device,
                     **common: Any) -> RewardModel:
    """The trainer's model for ``model.lora.enabled``: base (k-bit if asked), two-stage head
    surgery, then LoRA. ``common`` are ``RewardModel.from_pretrained`` keyword arguments.

    A LoRA adapter directory as the base is a ValueError (this layer does not import
    :mod:`rmlib.config`, whose ``ConfigError`` is a ValueError too).
    """
    lo = model_cfg.lora
    if is_adapter_dir(path):
        raise ValueError(f"model.name_or_path={path} is a LoRA adapter directory; a new LoRA run starts from "
                         f"plain weights: run `rmlib export {path} --out MERGED_DIR` and train from MERGED_DIR")
    quant = quantization_kwargs(lo, device)
    init = model_cfg.init_from_regression_attribute
    if init:
        rm = RewardModel.from_pretrained(path, **common, **quant)
        rm.keep_attributes([init], rename=attributes)
    else:
        rm = RewardModel.from_pretrained(path, attributes=attributes, **common, **quant)
    keep_cpu_4bit_exact(rm._hf)
    return apply_lora(rm, lo, gradient_checkpointing=model_cfg.gradient_checkpointing)


def read_info(adapter_dir: str | Path) -> dict[str, Any]:
    """What a LoRA directory needs to rebuild its base: ``rmlib.json``'s ``lora`` entry, or for an
    adapter written elsewhere (TRL, plain PEFT) the base named in ``adapter_config.json``."""
    d = Path(adapter_dir)
    info = json.loads((d / INFO_FILE).read_text()).get("lora") if (d / INFO_FILE).is_file() else None
    if info:
        return info
    base = json.loads((d / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    return {"base_model": base, "attributes": None, "dtype": "float32", "quantization": "none"}


def load_adapter(adapter_dir: str | Path, *, dtype: str | torch.dtype | None = None,
                 device: torch.device | str | None = None, max_length: int | None = None,
                 trust_remote_code: bool = False, attn_implementation: str | None = None) -> RewardModel:
    """Base + adapter + head as a :class:`RewardModel` ready to score (frozen, eval mode).

    ``max_length`` None: the base's position limit, at most 1024 (a fixed 1024 refused a 512-position
    encoder such as MiniLM, so ``rmlib export`` of its LoRA run failed).

    A QLoRA adapter is loaded on the same k-bit base it trained on. To fold the adapter into
    plain weights use :func:`merge_adapter`.
    """
    from peft import PeftModel
    from transformers import AutoTokenizer

    info = read_info(adapter_dir)
    device = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    quant = quantization_kwargs(info, device)
    rm = RewardModel.from_pretrained(info["base_model"], attributes=info.get("attributes"),
                                     dtype=dtype or info.get("dtype", "float32"), max_length=max_length,
                                     trust_remote_code=trust_remote_code,
                                     attn_implementation=attn_implementation, reward_token="end", **quant)
    rm.tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    hf = rm._hf
    if info.get("distribution"):  # a mean_var / rating_ce head reads its outputs as a distribution
        setattr(hf.config, DISTRIBUTION_KEY, dict(info["distribution"]))
        distribution_from_config(hf.config)  # a declared kind that does not fit the head fails here
    if quant:
        keep_cpu_4bit_exact(hf)
        _upcast_non_quantized(hf)
    _upcast_head(hf)
    rm.model = PeftModel.from_pretrained(hf, str(adapter_dir), is_trainable=False)
    verify_head(rm, trainable=False)
    if not quant:  # a k-bit base is already placed by its device_map
        rm.to(device)
    return rm.eval()


def _load_adapter_dir(path: str, *, attributes=None, dtype: str | torch.dtype = "float32",
                      trust_remote_code: bool = False, attn_implementation: str | None = None,
                      max_length: int | None = None, **kwargs: Any) -> RewardModel:
    """:meth:`RewardModel.from_pretrained` on a LoRA run's output: base + adapter + full head."""
    if attributes is not None or kwargs:
        raise ValueError("a LoRA adapter directory is loaded as saved: attributes/kwargs are not supported")
    return load_adapter(path, dtype=dtype, max_length=max_length, trust_remote_code=trust_remote_code,
                        attn_implementation=attn_implementation)


RewardModel.directory_loaders.append((is_adapter_dir, _load_adapter_dir))


# -- probe-checked saving ----------------------------------------------------------------------

def probe_batch(rm: RewardModel):
    from rmlib.data.collate import collate_sequences

    feat = rm.featurizer()
    seqs = [e for e in (feat.encode(as_messages(p), r) for p, r in PROBE) if e is not None]
    if not seqs:
        raise SaveCheckError(f"no probe sequence fits in max_length={rm.max_length}")
    return collate_sequences(seqs, rm.tokenizer.pad_token_id)


@torch.no_grad()
def probe_scores(rm: RewardModel) -> torch.Tensor:
    """Rewards of the fixed probe batch (float32, on CPU); every rank must call this under ZeRO-3."""
    was = rm.training
    rm.eval()
    device = next(rm.parameters()).device
    out = rm(probe_batch(rm).to(device)).float().cpu()
    rm.train(was)
    return out


def _weights_dtype(rm: RewardModel) -> torch.dtype:
    dtypes = {p.dtype for p in rm.parameters() if p.is_floating_point()}
    return min(dtypes, key=lambda d: torch.finfo(d).bits) if dtypes else torch.float32


def tolerance(dtype: torch.dtype, *, quantized: bool, merged: bool) -> float:
    """Allowed |Δscore| per unit of score scale. A reload of the same weights is exact up to kernel
    order; merging reorders sums (W+BA)x vs Wx+B(Ax); half precision rounds at ~1e-2 relative."""
    if dtype in (torch.bfloat16, torch.float16):
        return 5e-2
    if quantized or merged:
        return 1e-4
    return 1e-5


def check_scores(before: torch.Tensor, after: torch.Tensor, tol: float, what: str) -> float:
    """Raise :class:`SaveCheckError` unless ``after`` matches ``before``; returns the max difference."""
    if before.shape != after.shape:
        raise SaveCheckError(f"{what}: probe scores have shape {tuple(after.shape)} after reloading, "
                             f"{tuple(before.shape)} before")
    diff = (before - after).abs().max().item()
    scale = max(1.0, before.abs().max().item())
    if not diff <= tol * scale:  # also catches NaN
        raise SaveCheckError(f"{what}: probe scores changed by {diff:.3g} after reloading (allowed {tol * scale:.3g});"
                             f" before {before.flatten()[:4].tolist()} after {after.flatten()[:4].tolist()}. "
                             "The saved files do not reproduce the model (head or adapter lost?); nothing was "
                             "published")
    return diff


def _reload_device(rm: RewardModel, device: torch.device) -> torch.device:
    """Reload where training ran unless a second copy does not fit there (then on CPU)."""
    if device.type != "cuda":
        return device
    need = sum(getattr(p, "ds_numel", p.numel()) * p.element_size() for p in rm.parameters())
    free, _ = torch.cuda.mem_get_info(device)
    return device if free > 1.3 * need else torch.device("cpu")


def _info(rm: RewardModel, lo: LoraSettings | None) -> dict[str, Any]:
    hf = rm._hf
    base = rm.model.peft_config["default"].base_model_name_or_path  # the path the base was loaded from
    quant = lo.quantization if lo is not None else "none"
    # the dtype the base actually ran in (ZeRO-3 may have cast it at load), not the config's
    ran = hf.get_input_embeddings().weight.dtype
    info = {"base_model": str(base), "attributes": rm.attributes, "heads": head_module_names(hf),
            "dtype": dtype_name(ran) if ran in _RUN_DTYPES else "float32", "quantization": quant}
    spec = getattr(hf.config, DISTRIBUTION_KEY, None)
    if spec is not None:  # the base's config does not declare the head: the adapter directory must
        info["distribution"] = dict(spec)
    if lo is not None and quant != "none":
        info.update(bnb_4bit_quant_type=lo.bnb_4bit_quant_type, double_quant=lo.double_quant,
                    compute_dtype=lo.compute_dtype)
    return info


def save_checked(accelerator, model, out_dir: str | Path, *, lora: LoraSettings | None = None,
                 extra: dict | None = None) -> Path:
    """Save a (possibly prepared) LoRA reward model as an adapter directory, verified.

    Every rank calls this (ZeRO-3 gathers the weights and runs the probe forward collectively).
    The main process writes ``<out>.tmp`` (adapter + head + tokenizer + ``rmlib.json``), reloads it
    with :func:`load_adapter`, compares probe scores and only then renames it to ``out``; the
    outcome is broadcast so every rank raises on failure.
    """
    from accelerate.utils import DistributedType, broadcast_object_list

    acc = accelerator
    rm = acc.unwrap_model(model)
    out = Path(out_dir)
    before = probe_scores(rm)
    ds = acc.distributed_type == DistributedType.DEEPSPEED
    zero3 = ds and acc.state.deepspeed_plugin.zero_stage == 3
    state_dict = None
    if zero3:  # parameters are partitioned: gather (every rank; only the main one gets the dict back)
        full = acc.get_state_dict(model)
        state_dict = {k.removeprefix("model."): v for k, v in full.items()} if full is not None else None
    error = [None]
    if acc.is_main_process:
        tmp = out.with_name(out.name + ".tmp")
        try:
            tmp = staging_dir(out)
            quantized = lora is not None and lora.quantization != "none"
            rm.save_pretrained(tmp, state_dict=state_dict, extra={**(extra or {}), "lora": _info(rm, lora)})
            with without_zero3_init() if ds else nullcontext():
                reloaded = load_adapter(tmp, device=_reload_device(rm, acc.device), max_length=rm.max_length)
                after = probe_scores(reloaded)
                del reloaded
            check_scores(before, after, tolerance(_weights_dtype(rm), quantized=quantized, merged=False),
                         f"adapter save to {out}")
            publish_dir(tmp, out)
        except Exception as e:  # noqa: BLE001 - re-raised below on every rank
            shutil.rmtree(tmp, ignore_errors=True)
            error = [f"{type(e).__name__}: {e}"]
    if acc.num_processes > 1:
        broadcast_object_list(error, from_process=0)
    if error[0] is not None:
        raise SaveCheckError(error[0])
    return out


def _dequantized_base(rm: RewardModel) -> dict[str, Callable[[], torch.Tensor]]:
    """For a k-bit base: base checkpoint name → a function dequantizing that one weight (fp32, CPU).

    The merge then adds ``s·B@A`` to ``dequant(W)``, the weight the adapter was trained against,
    not to the checkpoint's ``W``; one tensor is dequantized at a time.
    """
    from transformers.integrations.bitsandbytes import dequantize_bnb_weight

    out: dict[str, Callable[[], torch.Tensor]] = {}
    for name, mod in rm._hf.named_modules():
        weight = getattr(mod, "weight", None)
        if type(weight).__name__ not in ("Params4bit", "Int8Params"):
            continue
        key = name.replace(".base_layer", "") + ".weight"
        out[key] = lambda m=mod: dequantize_bnb_weight(m.weight, getattr(m, "state", None)).float().cpu()
    return out


def _merged_config(rm: RewardModel, dtype: str):
    """The reference model's config (attributes, pad token, vocabulary as loaded) as a plain model's."""
    config = copy.deepcopy(rm._hf.config)
    for key in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, key):
            delattr(config, key)
    config.dtype = dtype
    # the export contract (rmlib.models.contract): a base saved as *ForCausalLM keeps that name in its
    # config until a model (not a config) is saved, and the outputs are raw rewards
    config.architectures = [type(rm._hf).__name__]
    config.problem_type = "regression"
    return config


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, *, dtype: str | None = None,
                  device: str | None = None, max_shard_size: int | str = "5GB") -> dict[str, Any]:
    """Fold a LoRA directory into a plain ``AutoModelForSequenceClassification`` directory, verified.

    The weights are written by the library's one LoRA merge (:mod:`rmlib.models.merge`): base and
    adapter streamed tensor by tensor, ``W + s·B@A`` in fp32, stored in ``dtype`` (default: the
    dtype the base ran in); for a k-bit (QLoRA) base ``W`` is the dequantized weight the adapter
    trained against. Config and tokenizer come from the adapter loaded on its base (which also
    gives the reference probe scores); the directory is written to ``<out>.tmp``, reloaded as a
    plain model, compared, and published.
    """
    info = read_info(adapter_dir)
    dev = torch.device(device) if device else None
    ref = load_adapter(adapter_dir, device=dev)
    before = probe_scores(ref)
    ref_dtype = _weights_dtype(ref)
    quantized = info.get("quantization", "none") != "none"
    target = dtype_name(torch_dtype(dtype or info.get("dtype", "float32")))
    out = Path(out_dir)
    tmp = staging_dir(out)
    try:
        adapter = open_adapter(adapter_dir, info["base_model"],
                               replace_base=_dequantized_base(ref) if quantized else None)
        write_merged(adapter, tmp, dtype=torch_dtype(target), max_shard_size=max_shard_size)
        _merged_config(ref, target).save_pretrained(tmp)
        ref.tokenizer.save_pretrained(tmp)
        require_export_contract(tmp)  # names the broken field; nothing is published
        (tmp / INFO_FILE).write_text(json.dumps({"merged_from": str(adapter_dir), "base_model": info["base_model"]},
                                                indent=2, default=str))
        del ref, adapter
        after = probe_scores(RewardModel.from_pretrained(tmp, dtype=target, device_map=dev and str(dev)))
        worst = torch_dtype(target) if torch.finfo(torch_dtype(target)).bits < torch.finfo(ref_dtype).bits \
            else ref_dtype
        diff = check_scores(before, after, tolerance(worst, quantized=quantized, merged=True),
                            f"merged export of {adapter_dir}")
        publish_dir(tmp, out)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out": str(out), "max_abs_diff": diff, "probe_scores": before.flatten().tolist(), "dtype": target}


RewardModel.lora_saver = staticmethod(save_checked)  # how RewardModel.save writes a LoRA run (registered here, as the loader is)
