"""Generate ``rmlib/data/samples/judge_learnable.jsonl``: a small judge dataset a tiny model learns fast.

    python tools/make_judge_sample.py [--out DIR] [--seed N]

Deterministic (standard library plus ``rmlib.data.schema``). Each record is a
:class:`~rmlib.data.schema.JudgeExample`: a short question (an addition, a capital city), one response
that answers it and one that refuses or changes the subject, and an annotator-style justification
ending in a preference statement written the ways HelpSteer2-Preference annotators write it (plain,
or prefixed by "Overall, ", "Therefore, ", "For these reasons, "; or "@Response N is the better
response because ..."). The better response is in position 1 or 2 with equal frequency, so a
position prior scores 50%. ``meta.split`` is ``train`` (80%) or ``test`` (20%); the numbers and
countries of test questions never appear in train questions.

Why a second judge sample: ``judge.jsonl`` (from ``tools/make_samples.py``) needs a real language
model to judge; this one has a signal (answer versus non-answer) that a two-layer model trained for a
few seconds on a CPU picks up, so tests can check end to end that training moves the verdicts.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from rmlib.data.schema import make_judge

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "rmlib" / "data" / "samples"
NAME = "judge_learnable.jsonl"
CAPITALS = [("France", "Paris"), ("Spain", "Madrid"), ("Italy", "Rome"), ("Japan", "Tokyo"), ("Egypt", "Cairo"),
            ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Chile", "Santiago"), ("Cuba", "Havana"), ("Norway", "Oslo"),
            ("Greece", "Athens"), ("Poland", "Warsaw"), ("Canada", "Ottawa"), ("Ireland", "Dublin"),
            ("Austria", "Vienna"), ("Portugal", "Lisbon"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"),
            ("Hungary", "Budapest"), ("Thailand", "Bangkok")]
NON_ANSWERS = ["I cannot help with that.", "Sorry, I do not know.", "Please ask me something else.",
               "I will not answer this question.", "Let us talk about the weather instead.", "No comment."]
PREFIXES = ["", "Overall, ", "Therefore, ", "For these reasons, ", "So "]


def _justification(rng: random.Random, good: int, what: str) -> str:
    bad = 3 - good
    first = rng.choice([f"@Response {bad} does not answer the question, while @Response {good} gives {what}.",
                        f"@Response {good} gives {what}. @Response {bad} avoids the question."])
    form = rng.randrange(6)
    if form == 5:
        return f"{first} @Response {good} is the better response because it answers the question."
    end = rng.choice([f"@Response {good} is better than @Response {bad}.", f"@Response {good} is much better."])
    return f"{first} {PREFIXES[form % len(PREFIXES)]}{end}"


def records(seed: int = 0) -> list[dict]:
    rng = random.Random(f"{seed}/judge_learnable")
    sums = [(a, b) for a in range(2, 40) for b in range(2, 40) if a < b]
    rng.shuffle(sums)
    capitals = CAPITALS[:]
    rng.shuffle(capitals)
    items = []
    for i, (a, b) in enumerate(sums[:300]):
        items.append(("test" if i % 5 == 0 else "train", f"What is {a} + {b}?", f"{a} + {b} = {a + b}.",
                      "the correct sum"))
    for i, (country, city) in enumerate(capitals):
        for k in range(5):  # five phrasings per country, all on the country's side of the split
            q = [f"What is the capital of {country}?", f"Which city is the capital of {country}?",
                 f"Name the capital of {country}.", f"Tell me the capital city of {country}.",
                 f"What city is the capital of {country}?"][k]
            items.append(("test" if i % 5 == 0 else "train", q, f"The capital of {country} is {city}.",
                          "the right capital"))
    rng.shuffle(items)
    out = []
    for n, (split, question, answer, what) in enumerate(items):
        good = 1 + n % 2
        non = rng.choice(NON_ANSWERS)
        r1, r2 = (answer, non) if good == 1 else (non, answer)
        ex = make_judge(NAME, n, [{"role": "user", "content": question}], r1, r2, _justification(rng, good, what),
                        good, strength=2, meta={"split": split})
        out.append(ex.to_dict())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SAMPLES_DIR, help="output directory (default: the bundled samples)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = records(args.seed)
    with open(args.out / NAME, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} records to {args.out / NAME}")


if __name__ == "__main__":
    main()
