"""Resumable training state written as safetensors and JSON only, loaded without executing code.

Why not ``accelerator.save_state``: it writes the optimizer, the LR scheduler (registered custom
state) and the RNG states with ``torch.save`` and loads the custom state with
``weights_only=False``, so a crafted file in a copied checkpoint runs code on ``resume_from``.
Here every tensor goes to a ``.safetensors`` file (a header plus raw bytes) and everything else
to JSON, so loading a checkpoint reads data and nothing else.

What a checkpoint's ``state/`` holds on one process, DDP and multi-CPU runs:

* ``model.safetensors``: every trainable parameter of the training module (frozen weights, such
  as a LoRA run's base, never change and are loaded again from the base model);
* ``optimizer.safetensors`` + ``optimizer.json``: the optimizer's tensors (AdamW moments, steps)
  and its param groups / scalar state;
* ``scheduler.safetensors`` + ``scheduler.json``: the LR scheduler's ``state_dict``;
* ``rng-<rank>.safetensors`` + ``rng-<rank>.json``: torch (CPU and CUDA), numpy and Python RNG
  states of each process; ``scaler.json`` for fp16 loss scaling.

DeepSpeed and FSDP shard the model and optimizer in formats of their own, which only their own
loaders read (and those use pickles): under those backends ``state/`` is written by
``accelerator.save_state`` and holds the backend's files; the LR scheduler and the RNG states
still go through the JSON/safetensors files above. docs/training.md says so.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file


def _backend_saves_model(acc: Any) -> bool:
    """DeepSpeed and FSDP own the model and optimizer state; only their loaders can read it."""
    return acc.distributed_type.name in ("DEEPSPEED", "FSDP")


def _split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor inside ``obj`` by a ``{"__tensor__": key}`` reference (JSON-able rest)."""
    if isinstance(obj, torch.Tensor):
        key = prefix or "value"
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[_key(k), _split(v, f"{prefix}.{k}" if prefix else str(k), tensors)]
                             for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_split(v, f"{prefix}.{i}" if prefix else str(i), tensors) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint without pickling it")


def _key(k: Any) -> Any:
    if isinstance(k, (bool, int, float, str)) or k is None:
        return k
    raise TypeError(f"cannot store a {type(k).__name__} dictionary key in a checkpoint")


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _join(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [_join(v, tensors) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
        if "__ndarray__" in obj:
            return np.array(obj["__ndarray__"], dtype=obj["dtype"])
    return obj


def save_tree(obj: Any, directory: Path, name: str) -> None:
    """``obj`` (nested dicts/lists of tensors and plain values) as ``name.safetensors`` + ``name.json``."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(obj, "", tensors)
    save_file(tensors, str(directory / f"{name}.safetensors"))
    (directory / f"{name}.json").write_text(json.dumps(skeleton))


def load_tree(directory: Path, name: str) -> Any:
    tensors = load_file(str(directory / f"{name}.safetensors"))
    return _join(json.loads((directory / f"{name}.json").read_text()), tensors)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _trainable(acc: Any, model: Any) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in acc.unwrap_model(model).named_parameters() if p.requires_grad}


def save_state(acc: Any, model: Any, opt: Any, sched: Any, directory: Path) -> None:
    """Write the state needed to resume exactly; every process calls it (each saves its RNG)."""
    directory.mkdir(parents=True, exist_ok=True)
    if _backend_saves_model(acc):
        acc.save_state(str(directory))  # the backend's own sharded files (see the module docstring)
    elif acc.is_main_process:
        save_file({n: p.detach().cpu().contiguous() for n, p in _trainable(acc, model).items()},
                  str(directory / "model.safetensors"))
        save_tree(opt.state_dict(), directory, "optimizer")
    if acc.is_main_process:
        save_tree(sched.state_dict(), directory, "scheduler")
        if acc.scaler is not None:
            save_tree(acc.scaler.state_dict(), directory, "scaler")
    save_tree(_rng_state(), directory, f"rng-{acc.process_index}")


def load_state(acc: Any, model: Any, opt: Any, sched: Any, directory: Path) -> None:
    """The inverse of :func:`save_state`; reads safetensors and JSON only (never a pickle)."""
    if _backend_saves_model(acc):
        acc.load_state(str(directory))
    else:
        weights = load_file(str(directory / "model.safetensors"))
        params = _trainable(acc, model)
        if set(weights) != set(params):
            raise ValueError(f"{directory}: the checkpoint's trainable weights do not match this model's "
                             f"(only in checkpoint: {sorted(set(weights) - set(params))[:3]}, only in model: "
                             f"{sorted(set(params) - set(weights))[:3]})")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(weights[name])
        opt.load_state_dict(load_tree(directory, "optimizer"))
    sched.load_state_dict(load_tree(directory, "scheduler"))
    if acc.scaler is not None and (directory / "scaler.json").is_file():
        acc.scaler.load_state_dict(load_tree(directory, "scaler"))
    if (directory / f"rng-{acc.process_index}.json").is_file():
        _set_rng_state(load_tree(directory, f"rng-{acc.process_index}"))
