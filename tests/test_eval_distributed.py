"""`rmlib eval` on two real CPU processes (gloo) through `accelerate launch`.

`model.score(..., accelerator=...)` splits the items into contiguous shards, scores them, and gathers
them in input order; only the main process
writes the report. With batch size 1 every item's score is independent of which other items share its
batch, so the two-process scores must equal the one-process scores exactly (with larger batches they
would differ in the last float bits, from padding to a different length).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rmlib.eval import load_scores, load_suite

pytestmark = pytest.mark.distributed

FIX = Path(__file__).parent / "fixtures" / "eval"
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]


def _env(**extra):
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra}


def _eval_args(model, out: Path):
    # bon.jsonl has 11 candidates in all: uneven shards (6 + 5), so a padded gather would show up
    return ["-m", "rmlib", "eval", str(model), "--suite", "bon", "--data", str(FIX / "bon.jsonl"), "--out", str(out),
            "--cache", str(out / "scores.jsonl"), "batch_size=1"]


@pytest.mark.slow
def test_two_process_eval_equals_one_process(tiny_llama, tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    proc = subprocess.run([*LAUNCH, *_eval_args(tiny_llama, two)], env=_env(ACCELERATE_USE_CPU="true"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("wrote ") == 1                  # only the main process writes
    single = subprocess.run([sys.executable, *_eval_args(tiny_llama, one)], env=_env(), capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]

    r2, r1 = (json.loads((d / "report.json").read_text()) for d in (two, one))
    assert r2["meta"]["num_processes"] == 2 and r1["meta"]["num_processes"] == 1
    items2, s2 = load_scores(two / "scores.jsonl")
    items1, s1 = load_scores(one / "scores.jsonl")
    assert items2 == items1 == load_suite("bon", FIX / "bon.jsonl").items   # input order, no duplicates
    # scored in other batches on each side: equal up to kernel rounding, not bitwise
    np.testing.assert_allclose(s2, s1, rtol=1e-5, atol=1e-6)
    # distinct items get distinct scores (bon.jsonl repeats one candidate), so a reordering would show
    assert len(np.unique(s1)) == len({json.dumps(it, sort_keys=True) for it in items1}) == len(s1) - 1
    for key in ("suite", "metrics", "tables", "notes"):
        assert _rounded(r2[key]) == _rounded(r1[key]), key
    assert (two / "bon_curve.png").stat().st_size > 0 and (two / "report.md").stat().st_size > 0


def _rounded(value):
    """Floats to 5 significant digits, so metrics of rounding-level different scores compare equal."""
    if isinstance(value, float):
        return float(f"{value:.5g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
