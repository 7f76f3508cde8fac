"""Which tensor of the output comes from where: opening the two checkpoints (plain or LoRA
adapter), the architecture check, pairing tensors weak ↔ strong and selecting head rows.

Every decision is made here, from headers only, before anything is written (the rule set is
described in ``docs/expo.md``, "Which tensors, and mismatches").
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from rmlib.models.merge import MergeReader, is_adapter_dir, open_adapter
from rmlib.models.safetensors_io import Entry, local_model_dir, same_bytes, weight_entries

OnMismatch = Literal["error", "copy_strong", "select_rows"]
ON_MISMATCH = ("error", "copy_strong", "select_rows")
EXTRAPOLATABLE = (torch.float64, torch.float32, torch.float16, torch.bfloat16)

#: Config keys that must agree between weak and strong (checked where both configs define them).
ARCH_KEYS = ("model_type", "architectures", "hidden_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "intermediate_size", "head_dim", "vocab_size", "tie_word_embeddings",
             "d_model", "n_layer", "n_head", "n_embd")


@dataclass
class Checkpoint:
    """A model as ExPO sees it: named tensors, its config, and the directories holding its files."""

    path: Path  # what the user passed (model or adapter dir)
    config: dict[str, Any]
    entries: dict[str, Entry]
    file_dirs: list[Path]  # non-weight files copied from these, later ones win
    base: Path | None = None  # LoRA base, when ``path`` is an adapter
    adapter: dict[str, Any] | None = None

    @property
    def dirs(self) -> list[Path]:
        return [self.path] + ([self.base] if self.base else [])


@dataclass(frozen=True)
class Item:
    """One output tensor: extrapolated from ``strong`` and ``weak`` (rows from ``weak_row``), or copied."""

    strong: Entry
    weak: Entry | None  # None: copy strong
    weak_row: int = 0  # select_rows: read weak rows weak_row:weak_row+1 for strong's single row
    note: str = ""

    @property
    def name(self) -> str:
        return self.strong.name


def _load_config(d: Path) -> dict[str, Any]:
    cfg = d / "config.json"
    if not cfg.is_file():
        raise FileNotFoundError(f"{d} has no config.json; ExPO needs a transformers model directory")
    return json.loads(cfg.read_text())


def open_checkpoint(path: str | Path, base: str | Path | None) -> Checkpoint:
    """A model directory, hub name, or LoRA adapter directory (merged on the fly, see rmlib.models.merge)."""
    root = local_model_dir(path)
    if is_adapter_dir(root):
        ad = open_adapter(root, base)
        return Checkpoint(root, _load_config(ad.base_dir), ad.entries, [ad.base_dir, root], base=ad.base_dir,
                          adapter=ad.config)
    return Checkpoint(root, _load_config(root), weight_entries(root), [root])


def open_pair(weak: str | Path, strong: str | Path, base: str | Path | None) -> tuple[Checkpoint, Checkpoint]:
    return open_checkpoint(weak, base), open_checkpoint(strong, base)


def check_architecture(weak: Checkpoint, strong: Checkpoint) -> None:
    """Refuse configs that disagree on the architecture (keys in ``ARCH_KEYS``, also in ``text_config``)."""
    pairs = [("", weak.config, strong.config)]
    if isinstance(weak.config.get("text_config"), dict) and isinstance(strong.config.get("text_config"), dict):
        pairs.append(("text_config.", weak.config["text_config"], strong.config["text_config"]))
    for prefix, w, s in pairs:
        for key in ARCH_KEYS:
            if key in w and key in s and w[key] != s[key]:
                raise ValueError(f"weak and strong have different architectures: config `{prefix}{key}` is "
                                 f"{w[key]!r} in weak ({weak.path}) but {s[key]!r} in strong ({strong.path})")


def _alias(reader: MergeReader, ckpt: Checkpoint, name: str, shared: Mapping[str, Any]) -> str | None:
    """Another tensor of ``ckpt`` that both models have and that ``name`` is a byte-identical copy of."""
    e = ckpt.entries[name]
    for other in shared:
        if other != name and same_bytes(reader, e, ckpt.entries[other]):
            return other
    return None


def head_row(weak: Checkpoint, head_attribute: str | None) -> tuple[int, int]:
    """(row of ``head_attribute`` in weak's head, weak's number of labels)."""
    id2label = {int(k): v for k, v in (weak.config.get("id2label") or {}).items()}
    if head_attribute is None:
        raise ValueError("on_mismatch='select_rows' needs head_attribute (one of weak's labels: "
                         f"{sorted(id2label.values())})")
    rows = [k for k, v in id2label.items() if v == head_attribute]
    if not rows:
        raise ValueError(f"head_attribute {head_attribute!r} is not a label of weak ({weak.path}); "
                         f"its config.id2label has {list(id2label.values())}")
    return rows[0], len(id2label)


def plan(reader: MergeReader, weak: Checkpoint, strong: Checkpoint, on_mismatch: str,
         head_attribute: str | None) -> list[Item]:
    """Decide every output tensor's source, or raise naming every mismatched tensor (nothing written yet)."""
    if on_mismatch not in ON_MISMATCH:
        raise ValueError(f"on_mismatch must be one of {ON_MISMATCH}, got {on_mismatch!r}")
    if head_attribute is not None and on_mismatch != "select_rows":
        raise ValueError("head_attribute is only used with on_mismatch='select_rows'")
    check_architecture(weak, strong)
    shared = {k: None for k in strong.entries if k in weak.entries}
    items: list[Item] = []
    problems: list[str] = []
    selected = 0
    for name, s in strong.entries.items():
        w = weak.entries.get(name)
        note = ""
        if w is None:
            alias = _alias(reader, strong, name, shared)
            if alias is not None:
                w, note = weak.entries[alias], f"tied copy of `{alias}`"
        if s.dtype not in EXTRAPOLATABLE:
            if s.dtype.is_floating_point:
                problems.append(f"`{name}` has dtype {s.dtype} (quantized checkpoints are not supported)")
            items.append(Item(s, None, note="copied from strong (not floating point)"))
        elif w is None:
            if on_mismatch == "copy_strong":
                items.append(Item(s, None, note="copied from strong (only in strong)"))
            else:
                problems.append(f"`{name}` is only in strong")
        elif w.shape != s.shape:
            if on_mismatch == "select_rows":
                row, n_labels = head_row(weak, head_attribute)
                if len(s.shape) >= 1 and s.shape[0] == 1 and w.shape == (n_labels, *s.shape[1:]):
                    items.append(Item(s, w, row, f"select_rows: weak row {row} ({head_attribute})"))
                    selected += 1
                    continue
            if on_mismatch == "copy_strong":
                items.append(Item(s, None, note=f"copied from strong (weak shape {list(w.shape)})"))
            else:
                problems.append(f"`{name}` has shape {list(w.shape)} in weak but {list(s.shape)} in strong")
        elif w.dtype not in EXTRAPOLATABLE:
            problems.append(f"`{name}` is {w.dtype} in weak but {s.dtype} in strong")
        else:
            items.append(Item(s, w, note=note))
    for name in weak.entries:
        if name in strong.entries or on_mismatch == "copy_strong":
            continue
        if _alias(reader, weak, name, shared) is None:
            problems.append(f"`{name}` is only in weak")
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ValueError(f"weak ({weak.path}) and strong ({strong.path}) do not match:\n  {shown}\n"
                         "See rmlib.expo's on_mismatch ('copy_strong', or 'select_rows' with head_attribute).")
    if on_mismatch == "select_rows" and not selected:
        warnings.warn("on_mismatch='select_rows' but no head needed row selection", stacklevel=3)
    return items
