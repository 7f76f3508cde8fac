"""bench/listwise_throughput.py: its data, its pair expansion and its ratios (pure, fast), and one
``--quick`` run end to end (slow: three worker processes). The measurement itself is a benchmark, not a test."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


lw = _load("listwise_throughput")


def test_lists_expand_to_their_strictly_ordered_pairs():
    rows = lw.make_lists(8, 0.1)
    assert all(len(r["responses"]) == lw.K == len(r["scores"]) for r in rows)
    pairs = lw.expand(rows)
    # 6 pairs per list of 4, 5 when two responses tie (every fourth list)
    assert len(pairs) == 6 * 8 - sum(1 for i in range(8) if i % 4 == 0)
    first = rows[1]
    best = first["responses"][max(range(4), key=lambda j: first["scores"][j])]
    assert sum(p["chosen"][0]["content"] == best for p in pairs) == 3  # the best response wins its 3 pairs


def test_summary_ratios_and_token_limit():
    def run(seconds, cpu, positions):
        return {"seconds": seconds, "cpu_seconds": cpu, "positions": positions, "tokens": positions,
                "padding_fraction": 0.0, "steps": 2}

    runs = {"listwise": [run(1.0, 2.0, 100), run(1.0, 4.0, 100)], "pairs": [run(2.0, 4.0, 300)] * 2,
            "trl": [run(4.0, 8.0, 500)] * 2}
    out = lw.summarise(runs, responses=40)
    assert out["systems"]["listwise"]["positions_per_response"] == 2.5
    # per repeat: 20/5 = 4 and 10/5 = 2 responses per CPU-s ratios; median 3
    assert out["vs_trl"]["responses_per_cpu_s_ratio"] == pytest.approx(3.0)
    assert out["vs_trl"]["token_limit"] == pytest.approx(5.0)
    assert out["vs_trl"]["share_of_token_limit"] == pytest.approx(0.6)
    assert out["vs_pairs"]["token_limit"] == pytest.approx(3.0)


@pytest.mark.slow
def test_quick_run_writes_its_results(tmp_path):
    out = tmp_path / "lw.json"
    proc = subprocess.run([sys.executable, str(BENCH / "listwise_throughput.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                             "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["systems"]) == {"listwise", "pairs", "trl"}
    steps = report["meta"]["steps"]
    assert steps["listwise"] == steps["pairs"] == steps["trl"]  # the same prompts per step
    # the listwise run computes fewer positions per response than either pairwise run
    s = report["systems"]
    assert s["listwise"]["positions_per_response"] < s["pairs"]["positions_per_response"] < \
        s["trl"]["positions_per_response"]
