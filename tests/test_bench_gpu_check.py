"""bench/gpu_check.py on a CPU machine: the dry run checks the plan (scripts exist, they accept the
options passed, limits fit the 9-minute budget) and reports why GPU steps are skipped. The GPU
itself cannot exist here; nothing is mocked, the steps are simply not run."""

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


gc = _load("gpu_check")


def test_plan_fits_the_budget_and_every_step_has_its_own_limit(tmp_path):
    steps = gc.plan(tmp_path, tmp_path)
    assert [s.name for s in steps] == ["env", "gpu_tests", "train_mfu", "score", "serve", "memory_8b", "serve_parity"]
    assert all(s.limit_s > 0 for s in steps)
    assert sum(s.limit_s for s in steps) <= gc.BUDGET_S == 540
    tests = next(s for s in steps if s.name == "gpu_tests").cmd
    assert "tests/test_deepspeed.py" in tests and "tests/test_shared_prompt.py" in tests  # found by their mark
    assert gc.check_plan(steps, check_options=False) == []


def test_check_plan_finds_an_over_budget_plan_and_an_option_a_script_refuses(tmp_path):
    steps = gc.plan(tmp_path, tmp_path)
    steps[1].limit_s = 400
    assert any("over the 540 s budget" in p for p in gc.check_plan(steps, check_options=False))
    bad = gc.Step("mem", "x", [sys.executable, "bench/memory_shapes.py", "--no-such-option"], 10)
    (problem,) = gc.check_plan([bad])
    assert "does not accept ['--no-such-option']" in problem
    gone = gc.Step("gone", "x", [sys.executable, "bench/no_such_bench.py"], 10)
    assert any("does not exist" in p for p in gc.check_plan([gone], check_options=False))


def test_dry_run_on_cpu_checks_options_and_names_each_skip(capsys):
    assert gc.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "plan OK" in out
    for step in ("gpu_tests", "train_mfu", "memory_8b"):
        assert f"{step}" in out
    assert "[SKIP: no CUDA device]" in out
    assert "expected test skip: FSDP test: needs 2 GPUs" in out
    assert "serve_parity" in out and "bench/serve_parity.py --device cuda" in out


def test_summaries_read_what_the_steps_write(tmp_path):
    """The junit report of the gpu tests is read into passed / failed / skipped-with-reason."""
    (tmp_path / "gpu_tests.xml").write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_deepspeed" name="test_fsdp"><skipped message="needs 2 GPUs"/></testcase>'
        '<testcase classname="tests.test_shared_prompt" name="test_flex"/>'
        '<testcase classname="tests.test_shared_prompt" name="test_flash"><failure message="x"/></testcase>'
        '</testsuite></testsuites>')
    step = gc.Step("gpu_tests", "t", [], 10)
    s = gc.summarise(step, tmp_path, "")
    assert s == {"passed": ["test_shared_prompt::test_flex"], "failed": ["test_shared_prompt::test_flash"],
                 "skipped": ["test_deepspeed::test_fsdp: needs 2 GPUs"]}
    step.summary, step.status = s, "failed"
    md = gc.markdown([step], {"torch": "x"}, 1.0)
    assert "1 passed, 1 failed, 1 skipped; test_deepspeed::test_fsdp: needs 2 GPUs" in md


def test_a_step_over_its_limit_is_stopped_and_reported(tmp_path):
    slow = gc.Step("slow", "sleeps", [sys.executable, "-c", "import time; time.sleep(30)"], 1)
    fast = gc.Step("fast", "prints", [sys.executable, "-c", "print('ok')"], 20)
    gc.run_step(slow, tmp_path)
    gc.run_step(fast, tmp_path)
    assert slow.status == "timeout" and slow.seconds < 10 and "1 s limit" in slow.reason
    assert fast.status == "passed"


def test_the_score_step_runs_on_cpu_and_agrees_with_its_baseline(tmp_path):
    """The GPU plan's scoring bench, shrunk to seconds on CPU (the option set the plan passes, less
    ``--device cuda``): every scorer's rewards match the fixed-batch baseline's."""
    import json
    import os
    import subprocess

    out = tmp_path / "score.json"
    subprocess.run([sys.executable, str(BENCH / "score_throughput.py"), "--n-seqs", "24", "--repeats", "1",
                    "--scale", "0.1", "--hidden", "32", "--layers", "1", "--dtype", "float32", "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=300,
                   env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    report = json.loads(out.read_text())
    assert report["meta"]["device"] == "cpu"
    for suite in ("mixed", "best_of_n"):
        scorers = {k: v for k, v in report[suite].items() if isinstance(v, dict)}
        assert {"fixed_batch_unsorted", "rmlib_score"} <= set(scorers)
        for name, row in scorers.items():
            assert row["max_abs_diff_vs_baseline"] < 1e-4, (suite, name)
            assert row["tokens_per_s"] > 0


def test_the_serve_parity_step_runs_on_cpu_and_reports_vllm_as_skipped(tmp_path):
    """The GPU plan's parity step, on CPU (the plan's options less ``--device cuda``): transformers and a
    real ``rmlib serve`` subprocess give the same rewards (1e-4 of the reward scale in float32), vLLM's
    scorer is skipped with its reason when it is not installed, and the summary and the table say so."""
    import json
    import os
    import subprocess

    out = tmp_path / "serve_parity.json"
    r = subprocess.run([sys.executable, str(BENCH / "serve_parity.py"), "--workdir", str(tmp_path / "w"),
                        "--hidden", "64", "--n", "8", "--out", str(out)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(out.read_text())
    assert report["meta"]["device"] == "cpu" and report["passed"] is True
    assert report["meta"]["reference_std"] > 0.1  # rewards spread: a reward read at the wrong token would miss
    for name in ("serve_score", "serve_get_reward"):
        assert report[name]["status"] == "passed" and report[name]["max_abs_diff"] < 1e-4, report[name]
    try:
        import vllm  # noqa: F401
    except ImportError:
        assert report["vllm"]["status"] == "skipped" and "not installed" in report["vllm"]["reason"]
    step = gc.Step("serve_parity", "parity", [], 60)
    step.summary = gc.summarise(step, tmp_path, "")
    assert step.summary["serve_score"]["status"] == "passed"
    md = gc.markdown([step], {"torch": "x"}, 1.0)
    assert "serve_score passed (max diff" in md and "serve_get_reward passed" in md
    # the rule that fails a scorer: beyond tol × max(1, |reference|), tol 1e-4 in float32, 5e-2 in bfloat16
    parity = _load("serve_parity")
    assert parity.check("x", [-4.0, 2.0], [-4.0, 2.00039], "float32")["status"] == "passed"  # allowed 4e-4
    assert parity.check("x", [-4.0, 2.0], [-4.0, 2.0005], "float32")["status"] == "failed"
    assert parity.check("x", [-4.0, 2.0], [-4.15, 2.0], "bfloat16")["status"] == "passed"  # allowed 0.2
    assert parity.check("x", [-4.0, 2.0], [-4.25, 2.0], "bfloat16")["status"] == "failed"
