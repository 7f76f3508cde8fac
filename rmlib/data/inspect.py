"""``rmlib data inspect`` and ``rmlib data prepare``: look at a dataset before training on it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from rmlib.data.formats import load, write_jsonl
from rmlib.data.schema import DataError, JudgeExample, PreferencePair, RankedList, RatedResponse

PERCENTILES = (50, 90, 99, 100)


def _stats(values: list[int]) -> str:
    if not values:
        return "n/a"
    arr = np.asarray(values)
    parts = [f"mean {arr.mean():.1f}"] + [f"p{p} {np.percentile(arr, p):.0f}" for p in PERCENTILES]
    return ", ".join(parts)


def _texts(ex) -> tuple[list, list[str]]:
    if isinstance(ex, PreferencePair):
        return list(ex.prompt), [ex.chosen, ex.rejected]
    if isinstance(ex, RatedResponse):
        return list(ex.prompt), [ex.response]
    if isinstance(ex, RankedList):
        return list(ex.prompt), list(ex.responses)
    assert isinstance(ex, JudgeExample)
    return list(ex.prompt), [ex.response_1, ex.response_2]


def _require_examples(loaded, path: str) -> None:
    if not loaded.examples:
        raise DataError(path, None, None, f"no valid example in it\n{loaded.report.format()}", "no_records")


def inspect(path: str, format: str | None = None, *, tokenizer: str | None = None,
            on_invalid: str = "skip") -> str:
    """Detected format, counts, length statistics and the validation report, as text.

    Lengths are in words unless a tokenizer (path, hub name or built-in alias) is given, in which
    case prompts are measured as rendered by its chat template and responses as their own tokens.
    """
    loaded = load(path, format, on_invalid=on_invalid)
    _require_examples(loaded, path)
    lines = [f"source: {path}", f"format: {loaded.format} ({loaded.kind})", f"examples: {len(loaded.examples)}"]
    featurizer, unit = None, "words"
    if tokenizer:
        from transformers import AutoTokenizer

        from rmlib.data.tokenize import Featurizer
        from rmlib.io import resolve_model

        featurizer, unit = Featurizer(AutoTokenizer.from_pretrained(resolve_model(tokenizer)), 10**9), "tokens"
    prompt_len, resp_len, turns = [], [], Counter()
    for ex in loaded.examples:
        prompt, responses = _texts(ex)
        turns[len(prompt)] += 1
        if featurizer is not None:
            for r in responses:
                enc = featurizer.encode(prompt, r)
                resp_len.append(len(enc.ids) - enc.prompt_len)
            prompt_len.append(enc.prompt_len)
        else:
            prompt_len.append(sum(len(m["content"].split()) for m in prompt))
            resp_len += [len(r.split()) for r in responses]
    lines.append(f"prompt length ({unit}): {_stats(prompt_len)}")
    lines.append(f"response length ({unit}): {_stats(resp_len)}")
    lines.append("prompt messages: " + ", ".join(f"{k}: {v}" for k, v in sorted(turns.items())))
    if loaded.kind == "pairs":
        strengths = Counter(ex.strength for ex in loaded.examples)
        lines.append("strengths: " + ", ".join(f"{k}: {v}" for k, v in sorted(strengths.items(), key=str)))
        longer = sum(len(ex.chosen) > len(ex.rejected) for ex in loaded.examples)
        if loaded.examples:
            lines.append(f"chosen longer than rejected: {longer / len(loaded.examples):.1%}")
    if loaded.kind == "lists":
        sizes = Counter(len(ex.responses) for ex in loaded.examples)
        tied = sum(len(set(ex.scores)) < len(ex.scores) for ex in loaded.examples)
        lines.append("responses per list: " + ", ".join(f"{k}: {v}" for k, v in sorted(sizes.items())))
        lines.append(f"lists with a tie: {tied} of {len(loaded.examples)}")
    if loaded.kind == "ratings":
        attrs = Counter(a for ex in loaded.examples for a, v in ex.attributes.items() if v is not None)
        lines.append("attribute coverage: " + ", ".join(f"{a}: {n}" for a, n in attrs.items()))
    lines.append(loaded.report.format())
    return "\n".join(lines)


def prepare(path: str, out: str, format: str | None = None, *, on_invalid: str = "error") -> str:
    """Convert any supported format to canonical rmlib JSONL (atomically) and report what was kept."""
    loaded = load(path, format, on_invalid=on_invalid)
    _require_examples(loaded, path)  # an empty output is a failure, not a success that wrote nothing
    dest = write_jsonl(loaded.examples, Path(out))
    return f"wrote {len(loaded.examples)} {loaded.kind} to {dest} (from {loaded.format})\n{loaded.report.format()}"
