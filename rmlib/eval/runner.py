"""Running a suite: read the data, score its items (the only step that touches a model), and hand the
scores to the suite's metric function.

Scoring and metrics stay apart: everything after the score array is a pure function, so a cached score
file is enough to recompute every number, and tests can drive a suite with a deterministic fake scorer.
A scorer is a model with ``.score(prompts, responses, batch_size=..., show_progress=...)`` (e.g.
:class:`rmlib.RewardModel`) or a plain ``score_fn(prompts, responses) -> array`` of shape (N,) or
(N, heads); prompts are chat message lists (``[{"role": "user", "content": ...}, ...]``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rmlib.data.schema import DataError
from rmlib.eval.registry import Record, Scores, Suite, SuiteData, get_suite, make_options
from rmlib.eval.report import Report

__all__ = ["combine_heads", "distribution_kind", "evaluate", "load_scores", "load_suite", "model_outputs",
           "model_scores", "run_suite", "save_scores", "score_items"]

ScoreFn = Callable[[list[list[dict[str, str]]], list[str]], Any]


# ----------------------------------------------------------------------------------------- reading
def load_suite(suite: str | Suite, data: Any, *, split: str | None = None, options: Any = None,
               **option_kwargs: Any) -> SuiteData:
    """Read ``data`` (a list of records, a local .jsonl/.json/.parquet/.csv file (optionally .gz) or
    directory, or a hub dataset name) and parse every record with the suite's parser.

    Files are read by :func:`rmlib.data.formats.read_records`, the reader of the data layer; a bad
    record is a :class:`~rmlib.data.schema.DataError` naming the file, the record index and the field.
    ``split`` defaults to the suite's ``hub_split`` for a hub name. Options: a suite options object, a
    mapping, or keyword arguments (:func:`rmlib.eval.registry.make_options`).
    """
    s = get_suite(suite)
    opts = make_options(s, options, **option_kwargs)
    if s.read is not None:
        custom = s.read(s, data, split, opts)
        if custom is not None:
            return custom
    if isinstance(data, (list, tuple)):
        source, raw = "<records>", enumerate(data)
    else:
        from rmlib.data.formats import read_records

        if split is None and s.hub_split is not None and not Path(os.fspath(data)).exists():
            split = s.hub_split
        source, raw = str(data), read_records(data, split=split)
    items: list[dict[str, Any]] = []
    records = []
    for i, rec in raw:
        if isinstance(rec, DataError):
            raise rec
        if not isinstance(rec, Mapping):
            raise DataError(source, i, None, f"expected a JSON object, got {type(rec).__name__}", "wrong_type")
        records.append(s.parse(Record(rec, source, i, items), opts))
    if not records:
        raise DataError(source, None, None, "no records", "missing_field")
    return SuiteData(s.name, records, items, source, opts)


# ----------------------------------------------------------------------------------------- scoring
def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=float)


class PackedLists:
    """A decoder reward model whose ``score`` computes each prompt once (``shared_prompt=True``).

    Why: a suite of k responses per prompt (``Suite.lists``: best-of-k, RewardBench 2) then scores each
    record's list in one packed call, the prompt once instead of k times, with rewards equal to separate
    encoding to float rounding (the block mask of ``rmlib.data.collate.collate_shared_prompt``). Every
    other attribute is the model's own.
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    def score(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.score(*args, shared_prompt=True, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def for_suite(scorer: Any, suite: Suite) -> Any:
    """``scorer`` as a suite scores with it: a decoder reward model (``is_decoder_head``) packs the lists of
    a ``lists`` suite (:class:`PackedLists`); anything else (encoders, judges, score functions) is unchanged."""
    return PackedLists(scorer) if suite.lists and getattr(scorer, "is_decoder_head", False) else scorer


def model_scores(model: Any, prompts: Sequence[Any], responses: Sequence[str], *, batch_size: int = 16,
                 progress: bool = False, accelerator: Any = None) -> np.ndarray:
    """The one call from evaluation into a model: ``model.score`` on every item, in input order.

    With an ``accelerator`` of several processes every process must call this with the same items (the
    model on ``accelerator.device``); each scores a contiguous shard and gets all N scores back in input
    order. Only the main process shows a progress bar.
    """
    if accelerator is not None and not accelerator.is_main_process:
        progress = False
    return _to_numpy(model.score(prompts, responses, batch_size=batch_size, show_progress=progress,
                                 accelerator=accelerator))


def distribution_kind(scorer: Any) -> str | None:
    """The kind of distribution a model predicts (``RewardModel.distribution``), or None (scalar, or a score_fn)."""
    dist = getattr(scorer, "distribution", None)
    return None if dist is None else str(dist.kind)


def model_outputs(model: Any, prompts: Sequence[Any], responses: Sequence[str], *, batch_size: int = 16,
                  progress: bool = False, accelerator: Any = None) -> dict[str, np.ndarray]:
    """A distributional model's named outputs (``reward`` = its mean, ``std``, a rating model's ``probs``),
    through ``model.score_outputs``: the same scoring loop as :func:`model_scores`."""
    if accelerator is not None and not accelerator.is_main_process:
        progress = False
    outs = model.score_outputs(prompts, responses, batch_size=batch_size, show_progress=progress,
                               accelerator=accelerator)
    return {k: _to_numpy(v) for k, v in outs.items()}


def score_items(items: Sequence[Mapping[str, Any]], scorer: Any, *, batch_size: int | None = None,
                progress: bool = False, accelerator: Any = None) -> np.ndarray:
    """Scores of the items, (N,) or (N, heads), in order.

    A model (anything with ``.score``) is called once through :func:`model_scores` (it batches by
    length itself); a plain ``score_fn`` is called on chunks of ``batch_size`` items (all at once
    without it).
    """
    prompts = [list(it["prompt"]) for it in items]
    responses = [it["response"] for it in items]
    if hasattr(scorer, "score"):
        out = model_scores(scorer, prompts, responses, batch_size=batch_size or 16, progress=progress,
                           accelerator=accelerator)
        if out.shape[:1] != (len(items),):
            raise ValueError(f"model returned {out.shape[0]} scores for {len(items)} items")
        return out
    if accelerator is not None:
        raise ValueError("accelerator= needs a model with .score, not a plain score_fn")
    n = len(items)
    step = batch_size or max(n, 1)
    chunks: Any = range(0, n, step)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, total=(n + step - 1) // step, desc="scoring", unit="batch")
    parts = []
    for s in chunks:
        out = _to_numpy(scorer(prompts[s:s + step], responses[s:s + step]))
        size = len(prompts[s:s + step])
        if out.shape[:1] != (size,) or out.ndim not in (1, 2):
            raise ValueError(f"score_fn returned shape {out.shape} for {size} items; expected (N,) or (N, heads)")
        parts.append(out)
    return np.concatenate(parts, axis=0) if parts else np.zeros((0,))


def combine_heads(scores: np.ndarray, head_weights: Sequence[float] | Mapping[str, float] | None = None,
                  head_names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """(combined (N,), per-head (N, H) or None, head names).

    A (N,) or (N, 1) array is used as is. With H > 1 heads, ``head_weights`` (a list of H numbers, or
    {head name: weight} with unnamed heads weighing 0) gives ``combined = scores @ w``; without it the
    combination is ambiguous and a ``ValueError`` is raised rather than silently picking a head.
    """
    s = np.asarray(scores, dtype=float)
    if s.ndim not in (1, 2):
        raise ValueError(f"scores must be (N,) or (N, heads), got shape {s.shape}")
    if s.ndim == 1 or s.shape[1] == 1:
        flat = s.reshape(-1)
        if head_weights is None:
            return flat, None, ["score"]
        w = list(head_weights.values()) if isinstance(head_weights, Mapping) else list(head_weights)
        if len(w) != 1:
            raise ValueError(f"head_weights has {len(w)} entries but the scores have one head")
        return flat * float(w[0]), None, ["score"]
    h = s.shape[1]
    names = list(head_names) if head_names is not None else [f"head{i}" for i in range(h)]
    if len(names) != h:
        raise ValueError(f"head_names has {len(names)} names but the scores have {h} heads")
    if head_weights is None:
        raise ValueError(f"scores have {h} heads ({names}); pass head_weights to combine them")
    if isinstance(head_weights, Mapping):
        unknown = sorted(set(head_weights) - set(names))
        if unknown:
            raise ValueError(f"head_weights names unknown heads {unknown}; heads are {names}")
        w = np.array([float(head_weights.get(n, 0.0)) for n in names])
    else:
        w = np.asarray(head_weights, dtype=float)
        if w.shape != (h,):
            raise ValueError(f"head_weights has {w.size} entries but the scores have {h} heads")
    return s @ w, s, names


def _scores(raw: np.ndarray, suite: Suite, weights: Any, names: Sequence[str] | None) -> Scores:
    if suite.per_head and raw.ndim == 2 and raw.shape[1] > 1 and weights is None:
        heads = list(names) if names is not None else [f"head{i}" for i in range(raw.shape[1])]
        if len(heads) != raw.shape[1]:
            raise ValueError(f"head_names has {len(heads)} names but the scores have {raw.shape[1]} heads")
        return Scores(raw[:, 0], raw, heads, weighted=False)
    combined, per_head, heads = combine_heads(raw, weights, names)
    return Scores(combined, per_head, heads, weighted=per_head is not None and weights is not None)


# ------------------------------------------------------------------------------------------- cache
def save_scores(path: str | Path, items: Sequence[Mapping[str, Any]], scores: np.ndarray,
                head_names: Sequence[str] | None = None, *, distribution: str | None = None,
                outputs: Mapping[str, np.ndarray] | None = None) -> Path:
    """Cache scores with the items they belong to, so metrics can be recomputed without the model.

    ``.jsonl``: one ``{"prompt", "response", "score"}`` line per item (score a number or a list per head;
    with ``head_names``, every line also carries ``"heads": [names]``).
    ``.npy``: the array, plus a sidecar ``<stem>.json`` with ``{"items": [...], "heads": [...] or null}``.
    Head names let ``heads.weights`` by name work on a cache as it does on the model. A distributional
    model's ``outputs`` (``std``, ``probs``) and ``distribution`` kind are kept too (every jsonl line,
    the sidecar), so the divergence suite's uncertainty columns can be recomputed from the cache.
    """
    from rmlib.io import write_jsonl, write_text

    p = Path(path)
    s = np.asarray(scores, dtype=float)
    if s.shape[0] != len(items):
        raise ValueError(f"{s.shape[0]} scores for {len(items)} items")
    heads = list(head_names) if head_names is not None else None
    width = 1 if s.ndim == 1 else s.shape[1]
    if heads is not None and len(heads) != width:
        raise ValueError(f"{len(heads)} head names for scores with {width} heads")
    outs = {k: np.asarray(v, dtype=float) for k, v in (outputs or {}).items()}
    for k, v in outs.items():
        if v.shape[:1] != (len(items),):
            raise ValueError(f"output {k!r} has {v.shape[0] if v.ndim else 0} rows for {len(items)} items")
    dist = {"distribution": distribution} if distribution is not None else {}
    if p.suffix == ".npy":
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, s)
        write_text(json.dumps({"items": [dict(it) for it in items], "heads": heads, **dist,
                               "outputs": {k: v.tolist() for k, v in outs.items()}}), p.with_suffix(".json"))
    elif p.suffix == ".jsonl":
        extra = {"heads": heads} if heads is not None else {}
        write_jsonl(({"prompt": it["prompt"], "response": it["response"], "score": v.tolist(), **extra, **dist,
                      **{k: o[i].tolist() for k, o in outs.items()}}
                     for i, (it, v) in enumerate(zip(items, s))), p)
    else:
        raise ValueError(f"score cache must end in .jsonl or .npy, got {p.name!r}")
    return p


OUTPUT_KEYS = ("std", "probs")  # a distributional model's outputs beside the reward, as cached


def load_scores(path: str | Path, *, with_heads: bool = False, with_outputs: bool = False) -> Any:
    """Inverse of :func:`save_scores`: ``(items, scores)``, or ``(items, scores, head_names or None)`` with
    ``with_heads=True``; ``with_outputs=True`` appends ``(distribution kind or None, {name: array})``."""
    p = Path(path)
    if p.suffix == ".npy":
        s = np.load(p)
        side = json.loads(p.with_suffix(".json").read_text(encoding="utf-8"))
        items, heads = side["items"], side.get("heads")
        kind = side.get("distribution")
        outs = {k: np.asarray(v, dtype=float) for k, v in (side.get("outputs") or {}).items()}
    elif p.suffix == ".jsonl":
        from rmlib.data.formats import read_records

        rows = []
        for i, row in read_records(p):
            if isinstance(row, DataError):
                raise row
            for key in ("prompt", "response", "score"):
                if key not in row:
                    raise DataError(str(p), i, key, "missing from the score cache", "missing_field")
            rows.append(row)
        items = [{"prompt": r["prompt"], "response": r["response"]} for r in rows]
        s = np.array([r["score"] for r in rows], dtype=float)
        heads = rows[0].get("heads") if rows else None
        kind = rows[0].get("distribution") if rows else None
        outs = {}
        for k in OUTPUT_KEYS:
            if rows and k in rows[0]:
                missing = [i for i, r in enumerate(rows) if k not in r]
                if missing:
                    raise DataError(str(p), missing[0], k, "missing from the score cache (its first line has it)",
                                    "missing_field")
                outs[k] = np.array([r[k] for r in rows], dtype=float)
    else:
        raise ValueError(f"score cache must end in .jsonl or .npy, got {p.name!r}")
    out = (items, s, heads) if with_heads else (items, s)
    return (*out, kind, outs) if with_outputs else out


def _resolve_scores(data: SuiteData, scorer: Any, scores: Any, batch_size: int | None, progress: bool,
                    accelerator: Any, distribution: str | None = None
                    ) -> tuple[np.ndarray, list[str] | None, str | None, dict[str, np.ndarray]]:
    """(scores aligned with ``data.items``, head names from a model or a cache file or None, the
    distribution kind or None, a distributional model's outputs beside its reward)."""
    if (scorer is None) == (scores is None):
        raise ValueError("give exactly one of score_fn (or a model) or scores")
    if scorer is not None:
        kind = distribution_kind(scorer)
        if kind is not None:  # its reward is the mean; the spread comes with it from the same forward
            outs = model_outputs(scorer, [list(it["prompt"]) for it in data.items],
                                 [it["response"] for it in data.items], batch_size=batch_size or 16,
                                 progress=progress, accelerator=accelerator)
            return outs.pop("reward"), None, kind, outs
        raw = score_items(data.items, scorer, batch_size=batch_size, progress=progress, accelerator=accelerator)
        return raw, getattr(scorer, "attributes", None), None, {}
    if isinstance(scores, (str, Path)):
        items, arr, heads, kind, outs = load_scores(scores, with_heads=True, with_outputs=True)
        if len(items) != len(data.items):
            raise ValueError(f"score cache {scores} has {len(items)} items but the suite has {len(data.items)}")
        for i, (a, b) in enumerate(zip(items, data.items)):
            if a["response"] != b["response"] or list(a["prompt"]) != list(b["prompt"]):
                raise ValueError(f"score cache {scores} does not match the data at item {i}")
        return arr, heads, kind, outs
    outs: dict[str, np.ndarray] = {}
    if isinstance(scores, Mapping):  # a distributional model's named outputs (model_outputs)
        if "reward" not in scores or distribution is None:
            raise ValueError("named outputs as scores need a 'reward' entry and distribution= (the model's kind)")
        outs = {k: _to_numpy(v) for k, v in scores.items() if k != "reward"}
        scores = scores["reward"]
    elif distribution is not None:
        raise ValueError("distribution= goes with named outputs ({'reward', 'std', ...}) as scores")
    arr = _to_numpy(scores)
    if arr.shape[0] != len(data.items) or any(v.shape[:1] != arr.shape[:1] for v in outs.values()):
        raise ValueError(f"{arr.shape[0]} scores given but the suite has {len(data.items)} items")
    return arr, None, distribution, outs


# ------------------------------------------------------------------------------------------ running
def run_suite(suite: str | Suite, data: Any, score_fn: Any = None, *, scores: Any = None,
              head_weights: Sequence[float] | Mapping[str, float] | None = None,
              head_names: Sequence[str] | None = None, batch_size: int | None = None, progress: bool = False,
              split: str | None = None, cache: str | Path | None = None, accelerator: Any = None,
              distribution: str | None = None, options: Any = None, **option_kwargs: Any) -> Report:
    """Load ``data`` for ``suite``, score it (``score_fn``: a model with ``.score`` or a plain callable) or
    take ``scores`` (array aligned with the items, or a cache file from :func:`save_scores`), and compute
    the suite's metrics.

    ``data`` is records, a local file, a hub name, or a :class:`SuiteData` from :func:`load_suite` (whose
    options are then used; giving other options is an error). Options are the suite's options object, a
    mapping or keyword arguments; an option the suite does not take is a ``TypeError``. With several
    heads, ``head_weights`` (list by position or {name: weight}) defines the reward; a ``per_head`` suite
    (agreement) audits every head when it is not given. ``cache`` writes the raw scores (and head names)
    for reuse; head names stored in a cache, or a model's ``attributes``, are used when ``head_names`` is
    not given. ``scores`` may also be a distributional model's named outputs (:func:`model_outputs`) with
    ``distribution`` its kind; a model with ``.distribution`` is read that way by itself.
    """
    s = get_suite(suite)
    score_fn = for_suite(score_fn, s)
    if isinstance(data, SuiteData):
        if data.suite != s.name:
            raise ValueError(f"data was loaded for suite {data.suite!r}, not {s.name!r}")
        if options is not None or option_kwargs:
            opts = make_options(s, options, **option_kwargs)
            if opts != data.options:
                raise TypeError(f"the data was loaded with options {data.options}; pass options to load_suite")
        d = data
    else:
        d = load_suite(s, data, split=split, options=options, **option_kwargs)
    raw, found_heads, kind, outs = _resolve_scores(d, score_fn, scores, batch_size, progress, accelerator,
                                                   distribution=distribution)
    multi = raw.ndim == 2 and raw.shape[1] > 1
    if head_names is None and multi and found_heads is not None:
        head_names = list(found_heads)
    if cache is not None:
        save_scores(cache, d.items, raw, head_names if multi and head_names is not None else None,
                    distribution=kind, outputs=outs)
    if kind is not None and head_weights is not None:
        raise ValueError(f"head_weights combine the heads of a multi-attribute model; a {kind} model has one "
                         "reward (its mean)")
    sc = _scores(raw, s, head_weights, head_names)
    sc.distribution, sc.outputs = kind, outs
    report = s.metrics(d, sc, d.options)
    report.meta.update({"data": d.source, "records": len(d.records), "items_scored": len(d.items)})
    if kind is not None:
        report.meta["distribution"] = kind
    if sc.heads is not None:
        report.meta["heads"] = sc.head_names
        if head_weights is not None:
            report.meta["head_weights"] = (dict(head_weights) if isinstance(head_weights, Mapping)
                                           else [float(w) for w in head_weights])
    return report


def evaluate(model_or_score_fn: Any, suite: str | Suite, data: Any, **kwargs: Any) -> Report:
    """:func:`run_suite` with a model (anything with ``.score(prompts, responses)``, e.g.
    ``rmlib.RewardModel``) or a plain scoring callable; its output may be a tensor."""
    return run_suite(suite, data, model_or_score_fn, **kwargs)
