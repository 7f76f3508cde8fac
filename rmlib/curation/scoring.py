"""Scoring pairs for the consistency filter and the retrieval step: the one scoring loop, chunked.

A model given by path or alias (``minilm-l6``) is loaded with :meth:`rmlib.RewardModel.from_pretrained`
and scored with :meth:`~rmlib.RewardModel.score_pairs` (the one scoring loop,
:mod:`rmlib.models.scoring`), a chunk of pairs at a time so memory stays flat; the rewards are written as
a score file in the format of ``rmlib score`` (rows ``{index, chosen, rejected}``), which any step can read
back instead of scoring again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rmlib.curation.rules.table import PairTable
from rmlib.io import write_jsonl

__all__ = ["is_score_file", "score_table"]

CHUNK = 2048
"""Pairs per call into the scoring loop (bounds the memory of texts and token ids)."""


def is_score_file(source: str | os.PathLike) -> bool:
    """A ``.jsonl`` file is a score file; anything else (a directory, an alias, a hub id) is a model."""
    return str(source).lower().endswith((".jsonl", ".jsonl.gz")) and Path(source).is_file()


def score_table(model: Any, table: PairTable, path: str | os.PathLike, *, batch_size: int = 16,
                max_length: int | None = None) -> Path:
    """Score every pair of ``table`` with ``model`` (a :class:`rmlib.RewardModel`, a path or an alias) and
    write the score file ``path``. A multi-head model must be reduced to one reward first (a ValueError)."""
    import json

    from rmlib.models import RewardModel

    if not isinstance(model, RewardModel):
        kw = {} if max_length is None else {"max_length": max_length}
        model = RewardModel.from_pretrained(str(model), **kw)
    if len(model.attributes) != 1:
        raise ValueError(f"the consistency filter needs one reward per response; the model has heads "
                         f"{model.attributes}")

    def rows() -> Iterator[dict[str, Any]]:
        for batch in table.ds.iter(batch_size=CHUNK):
            prompts = [json.loads(p) for p in batch["prompt"]]
            c, r = model.score_pairs(prompts, batch["chosen"], batch["rejected"], batch_size=batch_size)
            for i, cv, rv in zip(batch["index"], c.tolist(), r.tolist()):
                yield {"index": int(i), "chosen": cv, "rejected": rv}

    return write_jsonl(rows(), path)
