"""The canonical pass of the feature cache: validated examples → Arrow rows, one record at a time.

Why its own module: :func:`rmlib.data.features.build_features` plans the pass (in this process, or over
byte ranges / row groups in worker processes) and this module holds what one pass or one part does: the
canonical schema per data kind, the row each example becomes (texts, the hashes of its prompt and of the
whole example, the label values the loss reads), and the workers' entry points.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

from rmlib.data import judge_features
from rmlib.data.labels import read_labels
from rmlib.data.schema import ValidationReport

#: labels held as one value per attribute (``targets``, ratings) or per response (``scores``, lists): list
#: columns of their own, not the scalar ``label_<name>`` columns of the other labels
LIST_LABELS = ("targets", "scores")


def hash64(text: str) -> int:
    """A stable 64-bit hash (first 8 bytes of SHA-1): prompts and examples are compared by it."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "little", signed=True)


def canonical_features(kind: str, labels: Sequence[str]):
    import datasets

    v = datasets.Value
    cols = {"index": v("int64"), "prompt": v("string"), "prompt_hash": v("int64"), "content_hash": v("int64"),
            "split": v("string")}
    if kind == "pairs":
        cols.update({"chosen": v("string"), "rejected": v("string")})
    elif kind == "judge":
        cols.update(judge_features.canonical_columns(v))
    elif kind == "lists":  # JSON lists: one string column each, whatever k
        cols.update({"responses": v("string"), "scores": v("string")})
    else:
        cols.update({"response": v("string"), "scores": v("string")})
    cols.update({f"label_{n}": v("float64") for n in labels if n not in LIST_LABELS})
    return datasets.Features(cols)


def write_examples(examples: Iterator, path: str, kind: str, labels: Sequence[str],
                    attributes: Sequence[str] | None) -> tuple[int, list[str]]:
    """Examples → one canonical Arrow file, one at a time; returns (rows, attributes in order of first
    appearance, or ``attributes`` when given)."""
    from datasets.arrow_writer import ArrowWriter

    names: list[str] = list(attributes) if attributes is not None else []
    n = 0
    with ArrowWriter(features=canonical_features(kind, labels), path=path, writer_batch_size=1000) as w:
        for ex in examples:
            d = ex.to_dict()
            prompt = json.dumps(d["prompt"], ensure_ascii=False)
            meta = d.get("meta") or {}
            row = {"index": n, "prompt": prompt, "prompt_hash": hash64(json.dumps(d["prompt"], sort_keys=True)),
                   "content_hash": hash64(json.dumps({k: v for k, v in d.items() if k != "meta"}, sort_keys=True,
                                                     default=str)),
                   "split": None if meta.get("split") is None else str(meta["split"])}
            if kind == "pairs":
                row.update({"chosen": ex.chosen, "rejected": ex.rejected})
            elif kind == "ratings":
                row.update({"response": ex.response, "scores": json.dumps(dict(ex.attributes))})
                if attributes is None:
                    names += [a for a in ex.attributes if a not in names]
            elif kind == "lists":
                row.update({"responses": json.dumps(list(ex.responses), ensure_ascii=False),
                            "scores": json.dumps(list(ex.scores))})
            else:
                row.update(judge_features.canonical_row(ex))
            values = read_labels(ex, [x for x in labels if x not in LIST_LABELS])
            row.update({f"label_{k}": None if v is None else float(v) for k, v in values.items()})
            w.write(row)
            n += 1
        w.finalize()
    return n, names


def count_part(file: str, start: int, stop: int) -> tuple[int, int]:
    from rmlib.data.formats import count_jsonl_part

    return count_jsonl_part(file, start, stop)


def canonical_part(job: tuple, part: Any, out: str) -> tuple[str, int, ValidationReport, list[str]]:
    """One part of the file through the readers into its own canonical shard (runs in a worker)."""
    from rmlib.data.formats import stream_part

    file, fmt, kind, column_map, on_invalid, max_examples, labels, attributes = job
    st = stream_part(file, fmt, part, column_map=column_map, on_invalid=on_invalid, max_examples=max_examples)
    n, names = write_examples(st.examples, out, kind, labels, attributes)
    return out, n, st.report, names
