"""The curation steps that run models: scoring pairs with rmlib models then filtering them by rules, and
error-driven retrieval (score, embed, search). Both build on the model-free steps of :mod:`rmlib.curation.rules`."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rmlib.curation.embed import DEFAULT_EMBEDDER, KEYS, Embedder, embed_table
from rmlib.curation.rules.consistency import filter_on_scores, read_score_file
from rmlib.curation.rules.dedup import keys_batch
from rmlib.curation.rules.retrieval import DEFAULT_K_MAX, Backend, select_batch
from rmlib.curation.rules.table import (
    DATA_FILE,
    PairTable,
    StepReport,
    check_not_inside,
    map_columns,
    pair_row,
    read_pairs,
    step_output,
    write_rows,
)
from rmlib.curation.scoring import is_score_file, score_table
from rmlib.data.schema import DataError, OnInvalid

__all__ = ["retrieve_pairs", "score_and_filter"]


def score_and_filter(source: str | os.PathLike, out_dir: str | os.PathLike, models: Mapping[str, Any], *,
                     batch_size: int = 16, max_length: int | None = None, format: str | None = None,
                     on_invalid: OnInvalid = "error", **kwargs: Any) -> StepReport:
    """The consistency filter with models: each of ``models`` (name → model directory, alias,
    :class:`rmlib.RewardModel`, score file or (chosen, rejected) arrays) is scored first if needed, then
    :func:`rmlib.curation.rules.filter_on_scores` applies the rules (``kwargs`` are its options).

    Rewards computed here are kept in the output as ``scores_<name>.jsonl`` (the ``rmlib score`` format), so a
    second run with other rules reads them instead of scoring again.
    """
    check_not_inside(source, out_dir)
    scores: dict[str, Any] = {}
    attach: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="rmlib-curation-") as tmp:
        table = None
        for name, m in models.items():
            if isinstance(m, (tuple, list)) or (isinstance(m, (str, os.PathLike)) and is_score_file(m)):
                scores[name] = m
                continue
            if table is None:
                table = read_pairs(source, tmp, format=format, on_invalid=on_invalid)
            path = os.path.join(tmp, f"scores_{name}.jsonl")
            score_table(m, table, path, batch_size=batch_size, max_length=max_length)
            scores[name] = attach[f"scores_{name}.jsonl"] = path
        return filter_on_scores(source, out_dir, scores, format=format, on_invalid=on_invalid, attach=attach,
                                **kwargs)


def retrieve_pairs(labeled: str | os.PathLike, pool: str | os.PathLike, out_dir: str | os.PathLike,
                   scores: Any, *, embedder: str | Embedder = DEFAULT_EMBEDDER, key: str = "pair",
                   k_max: int = DEFAULT_K_MAX,
                   max_p: float = 1.0, backend: Backend = "numpy", batch_size: int = 16,
                   format: str | None = None, pool_format: str | None = None, on_invalid: OnInvalid = "error",
                   max_examples: int = 3, exclude: Sequence[str | os.PathLike] = ()) -> StepReport:
    """Error-driven retrieval (Skywork-Reward-V2 stage 1): the next annotation batch from ``pool``.

    ``scores`` are the current model's rewards of the ``labeled`` pairs: a score file, (chosen, rejected)
    arrays, or a model (scored here; the file is kept as ``scores.jsonl``). Each labelled pair with
    p = σ(r_c − r_r) ≤ ``max_p`` retrieves its k = :func:`~rmlib.curation.rules.retrieval_k` most similar pool
    pairs (cosine similarity of :class:`~rmlib.curation.embed.Embedder` embeddings of each pair's ``key`` text:
    ``pair``, or ``prompt_attributes``, the conversation with its preference attributes as the paper embeds). ``data.jsonl`` holds the
    retrieved pool pairs once each, in pool order, with ``meta.curation = {retrieved_by: [labelled indices],
    similarity: best}``; the pool pairs not retrieved are counted as ``not_retrieved``.

    ``exclude``: files of pairs already taken from the pool (an earlier round's retrieval or annotation).
    A pool pair found there, in either order (an annotator may have swapped chosen and rejected), cannot
    be retrieved again and is counted as ``already_taken``; the seeds take their nearest pairs among the
    rest, so a later round grows the silver data instead of retrieving the same pairs.
    """
    for src in (labeled, pool):
        check_not_inside(src, out_dir)
    if key not in KEYS:
        raise ValueError(f"retrieval key must be one of {KEYS}, got {key!r}")
    report = StepReport("retrieve", str(pool), {"labeled": str(labeled), "key": key, "k_max": k_max, "max_p": max_p,
                                                "k": "k_max if p <= 0.5 else ceil(k_max * (1 - p))",
                                                "embedder": embedder if isinstance(embedder, str) else embedder.name},
                        max_examples=max_examples)
    with step_output(out_dir, report) as (stage, work):
        lab = read_pairs(labeled, work, format=format, on_invalid=on_invalid, name="labeled")
        table = read_pairs(pool, work, format=pool_format, on_invalid=on_invalid, name="pool")
        report.source, report.read = table.source, table.report.to_dict()
        report.extra["labeled_read"] = lab.report.to_dict()
        report.n_in = len(table)
        if isinstance(scores, (tuple, list)):
            c, r = (np.asarray(x, dtype=float).reshape(-1) for x in scores)
        else:
            if not (isinstance(scores, (str, os.PathLike)) and is_score_file(scores)):
                scores = score_table(scores, lab, stage / "scores.jsonl", batch_size=batch_size)
            c, r = read_score_file(scores, len(lab))
        if c.size != len(lab):
            raise ValueError(f"{c.size} scores for {len(lab)} labelled pairs")
        p = 1.0 / (1.0 + np.exp(-(c - r)))
        emb = embedder if isinstance(embedder, Embedder) else Embedder(embedder)
        queries = embed_table(emb, lab, work / "labeled.npy", key=key)
        pool_emb = embed_table(emb, table, work / "pool.npy", key=key)
        taken = _taken(table, exclude, work, format=pool_format, on_invalid=on_invalid)
        if taken.any():  # search only the eligible rows, copied chunk-wise into a memory map, then map back
            rows = np.flatnonzero(~taken)
            sub = np.lib.format.open_memmap(work / "eligible.npy", mode="w+", dtype=np.float32,
                                            shape=(rows.size, pool_emb.shape[1]))
            for a in range(0, rows.size, 65536):
                sub[a:a + 65536] = pool_emb[rows[a:a + 65536]]
            k, by_sub, best_sub = select_batch(p, queries, sub, k_max=k_max, max_p=max_p, backend=backend)
            by_pool = {int(rows[i]): v for i, v in by_sub.items()}
            best = {int(rows[i]): v for i, v in best_sub.items()}
            del sub
        else:
            k, by_pool, best = select_batch(p, queries, pool_emb, k_max=k_max, max_p=max_p, backend=backend)
        selected = np.zeros(len(table), dtype=bool)
        selected[list(by_pool)] = True
        if exclude:
            report.remove("already_taken", int(taken.sum()))
            if taken.all():  # nothing left to annotate: say so here, not as an empty file downstream
                raise DataError(table.source, None, None, f"all {len(table)} pool pairs are in the exclude "
                                f"files ({', '.join(map(str, exclude))}); the pool is used up: stop the rounds "
                                "or add pairs to the pool", "pool_used_up")
        report.remove("not_retrieved", int((~selected & ~taken).sum()))
        report.n_out = write_rows(table, stage / DATA_FILE, selected, make=lambda row: pair_row(row, curation={
            "retrieved_by": sorted(by_pool[row["index"]]), "similarity": round(best[row["index"]], 6)}))
        seeds = k > 0
        report.extra.update({
            "backend": backend, "labeled": len(lab), "exclude": [str(e) for e in exclude], "seeds": int(seeds.sum()),
            "seeds_wrong": int(((p <= 0.5) & seeds).sum()), "requested": int(k.sum()),
            "k_counts": {int(v): int((k == v).sum()) for v in np.unique(k)},
            "p_mean": float(p.mean()) if p.size else None})
        del queries, pool_emb
    return report


def _taken(table: PairTable, exclude: Sequence[str | os.PathLike], work: Path, *, format: str | None,
           on_invalid: OnInvalid) -> np.ndarray:
    """Which pool rows appear in the ``exclude`` files, in either order (dedup's pair keys)."""
    taken = np.zeros(len(table), dtype=bool)
    if not exclude:
        return taken
    pool = map_columns(table, keys_batch, {"key": np.int64, "swap": np.int64}, None)
    seen: list[np.ndarray] = []
    for i, path in enumerate(exclude):
        other = read_pairs(path, work / f"exclude-{i}", format=format, on_invalid=on_invalid, name=f"exclude-{i}")
        keys = map_columns(other, keys_batch, {"key": np.int64, "swap": np.int64}, None)
        seen += [keys["key"], keys["swap"]]
    known = np.unique(np.concatenate(seen)) if seen else np.empty(0, np.int64)
    return np.isin(pool["key"], known)
