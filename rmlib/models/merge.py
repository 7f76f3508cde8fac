"""The one LoRA merge of rmlib: ``W + s·B@A``, streamed tensor by tensor from safetensors files.

Used by ``rmlib export`` (:func:`rmlib.models.lora.merge_adapter`, which adds the probe check) and
by ExPO on adapter inputs (:mod:`rmlib.expo`). Memory is bounded: base and adapter are read in
chunks of whole rows (:mod:`rmlib.models.safetensors_io`), the delta ``B@A`` of one chunk is added
in fp32 and the result streamed out, so a merge never holds more than a few chunks and the
(small) factors of the tensor at hand.

Numerics. ``s = lora_alpha / r`` (``lora_alpha / √r`` with ``use_rslora``), ``alpha_pattern``
honoured, ``r`` read from the tensors: PEFT's ``LoraLayer`` scaling
(https://github.com/huggingface/peft, ``tuners/lora/layer.py``). The delta is computed as PEFT's
merge does (``delta = (B @ A) * scaling; W += delta``) in fp32, so fp32 results agree with
``merge_and_unload``; a caller chooses the stored dtype. Embedding LoRA (``lora_embedding_A/B``)
and ``fan_in_fan_out`` (GPT-2's Conv1D) store the transposed product.

Tensors saved whole in the adapter that are not LoRA factors (``modules_to_save`` such as the
reward head, or trained biases) replace the base's. DoRA, LoRA biases, ``layer_replication``,
``target_parameters`` and ``trainable_token_indices`` are refused: their merge is not ``W + s·B@A``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from rmlib.models.safetensors_io import (
    ChunkReader,
    Entry,
    TensorSpec,
    local_model_dir,
    read_header,
    weight_entries,
    write_checkpoint,
)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_UNSUPPORTED = ("use_dora", "lora_bias", "layer_replication", "target_parameters", "trainable_token_indices")


@dataclass(frozen=True)
class LoraDelta:
    """A LoRA delta ``scale · B @ A`` (transposed for ``fan_in_fan_out`` and embeddings)."""

    a: Entry
    b: Entry
    scale: float
    transpose: bool


class MergeReader(ChunkReader):
    """A :class:`ChunkReader` that also reads tensors with their LoRA delta merged in."""

    def value(self, e: Entry, r0: int, r1: int) -> torch.Tensor:
        """Rows ``r0:r1`` as the model means them: stored dtype, or fp32 when a LoRA delta is merged."""
        w = self.raw(e, r0, r1)
        if e.lora is None:
            return w
        lo: LoraDelta = e.lora
        a = self.raw(lo.a, 0, lo.a.rows[0]).float()
        b = self.raw(lo.b, 0, lo.b.rows[0]).float()
        # Same op order as peft's merge (delta = (B @ A) * scaling; W += delta) so fp32 results agree.
        delta = (a[:, r0:r1].T @ b.T) if lo.transpose else (b[r0:r1] @ a)
        return w.float() + delta * lo.scale

    def chunks(self, e: Entry, dtype: torch.dtype | None = None) -> Iterator[torch.Tensor]:
        """The merged tensor chunk by chunk of whole rows, floating values cast to ``dtype``
        (default: the stored dtype); integer and bool tensors are copied unchanged."""
        out = dtype if dtype is not None and e.dtype.is_floating_point else e.dtype
        for r0, r1 in e.row_chunks():
            yield self.value(e, r0, r1).to(out)


@dataclass
class MergedAdapter:
    """A LoRA adapter as a dense checkpoint: every tensor of base + adapter, deltas attached."""

    adapter_dir: Path
    config: dict[str, Any]  # adapter_config.json
    base_dir: Path
    entries: dict[str, Entry]


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def pattern_value(patterns: Mapping[str, Any], module: str, default: Any) -> Any:
    """peft's ``alpha_pattern`` lookup: exact name, else a regex matching the name's tail."""
    if module in patterns:
        return patterns[module]
    for pat, value in patterns.items():
        if re.fullmatch(rf"(.*\.)?({pat})", module):
            return value
    return default


def _with_task_prefix(entries: dict[str, Entry], adapter_keys: Iterator[str] | Mapping[str, Any]) -> dict[str, Entry]:
    """Base tensors renamed under the task model's prefix when the base checkpoint is headless.

    A headless checkpoint (a ``BertModel``'s ``encoder.*``, as the bundled MiniLM ships) trained as a
    ``BertForSequenceClassification`` gives adapter names under the prefix (``bert.encoder.*``). As
    transformers does when it loads such a checkpoint, the base tensors take the prefix, so every LoRA
    factor finds its base tensor and the merged checkpoint names every tensor one way.
    """
    names = [k.removeprefix("base_model.model.") for k in adapter_keys]
    base_roots = {n.split(".", 1)[0] for n in entries}
    prefixes = {n.split(".", 1)[0] for n in names
                if n.count(".") >= 2 and n.split(".", 1)[0] not in base_roots and n.split(".")[1] in base_roots}
    if len(prefixes) != 1:
        return entries
    p = prefixes.pop()
    return {f"{p}.{k}": replace(e, name=f"{p}.{k}") for k, e in entries.items()}


def open_adapter(root: str | Path, base: str | Path | None = None, *,
                 replace_base: Mapping[str, Callable[[], torch.Tensor]] | None = None) -> MergedAdapter:
    """Plan the merge of the adapter in ``root`` onto its base (nothing is read but headers).

    The base is ``base`` if given, else the adapter's ``base_model_name_or_path`` (a local path,
    relative paths also tried against the adapter directory, an alias or a hub name).
    ``replace_base`` maps base tensor names to functions returning that whole tensor in fp32, used
    instead of the base file's bytes: a k-bit base's dequantized weights, so that the merge is the
    function the adapter was trained with (``dequant(W) + s·B@A``).
    """
    root = Path(root)
    cfg = json.loads((root / ADAPTER_CONFIG).read_text())
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{root}: only LoRA adapters are supported, got peft_type={cfg.get('peft_type')}")
    for key in _UNSUPPORTED:
        if cfg.get(key):
            raise ValueError(f"{root}: adapters with `{key}` are not supported; merge them "
                             "(peft merge_and_unload + save_pretrained) and pass the merged directory")
    weights = root / ADAPTER_WEIGHTS
    if not weights.is_file():
        if any(root.glob("adapter_model.bin")):
            raise ValueError(f"{root} holds a pickled adapter_model.bin; only safetensors are read")
        raise FileNotFoundError(f"{root} has {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS}")
    base_name = base if base is not None else cfg.get("base_model_name_or_path")
    if not base_name:
        raise ValueError(f"{root}: adapter config names no base model; pass base=...")
    base_dir = local_model_dir(base_name, relative_to=root)
    entries = _with_task_prefix(dict(weight_entries(base_dir)), read_header(weights))
    for name, load in (replace_base or {}).items():
        if name not in entries:
            raise ValueError(f"`{name}` (a quantized base weight) is not in the base checkpoint {base_dir}")
        e = entries[name]
        entries[name] = Entry(name, e.file, e.offset, e.shape, torch.float32, load=load)
    factors: dict[str, dict[str, Entry]] = {}
    replaced: set[str] = set()
    for key, e in read_header(weights).items():
        name = key.removeprefix("base_model.model.")
        m = re.fullmatch(r"(.+)\.lora_(A|B)\.weight", name) or re.fullmatch(r"(.+)\.lora_embedding_(A|B)", name)
        if m:
            factors.setdefault(m.group(1), {})[m.group(2) + ("emb" if "embedding" in name else "")] = e
            continue
        name = re.sub(r"\.modules_to_save\.[^.]+\.", ".", name)
        if ".original_module." in name:
            continue
        entries[name] = Entry(name, e.file, e.offset, e.shape, e.dtype)
        replaced.add(name)
    alpha, patterns, rslora = cfg.get("lora_alpha", 8), cfg.get("alpha_pattern") or {}, cfg.get("use_rslora", False)
    for module, ab in factors.items():
        target = f"{module}.weight"
        emb = "Aemb" in ab or "Bemb" in ab
        a, b = (ab.get("Aemb"), ab.get("Bemb")) if emb else (ab.get("A"), ab.get("B"))
        if a is None or b is None or target not in entries or target in replaced:
            raise ValueError(f"{root}: cannot merge LoRA factors of `{module}` (missing factor, no base tensor "
                             f"`{target}` in {base_dir}, or the tensor is also saved whole)")
        transpose = emb or bool(cfg.get("fan_in_fan_out"))
        w = entries[target]
        expect = (a.shape[1], b.shape[0]) if transpose else (b.shape[0], a.shape[1])
        if len(a.shape) != 2 or len(b.shape) != 2 or w.shape != expect:
            raise ValueError(f"{root}: LoRA factors of `{module}` ({list(b.shape)} @ {list(a.shape)}) do not match "
                             f"base tensor `{target}` of shape {list(w.shape)}")
        r = a.shape[0]
        lora_alpha = float(pattern_value(patterns, module, alpha))
        scale = lora_alpha / math.sqrt(r) if rslora else lora_alpha / r
        entries[target] = Entry(target, w.file, w.offset, w.shape, w.dtype, LoraDelta(a, b, scale, transpose), w.load)
    return MergedAdapter(root, cfg, base_dir, entries)


def write_merged(adapter: MergedAdapter, out_dir: str | Path, *, dtype: torch.dtype | None = None,
                 max_shard_size: int | str = "5GB") -> list[str]:
    """Stream the merged weights of ``adapter`` into ``out_dir`` (safetensors shards + index only).

    Floating tensors are stored in ``dtype`` (default: each tensor's stored dtype, fp32 where a
    delta was merged into a k-bit base); the caller adds config and tokenizer files.
    """
    entries = list(adapter.entries.values())
    specs = [TensorSpec(e.name, e.shape, dtype if dtype is not None and e.dtype.is_floating_point else e.dtype)
             for e in entries]
    with MergeReader() as reader:
        return write_checkpoint(Path(out_dir), specs, lambda i: reader.chunks(entries[i], specs[i].dtype),
                                max_shard_size)
