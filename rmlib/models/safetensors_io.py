"""Streamed safetensors I/O: read a checkpoint chunk by chunk, write one shard by shard.

Used by the LoRA merge (:mod:`rmlib.models.merge`) and by ExPO (:mod:`rmlib.expo`), so that a
checkpoint of any size is rewritten with a few chunk buffers of memory.

Reading. The header (8-byte little-endian length, then JSON) is parsed and validated as the
safetensors format specifies (https://github.com/huggingface/safetensors#format). Tensor bytes are
read with plain unbuffered ``readinto`` calls into chunk buffers of whole rows, not through
``safetensors.safe_open``'s memory map: a memory-mapped shard keeps every page it has touched
resident (measured: +512 MB RSS for reading one 512 MB shard), so two 5 GB shards would cost
10 GB of RSS.

Writing. All shapes are known up front, so each shard's header is written first and each
tensor's bytes follow as they are computed (:func:`write_checkpoint`).
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import torch

from rmlib.io import resolve_model

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
CHUNK_ELEMS = 8 * 2**20  # 32 MiB per fp32 operand: large enough that Python overhead is noise
_MAX_HEADER = 100 * 2**20

#: The file format's dtype names (a file-format table, not the user-facing one in :mod:`rmlib.io`).
ST_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64,
}
ST_NAMES = {v: k for k, v in ST_DTYPES.items()}


@dataclass(frozen=True)
class Entry:
    """Where one tensor of a checkpoint lives (and, for a merged view, what is added to it)."""

    name: str
    file: Path
    offset: int  # absolute byte offset of the data in ``file``
    shape: tuple[int, ...]
    dtype: torch.dtype
    lora: Any = None  # an rmlib.models.merge.LoraDelta added to this tensor
    load: Callable[[], torch.Tensor] | None = None  # the whole tensor from memory instead of ``file``

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    @property
    def rows(self) -> tuple[int, int]:
        """(number of rows, elements per row): chunks are whole rows of the first dimension."""
        if not self.shape:
            return 1, 1
        return self.shape[0], math.prod(self.shape[1:])

    def row_chunks(self) -> Iterable[tuple[int, int]]:
        """``(r0, r1)`` row ranges of at most ``CHUNK_ELEMS`` elements (at least one row)."""
        nrows, per_row = self.rows
        step = max(1, CHUNK_ELEMS // max(1, per_row))
        for r0 in range(0, nrows, step):
            yield r0, min(nrows, r0 + step)


def read_header(path: Path) -> dict[str, Entry]:
    """Parse and validate a safetensors header; entries in file order."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path} is not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", raw)
        if n > min(_MAX_HEADER, size - 8):
            raise ValueError(f"{path} is not a safetensors file (header length {n})")
        header = json.loads(f.read(n))
    start = 8 + n
    entries: dict[str, Entry] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in ST_DTYPES:
            raise ValueError(f"tensor `{name}` in {path} has unsupported dtype {info['dtype']}")
        dtype = ST_DTYPES[info["dtype"]]
        shape = tuple(int(s) for s in info["shape"])
        b, e = info["data_offsets"]
        if e - b != math.prod(shape) * dtype.itemsize or e > size - start or b < 0:
            raise ValueError(f"tensor `{name}` in {path} has inconsistent data offsets {b}..{e}")
        entries[name] = Entry(name, path, start + b, shape, dtype)
    return dict(sorted(entries.items(), key=lambda kv: kv[1].offset))


def weight_entries(d: Path) -> dict[str, Entry]:
    """All tensors of a transformers model directory (single file or sharded), in file order."""
    index = d / INDEX_NAME
    if index.is_file():
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        out: dict[str, Entry] = {}
        for fname in dict.fromkeys(weight_map.values()):
            header = read_header(d / fname)
            for name, entry in header.items():
                if weight_map.get(name) == fname:
                    out[name] = entry
        missing = [k for k in weight_map if k not in out]
        if missing:
            raise ValueError(f"{index} lists tensors missing from their shard: {missing[:5]}")
        return out
    if (d / WEIGHTS_NAME).is_file():
        return read_header(d / WEIGHTS_NAME)
    pickles = sorted(p.name for p in d.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(f"{d} holds pickled weights ({', '.join(pickles[:3])}); only safetensors are read. "
                         "Convert first: AutoModelForSequenceClassification.from_pretrained(d).save_pretrained(new_d)")
    raise FileNotFoundError(f"no {WEIGHTS_NAME} or {INDEX_NAME} in {d}")


def local_model_dir(name: str | Path, *, relative_to: Path | None = None) -> Path:
    """A local directory holding ``name``'s files, for code that reads the files themselves.

    ``name`` is resolved by :func:`rmlib.io.resolve_model` (built-in alias, local path, hub id);
    a relative path is also tried against ``relative_to`` and its parent (an adapter's
    ``base_model_name_or_path``). A hub id is downloaded as a snapshot of its safetensors, JSON
    and tokenizer files.
    """
    p = Path(name).expanduser()
    if not p.is_dir() and relative_to is not None and not p.is_absolute():
        for root in (relative_to, relative_to.parent):
            if (root / p).is_dir():
                return (root / p).resolve()
    resolved = Path(resolve_model(name)).expanduser()
    if resolved.is_dir():
        return resolved.resolve()
    if resolved.exists():
        raise FileNotFoundError(f"{name} is a file, not a model directory")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name), allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model",
                                                                 "*.jinja", "*.tiktoken"]))
    except Exception as e:
        raise FileNotFoundError(f"{name} is neither a local directory nor a reachable hub model: {e}") from e


