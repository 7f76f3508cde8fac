"""Training sanity warnings: each check triggers on a broken run's numbers and stays quiet otherwise."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from rmlib.models import RewardModel
from rmlib.testing import build_tiny_llama
from rmlib.training import sanity, train
from rmlib.training.sanity import (
    SanityMonitor,
    SanityWarning,
    accuracy_stuck_problem,
    head_fingerprint,
    head_rank_problem,
    initial_loss_problem,
    learning_rate_problem,
    reward_scale_problem,
)
from tests.helpers import write_pairs

# -- the pure checks ---------------------------------------------------------------------------


def test_initial_bt_loss_far_from_ln2():
    assert "far from ln 2" in initial_loss_problem(1.9, "bt")
    assert "far from ln 2" in initial_loss_problem(0.2, "bt")
    assert "far from ln 2" in initial_loss_problem(float("nan"), "bt")
    assert initial_loss_problem(math.log(2) + 0.05, "bt") is None
    assert initial_loss_problem(1.9, "mse") is None  # ln 2 is the BT loss of equal rewards only


def test_reward_scale_at_step_zero():
    assert "reused value head" in reward_scale_problem(8.0, 0.5)
    assert "reused value head" in reward_scale_problem(0.1, 12.0)
    assert "same reward" in reward_scale_problem(0.7, 0.0)  # one token read for every sequence
    assert reward_scale_problem(0.02, 0.3) is None
    assert reward_scale_problem(0.0, 0.0) is None  # a zero-initialised head is fresh too


def test_learning_rate_on_full_fine_tune():
    assert "train.lr=0.0001" in learning_rate_problem(1e-4, full_fine_tune=True)
    assert learning_rate_problem(2e-5, full_fine_tune=True) is None
    assert learning_rate_problem(2e-4, full_fine_tune=False) is None  # LoRA takes such rates


def test_accuracy_stuck_at_chance():
    # 512 pairs: chance is 0.5 ± 2·√(0.25/512) = ±0.044
    assert "not learning" in accuracy_stuck_problem(0.52 * 512, 512, 100)
    assert accuracy_stuck_problem(0.6 * 512, 512, 100) is None
    assert accuracy_stuck_problem(0.5 * 64, 64, 100) is None  # too few pairs to tell


def test_head_differs_between_ranks():
    assert "differs between processes" in head_rank_problem([1.25, 1.25, 0.75])
    assert head_rank_problem([1.25, 1.25, 1.25]) is None
    assert head_rank_problem([3.0]) is None


def test_head_fingerprint_sees_any_change(tiny_llama):
    rm = RewardModel.from_pretrained(tiny_llama)
    a = head_fingerprint(rm)
    assert head_fingerprint(RewardModel.from_pretrained(tiny_llama)) == a
    with torch.no_grad():
        rm._hf.score.weight[0, 3] += 1e-3
    assert head_fingerprint(rm) != a


def test_monitor_warns_once_when_accuracy_stays_at_chance():
    mon = SanityMonitor(True, "bt", fresh_head=True, check_at=10)
    with pytest.warns(SanityWarning, match="not learning"):
        for step in range(1, 11):
            mon.observe(step, {"loss": 0.69, "accuracy": 0.5, "items": 64})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mon.observe(11, {"loss": 0.69, "accuracy": 0.5, "items": 64})  # checked once


def test_monitor_quiet_when_learning_or_turned_off():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mon = SanityMonitor(True, "bt", fresh_head=True, check_at=10)
        for step in range(1, 11):
            mon.observe(step, {"loss": 0.69 - step * 0.01, "accuracy": 0.5 + step * 0.03, "items": 64})
        off = SanityMonitor(False, "bt", fresh_head=True, check_at=10)
        for step in range(1, 11):
            off.observe(step, {"loss": 3.0, "accuracy": 0.5, "items": 64})


# -- in a training run -------------------------------------------------------------------------


def _cfg(model, data, out, **train_kw):
    return {"model": {"name_or_path": str(model)}, "data": {"train": str(data), "max_length": 64},
            "loss": {"name": "bt"},
            "train": {"output_dir": str(out), "per_device_batch_size": 4, "max_steps": 2, "progress": False,
                      "seed": 0, **train_kw}}


def _sanity_warnings(cfg) -> list[str]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        train(cfg)
    return [str(w.message) for w in seen if issubclass(w.category, SanityWarning)]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", 16)


def test_a_fresh_run_with_a_sane_lr_gives_no_warning(tiny_llama, pairs, tmp_path):
    assert _sanity_warnings(_cfg(tiny_llama, pairs, tmp_path / "run", lr=1e-5)) == []


def test_a_high_lr_full_fine_tune_warns_and_the_switch_turns_it_off(tiny_llama, pairs, tmp_path):
    (msg,) = _sanity_warnings(_cfg(tiny_llama, pairs, tmp_path / "a", lr=3e-4))
    assert "full fine-tune" in msg and "model.lora.enabled=true" in msg
    assert _sanity_warnings(_cfg(tiny_llama, pairs, tmp_path / "b", lr=3e-4, sanity_checks=False)) == []


def test_a_reused_trained_head_warns_about_rewards_and_loss(pairs, tmp_path):
    # a "value head" that was trained elsewhere: same label, large weights, so it is loaded, not re-initialised
    d = build_tiny_llama(tmp_path / "reused")
    rm = RewardModel.from_pretrained(d)
    with torch.no_grad():
        rm._hf.score.weight.mul_(2000.0)
    rm.save_pretrained(d)
    msgs = _sanity_warnings(_cfg(d, pairs, tmp_path / "run", lr=1e-5))
    assert any("rewards at step 0" in m for m in msgs), msgs
    assert any("far from ln 2" in m for m in msgs), msgs


def test_a_malformed_push_to_hub_id_fails_before_training(tiny_llama, pairs, tmp_path):
    from rmlib.config import ConfigError

    with pytest.raises(ConfigError, match="train.push_to_hub"):
        train(_cfg(tiny_llama, pairs, tmp_path / "run", push_to_hub="not a//repo id"))


def test_head_check_across_ranks_is_quiet_on_one_process(tiny_llama):
    class OneProcess:
        num_processes, is_main_process = 1, True

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sanity.check_head_across_ranks(OneProcess(), RewardModel.from_pretrained(tiny_llama))


def test_head_check_across_ranks_warns_when_ranks_built_different_heads(tiny_llama, monkeypatch):
    import accelerate.utils

    class TwoProcesses:
        num_processes, is_main_process = 2, True

    rm = RewardModel.from_pretrained(tiny_llama)
    # the other rank's fingerprint, as gather_object returns it (rank order); no process group needed
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda xs: xs + [xs[0] + 1.0])
    with pytest.warns(SanityWarning, match="differs between processes"):
        sanity.check_head_across_ranks(TwoProcesses(), rm)
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda xs: xs + xs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sanity.check_head_across_ranks(TwoProcesses(), rm)


_RANK_SCRIPT = """
import sys, warnings
import torch
from rmlib.models import RewardModel
from rmlib.runtime import make_accelerator
from rmlib.training.sanity import SanityWarning, check_head_across_ranks

acc = make_accelerator()
torch.manual_seed(0 if sys.argv[2] == "same" else acc.process_index)  # the bug: a per-rank seed
rm = RewardModel.from_pretrained(sys.argv[1], attributes=["a", "b"])  # a new head, drawn at load
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    check_head_across_ranks(acc, rm)
if acc.is_main_process:
    print("WARNED" if any(issubclass(w.category, SanityWarning) for w in seen) else "QUIET")
"""


@pytest.mark.distributed
@pytest.mark.parametrize("seeds, expected", [("per_rank", "WARNED"), ("same", "QUIET")])
def test_head_check_on_two_real_processes(tiny_llama, tmp_path, seeds, expected):
    import os
    import subprocess
    import sys

    script = tmp_path / "ranks.py"
    script.write_text(_RANK_SCRIPT)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "--main_process_port", "0", "--multi_gpu", "--num_processes", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    proc = subprocess.run([*launch, str(script), str(tiny_llama), seeds], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert expected in proc.stdout.split()
