"""bench/divergence_auroc.py --quick: the four model types train, the divergence suite reads each, and the
table has the columns the docs quote (3 steps: the numbers themselves mean nothing here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_divergence_benchmark_runs_every_model_type(tmp_path):
    out = tmp_path / "auroc.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "divergence_auroc.py"), "--quick", "--workdir",
                        str(tmp_path / "w"), "--out", str(out)], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = {row["model"]: row for row in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["bt_aggregate", "bt_all", "mean_var", "rating_ce"]
    for name, row in rows.items():
        assert 0.0 <= row["auroc_gap"] <= 1.0 and 0.0 <= row["ece"] <= 1.0
        assert (row["auroc_uncertainty"] is None) == name.startswith("bt"), row  # only a distribution has one
    assert "| `mean_var` |" in out.with_suffix(".md").read_text()