class ChunkReader:
    """Chunked reads of tensors through plain unbuffered file handles (closed by :meth:`close`)."""

    def __init__(self) -> None:
        self._files: dict[Path, BinaryIO] = {}
        self._loaded: tuple[Entry, torch.Tensor] | None = None  # the last in-memory tensor, for its next chunk

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._loaded = None

    def __enter__(self) -> ChunkReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def raw(self, e: Entry, r0: int, r1: int) -> torch.Tensor:
        """Rows ``r0:r1`` exactly as stored (no LoRA), shaped ``(r1 - r0, *shape[1:])``."""
        if e.load is not None:
            return self._from_memory(e, r0, r1)
        nrows, per_row = e.rows
        nbytes = (r1 - r0) * per_row * e.dtype.itemsize
        buf = torch.empty(nbytes, dtype=torch.uint8)
        f = self._files.get(e.file)
        if f is None:
            f = self._files[e.file] = open(e.file, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        f.seek(e.offset + r0 * per_row * e.dtype.itemsize)
        view, got = memoryview(buf.numpy()), 0
        while got < nbytes:
            n = f.readinto(view[got:])
            if not n:
                raise OSError(f"{e.file} ended early while reading `{e.name}`")
            got += n
        shape = e.shape if not e.shape else (r1 - r0, *e.shape[1:])
        return buf.view(e.dtype).reshape(shape)

    def _from_memory(self, e: Entry, r0: int, r1: int) -> torch.Tensor:
        if self._loaded is None or self._loaded[0] is not e:
            self._loaded = None  # free the previous one first
            t = e.load()  # type: ignore[misc]
            if tuple(t.shape) != e.shape:
                raise ValueError(f"`{e.name}` is {list(t.shape)} in memory but {list(e.shape)} in {e.file}")
            self._loaded = (e, t.to(e.dtype))
        t = self._loaded[1]
        return t[r0:r1] if e.shape else t


def same_bytes(reader: ChunkReader, a: Entry, b: Entry) -> bool:
    """Are two stored tensors byte-identical (same shape and dtype)? Read chunk by chunk."""
    if a.shape != b.shape or a.dtype != b.dtype or a.lora is not None or b.lora is not None:
        return False
    for r0, r1 in a.row_chunks():
        if not torch.equal(reader.raw(a, r0, r1).view(torch.uint8), reader.raw(b, r0, r1).view(torch.uint8)):
            return False
    return True


# -- writing ---------------------------------------------------------------------------------------

class TensorSpec(NamedTuple):
    """One output tensor: its name, shape and stored dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def parse_size(size: int | str) -> int:
    """``2GB`` → 2·10⁹ bytes, ``2GiB`` → 2·2³⁰ (transformers' ``max_shard_size`` convention)."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", size, flags=re.IGNORECASE)
    if not m:
        raise ValueError(f"cannot parse size {size!r}; use e.g. '2GB', '500MB' or a number of bytes")
    unit = (m.group(2) or "B").upper()
    mult = 1 if unit == "B" else (1024 if "I" in unit else 1000) ** ("KMGT".index(unit[0]) + 1)
    return int(float(m.group(1)) * mult)


def write_tensor(f: BinaryIO, spec: TensorSpec, chunks: Iterable[torch.Tensor]) -> None:
    """Append one tensor's bytes, chunk by chunk (module-level so tests can interrupt a write here)."""
    written = 0
    for chunk in chunks:
        data = chunk.contiguous().reshape(-1).view(torch.uint8).numpy()
        f.write(data)
        written += data.nbytes
        del chunk, data  # free this chunk before the next one is computed
    if written != spec.nbytes:
        raise RuntimeError(f"wrote {written} bytes for `{spec.name}`, expected {spec.nbytes}")


def _write_shard(path: Path, specs: Sequence[tuple[int, TensorSpec]],
                 chunks: Callable[[int], Iterable[torch.Tensor]]) -> None:
    """A safetensors file whose header is written before the data, which then streams in."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for _, s in specs:
        header[s.name] = {"dtype": ST_NAMES[s.dtype], "shape": list(s.shape), "data_offsets": [offset, offset + s.nbytes]}
        offset += s.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for i, s in specs:
            write_tensor(f, s, chunks(i))


def write_checkpoint(d: Path, specs: Sequence[TensorSpec], chunks: Callable[[int], Iterable[torch.Tensor]],
                     max_shard_size: int | str = "5GB") -> list[str]:
    """Write ``specs`` (``chunks(i)`` yields tensor ``i``'s values in its dtype) as ``save_pretrained`` does.

    One ``model.safetensors``, or ``model-0000k-of-0000n.safetensors`` shards of at most
    ``max_shard_size`` bytes (a larger tensor gets a shard of its own, split greedily in order)
    plus ``model.safetensors.index.json``. Returns the file names written.
    """
    max_bytes = parse_size(max_shard_size)
    shards: list[list[tuple[int, TensorSpec]]] = [[]]
    size = 0
    for i, s in enumerate(specs):
        if shards[-1] and size + s.nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append((i, s))
        size += s.nbytes
    n = len(shards)
    names = [WEIGHTS_NAME] if n == 1 else [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]
    for fname, shard in zip(names, shards):
        _write_shard(d / fname, shard, chunks)
    if n > 1:
        index = {"metadata": {"total_size": sum(s.nbytes for s in specs)},
                 "weight_map": {s.name: fname for fname, shard in zip(names, shards) for _, s in shard}}
        (d / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    return names
