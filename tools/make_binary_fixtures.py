"""Write the binary sample files of ``rmlib/data/samples/formats/`` (run once; the output is committed).

Parquet cannot be hand-written like JSONL, so the records live here as Python literals and
pyarrow writes them with the column types the hub dataset uses (UltraFeedback-binarized:
``chosen``/``rejected`` as lists of {content, role} structs, float64 scores).

    python tools/make_binary_fixtures.py
"""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FORMATS_DIR = Path(__file__).resolve().parent.parent / "rmlib" / "data" / "samples" / "formats"


def _conv(prompt: str, answer: str) -> list[dict[str, str]]:
    return [{"content": prompt, "role": "user"}, {"content": answer, "role": "assistant"}]


ULTRAFEEDBACK = [
    ("How many legs does a spider have?", "uf-0001",
     "Spiders have eight legs, arranged in four pairs attached to the cephalothorax.",
     "Spiders have six legs, like all insects.", 9.0, 3.5),
    ("Write a haiku about autumn rain.", "uf-0002",
     "Cold rain on maples\nred leaves loosen one by one\nthe gutter runs gold",
     "Autumn rain is wet. It falls down from the grey sky. I like the season.", 8.0, 5.0),
    ("Convert 100 degrees Fahrenheit to Celsius.", "uf-0003",
     "(100 - 32) x 5/9 = 37.8 degrees Celsius.",
     "100 degrees Fahrenheit is 212 degrees Celsius.", 10.0, 2.0),
    ("Give me a one-sentence summary of photosynthesis.", "uf-0004",
     "Photosynthesis is the process by which plants use light energy to turn carbon dioxide and water "
     "into glucose and oxygen.",
     "Plants eat sunlight.", 8.5, 4.0),
    ("What is the capital of Australia?", "uf-0005",
     "The capital of Australia is Canberra.",
     "The capital of Australia is Sydney, its largest city.", 9.5, 1.0),
]

MESSAGE = pa.struct([("content", pa.string()), ("role", pa.string())])
SCHEMA = pa.schema([
    ("prompt", pa.string()), ("prompt_id", pa.string()),
    ("chosen", pa.list_(MESSAGE)), ("rejected", pa.list_(MESSAGE)), ("messages", pa.list_(MESSAGE)),
    ("score_chosen", pa.float64()), ("score_rejected", pa.float64()),
])


def write_ultrafeedback(path: Path) -> None:
    rows = [{"prompt": p, "prompt_id": pid, "chosen": _conv(p, c), "rejected": _conv(p, r),
             "messages": _conv(p, c), "score_chosen": sc, "score_rejected": sr}
            for p, pid, c, r, sc, sr in ULTRAFEEDBACK]
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)


if __name__ == "__main__":
    write_ultrafeedback(FORMATS_DIR / "ultrafeedback.parquet")
