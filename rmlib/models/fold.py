"""A multi-head reward model folded into a one-output model: the reward every RL client reads alike.

Why: a sequence classifier with several outputs (HelpSteer2's 5 attributes, 9 for others) gives a
different reward in each RL loop, because each client reads another output: TRL's GRPO reads the
first (``logits[:, 0]``), verl's reward loop the last (``probs[-1]``). A one-output model leaves
nothing to choose.

The heads' output layer is linear, so the weighted sum of the heads is itself one linear output:
``Σ_k w_k (W_k·h + b_k) = (w·W)·h + w·b``. :func:`fold_heads` writes a copy of a plain model directory
whose output rows (``W``, and ``b`` when there is one) are replaced by the one row ``w·W`` (``w·b``),
computed in float64 and stored in the tensor's dtype; every other tensor is copied as stored,
streamed shard by shard (:mod:`rmlib.models.safetensors_io`). The result is a plain
``AutoModelForSequenceClassification`` directory with ``num_labels: 1`` (``id2label {0: "reward"}``),
checked against the export contract, reloaded, and compared with the original model's probe scores
combined by ``w`` before it is published.

Which tensors are the output rows is read from the architecture, not from names: the head is built
on the meta device with ``num_labels`` n and n + 1, and the head tensors whose first dimension
changes are the output rows (a RoBERTa-style head's dense layer keeps its shape and is copied).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from rmlib.io import publish_dir, staging_dir
from rmlib.models.contract import expected_head_keys, require_export_contract
from rmlib.models.safetensors_io import (
    INDEX_NAME,
    ChunkReader,
    Entry,
    TensorSpec,
    weight_entries,
    write_checkpoint,
)

#: the one output's name in ``id2label``
REWARD_LABEL = "reward"
_NOT_COPIED = ("config.json", INDEX_NAME, "README.md", "rmlib.json")


def head_weight_vector(weights: Mapping[str, float] | Sequence[float], heads: Sequence[str]) -> list[float]:
    """One weight per head, in ``heads`` order: a {head name: weight} mapping (unnamed heads weigh 0)
    or a list with one weight per head. Unknown names, a wrong count or a non-finite weight are errors
    naming the heads; so is a vector of zeros (it would give every response the same reward)."""
    heads = list(heads)
    if isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(heads))
        if unknown:
            raise ValueError(f"head weights name unknown heads {unknown}; this model's heads are {heads}")
        w = [float(weights.get(h, 0.0)) for h in heads]
    else:
        w = [float(x) for x in weights]
        if len(w) != len(heads):
            raise ValueError(f"{len(w)} head weights for the {len(heads)} heads {heads}")
    if not all(math.isfinite(x) for x in w):
        raise ValueError(f"head weights must be finite numbers, got {w}")
    if not any(w):
        raise ValueError(f"every head weight is 0 for the heads {heads}: the reward would be constant")
    return w


def output_row_keys(config) -> list[str]:
    """The head tensors holding one row per output (the output layer's weight and bias)."""
    n = int(config.num_labels)
    other = copy.deepcopy(config)
    other.num_labels = n + 1
    shapes, more = expected_head_keys(config), expected_head_keys(other)
    keys = [k for k, s in shapes.items() if s and s[0] == n and more.get(k, s)[0] == n + 1]
    if not keys:
        raise ValueError(f"no head tensor of {type(config).__name__} has one row per output ({n}); cannot fold")
    return keys


def _folded(reader: ChunkReader, e: Entry, w: torch.Tensor) -> torch.Tensor:
    rows = reader.raw(e, 0, e.shape[0]).to(torch.float64)
    return (w @ rows.reshape(e.shape[0], -1)).reshape(1, *e.shape[1:]).to(e.dtype)


def fold_heads(model_dir: str | Path, out_dir: str | Path, weights: Mapping[str, float] | Sequence[float], *,
               source: str, max_shard_size: int | str = "5GB", device: str | None = None) -> dict[str, Any]:
    """Write ``out_dir``: ``model_dir`` (a plain reward model directory) with its heads folded into one
    output ``heads @ w``. ``source`` says where the weights came from (written to ``rmlib.json`` and the
    model card). Returns ``{"out", "weights" ({head: w}), "heads", "max_abs_diff", "source"}``."""
    from transformers import AutoConfig

    from rmlib.models.lora import check_scores, probe_scores, tolerance
    from rmlib.models.reward_model import RewardModel

    src = Path(model_dir)
    config = AutoConfig.from_pretrained(src)
    heads = [config.id2label[i] for i in sorted(config.id2label)]
    if len(heads) < 2:
        raise ValueError(f"{src} has one output ({heads}); there are no heads to fold")
    w = head_weight_vector(weights, heads)
    keys = output_row_keys(config)
    entries = weight_entries(src)
    missing = [k for k in keys if k not in entries]
    if missing:
        raise ValueError(f"{src}: the head tensors {missing} are not in the checkpoint")
    wt = torch.tensor(w, dtype=torch.float64)
    out = Path(out_dir)
    tmp = staging_dir(out)
    reader = ChunkReader()
    try:
        for k in keys:
            e = entries[k]
            value = _folded(reader, e, wt)
            entries[k] = Entry(e.name, e.file, e.offset, tuple(value.shape), e.dtype, None, lambda v=value: v)
        items = list(entries.values())
        specs = [TensorSpec(e.name, e.shape, e.dtype) for e in items]
        write_checkpoint(tmp, specs, lambda i: (reader.raw(items[i], r0, r1) for r0, r1 in items[i].row_chunks()),
                         max_shard_size)
        reader.close()
        for f in src.iterdir():  # tokenizer, chat template, generation config: as they are
            if f.is_file() and f.name not in _NOT_COPIED and not f.name.endswith(".safetensors"):
                shutil.copy2(f, tmp / f.name)
        config.num_labels = 1
        config.id2label, config.label2id = {0: REWARD_LABEL}, {REWARD_LABEL: 0}
        config.problem_type = "regression"
        config.save_pretrained(tmp)
        info = json.loads((src / "rmlib.json").read_text()) if (src / "rmlib.json").is_file() else {}
        folded = {"from": str(src), "heads": heads, "weights": dict(zip(heads, w)), "source": source}
        (tmp / "rmlib.json").write_text(json.dumps({**info, "folded_heads": folded}, indent=2, default=str))
        require_export_contract(tmp)
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        ref = RewardModel.from_pretrained(src).to(dev)
        dtype = entries[keys[0]].dtype  # the folded row is rounded to its stored dtype
        before = probe_scores(ref).double() @ wt
        del ref
        after = probe_scores(RewardModel.from_pretrained(tmp).to(dev)).double()
        diff = check_scores(before.float().unsqueeze(1), after.float(), tolerance(dtype, quantized=False, merged=True),
                            f"one-output export of {src}")
        publish_dir(tmp, out)
    except Exception:
        reader.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out": str(out), "weights": folded["weights"], "heads": heads, "max_abs_diff": diff, "source": source}
