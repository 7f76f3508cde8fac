"""Error-driven retrieval (Skywork-Reward-V2 stage 1): how many neighbours each pair asks for, and the search.

Skywork-Reward-V2 (Liu et al., arXiv 2507.01352) grows its curated set where the current reward model is
wrong or unsure: for a labelled pair with p = σ(r_c − r_r) under the current model it retrieves the
k most similar pairs of the unlabelled pool, k = k_max when p ≤ 0.5 and ⌈k_max·(1 − p)⌉ otherwise
(k_max = 8), and those become the next batch to annotate. This module is the part that needs no model:
:func:`retrieval_k` and the nearest-neighbour search over L2-normalised embeddings (cosine similarity =
inner product). Embedding with a model is the layer above (:mod:`rmlib.curation.embed`).

Two search backends, both exact: ``numpy`` (the default: a blocked matrix product and ``argpartition``
over a memory-mapped pool, bounded memory, no dependency) and ``faiss`` (``faiss.IndexFlatIP``, the exact
index of faiss-cpu, which holds the whole pool in memory). bench/curation_throughput.py measured them equal
within 10 % on a 100k-pair pool (docs/curation.md), so the default is the one without a dependency and with
bounded memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = ["retrieval_k", "search", "select_batch"]

Backend = Literal["numpy", "faiss"]
DEFAULT_K_MAX = 8
_BLOCK_ELEMENTS = 1 << 24  # float32 similarities per numpy block (64 MB)


def retrieval_k(p: float | Sequence[float] | np.ndarray, k_max: int = DEFAULT_K_MAX) -> np.ndarray:
    """k = k_max if p ≤ 0.5 else ⌈k_max·(1 − p)⌉ (Skywork-Reward-V2), elementwise, as int64.

    k_max·(1 − p) is rounded to 9 decimals before the ceiling, so p = 0.875, k_max = 8 gives exactly 1
    and not 2 from a float error in 1 − p. A pair with p = 1 gets k = 0.
    """
    if k_max < 1:
        raise ValueError(f"k_max must be >= 1, got {k_max}")
    p = np.asarray(p, dtype=float)
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p must be probabilities in [0, 1]")
    return np.where(p <= 0.5, k_max, np.ceil(np.round(k_max * (1.0 - p), 9))).astype(np.int64)


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def search(queries: np.ndarray, pool: np.ndarray, k: int, *, backend: Backend = "numpy",
           block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, pool indices), each (len(queries), min(k, len(pool))), best first, exact.

    ``pool`` may be a ``np.memmap``: the numpy backend reads it ``block`` rows at a time (default: as many
    as keep the queries × block similarities near 64 MB) and merges each block's top k into a running top
    k, so memory is bounded whatever the pool size. Results are ordered by similarity, ties by the lower
    pool index; an exact tie at the k-th place may keep either of the tied indices.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    m = int(pool.shape[0])
    k = min(int(k), m)
    if k <= 0 or q.shape[0] == 0:
        return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
    if backend not in ("numpy", "faiss"):
        raise ValueError(f"backend must be numpy or faiss, got {backend!r}")
    if backend == "faiss":
        faiss = _faiss()
        if faiss is None:
            raise ImportError("backend='faiss' needs `pip install faiss-cpu` (or `pip install rmlib[curation]`)")
        index = faiss.IndexFlatIP(q.shape[1])
        for s in range(0, m, block or 65_536):
            index.add(np.ascontiguousarray(pool[s:s + (block or 65_536)], dtype=np.float32))
        sims, idx = index.search(q, k)
        return _tie_order(sims, idx.astype(np.int64))
    # pool rows per block: the (queries × block) similarity matrix stays near 64 MB whatever the sizes
    rows = block or max(256, min(65_536, _BLOCK_ELEMENTS // q.shape[0]))
    best_s = np.full((q.shape[0], 0), -np.inf, np.float32)
    best_i = np.zeros((q.shape[0], 0), np.int64)
    for s in range(0, m, rows):
        sims = q @ np.asarray(pool[s:s + rows], dtype=np.float32).T
        if sims.shape[1] > k:  # the block's own top k first: only 2k candidates per query are merged
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            sims, idx = np.take_along_axis(sims, part, 1), part + s
        else:
            idx = np.broadcast_to(np.arange(s, s + sims.shape[1]), sims.shape)
        best_s, best_i = _tie_order(np.concatenate([best_s, sims], 1), np.concatenate([best_i, idx], 1))
        best_s, best_i = best_s[:, :k], best_i[:, :k]
    return best_s, best_i


def _tie_order(sims: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((idx, -sims), axis=1) if sims.size else np.zeros(sims.shape, np.int64)
    return np.take_along_axis(sims, order, 1), np.take_along_axis(idx, order, 1)


def select_batch(p: np.ndarray, queries: np.ndarray, pool: np.ndarray, *, k_max: int = DEFAULT_K_MAX,
                 max_p: float = 1.0, backend: Backend = "numpy", block: int | None = None
                 ) -> tuple[np.ndarray, dict[int, list[int]], dict[int, float]]:
    """The next annotation batch: ``(k per seed, {pool index: seeds that retrieved it}, {pool index: best
    similarity})``; every seed (labelled pair with ``p <= max_p``) takes its own :func:`retrieval_k` nearest
    pool pairs, and a pool pair retrieved by several seeds appears once."""
    k = retrieval_k(p, k_max)
    k[np.asarray(p) > max_p] = 0
    seeds = np.flatnonzero(k > 0)
    by_pool: dict[int, list[int]] = {}
    best: dict[int, float] = {}
    for s in range(0, seeds.size, 4096):  # bounded query blocks: memory flat in the number of seeds
        chunk = seeds[s:s + 4096]
        sims, idx = search(queries[chunk], pool, int(k[chunk].max()), backend=backend, block=block)
        for row, seed in enumerate(chunk.tolist()):
            for j in range(min(int(k[seed]), idx.shape[1])):
                i = int(idx[row, j])
                by_pool.setdefault(i, []).append(seed)
                best[i] = max(best.get(i, -math.inf), float(sims[row, j]))
    return k, by_pool, best
