"""``θ = θ_strong + α·(θ_strong − θ_weak)``, streamed from two checkpoints into a new directory.

Numerics. Every tensor is computed as ``(1 + α)·θ_strong − α·θ_weak`` in fp32 (fp64 for fp64
tensors) and stored in the strong tensor's dtype. This spelling (the one in the ExPO code,
https://github.com/chujiezheng/LLM-Extrapolation) is exact at both ends: ``α = 0`` gives strong
bit for bit (we copy its bytes), ``α = −1`` gives weak bit for bit whenever weak's dtype is
representable in strong's (``θ_s + α(θ_s − θ_w)`` would not: the difference rounds).

Streaming. Both checkpoints are read chunk by chunk and each output shard is written header first,
then tensor by tensor as chunks are computed (:mod:`rmlib.models.safetensors_io`): peak memory is
a few chunk buffers, independent of model and shard size.

Output. A normal transformers directory: the tensors, an index when sharded, every non-weight file
of strong (config, tokenizer, chat template) copied unchanged, and an ``expo.json`` sidecar. It is
assembled in a staging directory beside ``output_dir`` and published with
:func:`rmlib.io.publish_dir`, so an interrupted run never leaves a partial ``output_dir``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from rmlib.expo.matching import Checkpoint, Item, OnMismatch, open_pair, plan
from rmlib.io import publish_dir, staging_dir
from rmlib.models.merge import MergeReader
from rmlib.models.safetensors_io import TensorSpec, parse_size, write_checkpoint

logger = logging.getLogger(__name__)

SIDECAR = "expo.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".h5", ".msgpack", ".gguf")


def combine(s: torch.Tensor, w: torch.Tensor, alpha: float, out_dtype: torch.dtype, *,
            consume: bool = False) -> torch.Tensor:
    """``(1 + α)·s − α·w`` in fp32 (fp64 for fp64 strong), cast to ``out_dtype``.

    The same elementwise ops in the same order whether applied to a chunk or a whole tensor, so
    streamed output, ``search_alpha`` candidates and tests' direct computations agree bit for bit.
    ``consume`` lets the streamed path work in the freshly read buffers (peak: two fp32 chunks).
    """
    cdt = torch.float64 if out_dtype == torch.float64 else torch.float32
    out = s.to(cdt, copy=not consume).mul_(1 + alpha)
    out.sub_(w.to(cdt, copy=not consume).mul_(alpha))
    return out.to(out_dtype)


def item_chunks(reader: MergeReader, item: Item, alpha: float) -> Iterator[torch.Tensor]:
    """The output tensor of ``item``, chunk by chunk of whole rows, in strong's dtype."""
    s = item.strong
    for r0, r1 in s.row_chunks():
        if item.weak is None or alpha == 0:
            yield reader.value(s, r0, r1).to(s.dtype)  # bit-exact copy unless a LoRA delta is merged
        else:
            yield combine(reader.value(s, r0, r1), reader.value(item.weak, item.weak_row + r0, item.weak_row + r1),
                          alpha, s.dtype, consume=True)


def _is_weight_file(name: str) -> bool:
    return name.endswith(_WEIGHT_SUFFIXES) or name.endswith(".index.json") or name.startswith("adapter_") \
        or name == SIDECAR


def _refuse_inputs(out: Path, inputs: Sequence[Path]) -> None:
    """The output may not be an input (or a LoRA base), nor contain one: ``overwrite`` would delete it.

    The same holds for the ``.tmp`` and ``.old`` siblings that staging and publishing remove.
    """
    out = out.resolve()
    doomed = [out, out.with_name(out.name + ".tmp"), out.with_name(out.name + ".old")]
    for p in inputs:
        p = p.resolve()
        if any(p == d or p.is_relative_to(d) for d in doomed):
            raise ValueError(f"output_dir {out} would overwrite an input ({p}); choose another directory")


def _copy_files(ckpt: Checkpoint, d: Path) -> None:
    """Every top-level non-weight file of strong (for an adapter: its base's, then the adapter's).

    Strong's ``rmlib.json`` (its training summary) is not copied: it would describe a model that
    the output no longer is; ``expo.json`` records what the output is instead.
    """
    for src_dir in ckpt.file_dirs:
        for p in sorted(src_dir.iterdir()):
            if p.is_file() and not _is_weight_file(p.name) and p.name != "rmlib.json":
                shutil.copy2(p, d / p.name)
    _adapter_head_config(ckpt, d)


