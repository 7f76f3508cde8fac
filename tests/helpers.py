"""Small builders shared by the tests (one place, no copy-pasted test bodies)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

WORDS = "the a of to and is in that it for on with as you what how answer question number sum list".split()
ATTRS = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]


def _sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def write_pairs(path: Path, n: int = 200, seed: int = 0, *, strength: bool = True, votes: bool = False) -> Path:
    """Canonical pairs with a signal a tiny model learns in a few steps: chosen starts with 'yes'."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            row = {"prompt": [{"role": "user", "content": f"{i} " + _sentence(rng, 3, 12)}],
                   "chosen": "yes " + _sentence(rng, 2, 10), "rejected": "no " + _sentence(rng, 2, 10),
                   "strength": rng.choice([1, 2, 3]) if strength else None,
                   "votes": [rng.choice([1, 2, -1]) for _ in range(3)] if votes else None, "meta": {}}
            f.write(json.dumps(row) + "\n")
    return path


def write_ratings(path: Path, n: int = 200, seed: int = 0) -> Path:
    """Ratings whose helpfulness follows the leading word; some attributes missing."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            good = rng.random() < 0.5
            attrs = {a: (4.0 if good else 0.0) if a == "helpfulness" else float(rng.randint(0, 4)) for a in ATTRS}
            if i % 7 == 0:
                attrs["verbosity"] = None
            row = {"prompt": [{"role": "user", "content": f"{i} " + _sentence(rng, 3, 12)}],
                   "response": ("yes " if good else "no ") + _sentence(rng, 2, 10), "attributes": attrs, "meta": {}}
            f.write(json.dumps(row) + "\n")
    return path


def write_config(path: Path, **sections) -> Path:
    import yaml  # pyyaml comes with omegaconf

    path.write_text(yaml.safe_dump(sections))
    return path


def run_cli(*args: str, env: dict | None = None, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    import os

    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "rmlib", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"rmlib {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def load_weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


LIST_WORDS = ("great", "good", "ok", "bad")  # the learnable ranking of write_lists: best first


def write_lists(path: Path, n: int = 64, seed: int = 0, *, k: int = 4, ties: bool = True) -> Path:
    """Canonical ranked lists a tiny model learns: a response's score follows its leading word
    (great > good > ok > bad); with ``ties`` every third list has two responses sharing a score."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            ranks = rng.sample(range(len(LIST_WORDS)), k)
            scores = [float(len(LIST_WORDS) - r) for r in ranks]
            words = [LIST_WORDS[r] for r in ranks]
            if ties and i % 3 == 0:
                scores[1] = scores[0]
            row = {"prompt": [{"role": "user", "content": f"{i} " + _sentence(rng, 3, 12)}],
                   "responses": [f"{w} " + _sentence(rng, 2, 10) for w in words], "scores": scores, "meta": {}}
            f.write(json.dumps(row) + "\n")
    return path
