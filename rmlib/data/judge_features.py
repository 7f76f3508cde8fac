"""The judge kind in the Arrow feature cache (:mod:`rmlib.data.features`): columns, tokenization, rows.

The feature cache calls these for ``kind == "judge"`` so that its own code stays one dispatch per stage.
A judge row stores its original sequence (``seq_0``) and, with flip augmentation, the flipped one
(``seq_1``, empty otherwise), each with its number of prompt tokens (``plen_k``; those positions carry
no loss), plus ``n_target``, the item's target tokens: what the justifier loss counts and divides by.

Options (``data_options`` of the loss, part of the cache key): ``target`` (one of
:data:`rmlib.data.judge.TARGETS`) and ``flip`` (bool).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rmlib.data.judge import TARGETS, JudgeEncoder, JudgeFeatures
from rmlib.data.schema import JudgeExample
from rmlib.data.tokenize import Encoded

DEFAULT_OPTIONS = {"target": "elaboration_statement", "flip": True}


def check_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The judge data options with defaults filled in; an unknown key or value is a ValueError."""
    opts = {**DEFAULT_OPTIONS, **dict(options or {})}
    unknown = sorted(set(opts) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ValueError(f"unknown judge data option(s) {unknown}; accepted: {sorted(DEFAULT_OPTIONS)}")
    if opts["target"] not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {opts['target']!r}")
    if not isinstance(opts["flip"], bool):
        raise ValueError(f"flip must be true or false, got {opts['flip']!r}")
    return opts


def canonical_columns(v) -> dict:
    """Canonical-stage columns of a judge example (``v`` is ``datasets.Value``)."""
    return {"response_1": v("string"), "response_2": v("string"), "justification": v("string"),
            "better": v("int8")}


def canonical_row(ex: JudgeExample) -> dict[str, Any]:
    return {"response_1": ex.response_1, "response_2": ex.response_2, "justification": ex.justification,
            "better": ex.better}


def tokenized_columns(datasets) -> dict:
    ids, v = datasets.Sequence(datasets.Value("int32")), datasets.Value
    return {"seq_0": ids, "plen_0": v("int32"), "seq_1": ids, "plen_1": v("int32"), "n_target": v("int32"),
            "n_tokens": v("int32"), "drop": v("string"), "truncated": v("int8")}


def tokenize_batch(batch: dict, *, tokenizer, max_length: int, options: Mapping[str, Any]) -> dict:
    """One ``datasets.map`` batch of canonical judge rows → token columns; a row too long keeps its place
    with ``drop="too_long"`` (counted in the report like the other kinds' drops)."""
    opts = check_options(options)
    examples = [JudgeExample(tuple(json.loads(p)), r1, r2, j, int(b))
                for p, r1, r2, j, b in zip(batch["prompt"], batch["response_1"], batch["response_2"],
                                           batch["justification"], batch["better"])]
    feats = JudgeEncoder(tokenizer, max_length).encode_examples(examples, target=opts["target"], flip=opts["flip"])
    out: dict[str, list] = {k: [] for k in ("seq_0", "plen_0", "seq_1", "plen_1", "n_target", "n_tokens", "drop",
                                            "truncated")}
    for f in feats:
        seqs = f.seqs if f is not None else []
        for k in range(2):
            s = seqs[k] if k < len(seqs) else Encoded([], 0)
            out[f"seq_{k}"].append(s.ids)
            out[f"plen_{k}"].append(s.prompt_len)
        out["n_target"].append(f.n_target if f is not None else 0)
        out["n_tokens"].append(f.n_tokens if f is not None else 0)
        out["drop"].append("" if f is not None else "too_long")
        out["truncated"].append(0)
    return out


def take_row(rows: Mapping[str, list], j: int) -> JudgeFeatures:
    """Row ``j`` of a batch read from the table as :class:`~rmlib.data.judge.JudgeFeatures`."""
    seqs = [Encoded(list(rows[f"seq_{k}"][j]), int(rows[f"plen_{k}"][j])) for k in range(2) if rows[f"seq_{k}"][j]]
    return JudgeFeatures(seqs, int(rows["index"][j]))