def _adapter_head_config(ckpt: Checkpoint, d: Path) -> None:
    """An adapter's config.json is its base's, which does not know the head the LoRA run trained: write the
    run's outputs (``rmlib.json``'s attributes) and a distribution's declaration into it, as the merge does."""
    if ckpt.adapter is None or not (d / "config.json").is_file():
        return
    from rmlib.models.lora import read_info

    lora = read_info(ckpt.path)  # an adapter written elsewhere (no rmlib.json) names no attributes
    cfg = json.loads((d / "config.json").read_text())
    if lora.get("attributes"):
        names = list(lora["attributes"])
        cfg.update(num_labels=len(names), id2label={str(i): n for i, n in enumerate(names)},
                   label2id={n: i for i, n in enumerate(names)}, problem_type="regression")
    if lora.get("distribution"):
        from rmlib.models.distribution import DISTRIBUTION_KEY

        cfg[DISTRIBUTION_KEY] = dict(lora["distribution"])
    (d / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _version() -> str:
    from rmlib import __version__

    return __version__


def extrapolate(weak: str | Path, strong: str | Path, alpha: float | None = None,
                output_dir: str | Path | None = None, *, factor: float | None = None,
                on_mismatch: OnMismatch = "error", head_attribute: str | None = None,
                base: str | Path | None = None, max_shard_size: int | str = "5GB",
                overwrite: bool = False) -> Path:
    """Write ``θ = θ_strong + α·(θ_strong − θ_weak)`` (computed as ``(1+α)θ_s − αθ_w``) to ``output_dir``.

    Give exactly one of ``alpha`` and ``factor`` (``α = factor − 1``). ``weak``/``strong`` are model
    directories, hub names or LoRA adapter directories, merged on the fly by
    :mod:`rmlib.models.merge` (``base`` overrides the adapters' ``base_model_name_or_path``).
    Mismatched tensors follow ``on_mismatch`` (``docs/expo.md``); every check runs before anything
    is written. Output shards hold at most ``max_shard_size`` bytes (one larger tensor gets its own
    shard). ``overwrite`` replaces an existing ``output_dir``; an input is never overwritten.
    Returns the output directory.
    """
    if (alpha is None) == (factor is None):
        raise ValueError("give exactly one of alpha and factor (factor = 1 + alpha)")
    a = float(alpha) if alpha is not None else float(factor) - 1.0  # type: ignore[arg-type]
    if not math.isfinite(a):
        raise ValueError(f"alpha must be finite, got {a}")
    if output_dir is None:
        raise ValueError("output_dir is required")
    parse_size(max_shard_size)  # a typo fails before anything is read
    w_ckpt, s_ckpt = open_pair(weak, strong, base)
    out = Path(output_dir).expanduser().absolute()
    _refuse_inputs(out, w_ckpt.dirs + s_ckpt.dirs)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    with MergeReader() as reader:
        items = plan(reader, w_ckpt, s_ckpt, on_mismatch, head_attribute)
        tmp = staging_dir(out)
        try:
            specs = [TensorSpec(it.name, it.strong.shape, it.strong.dtype) for it in items]
            write_checkpoint(tmp, specs, lambda i: item_chunks(reader, items[i], a), max_shard_size)
            _copy_files(s_ckpt, tmp)
            sidecar = {
                "method": "ExPO", "formula": "theta = (1 + alpha) * theta_strong - alpha * theta_weak",
                "alpha": a, "factor": 1.0 + a, "weak": str(w_ckpt.path), "strong": str(s_ckpt.path),
                "weak_base": str(w_ckpt.base) if w_ckpt.base else None,
                "strong_base": str(s_ckpt.base) if s_ckpt.base else None,
                "on_mismatch": on_mismatch, "head_attribute": head_attribute,
                "special_tensors": {it.name: it.note for it in items if it.note},
                "rmlib_version": _version(),
            }
            (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n")
            publish_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    logger.info("ExPO α=%g: wrote %d tensors to %s", a, len(items), out)
    return out
