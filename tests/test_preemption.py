"""Preemption: a real SIGTERM (a scheduler's) or Ctrl-C ends a run with a checkpoint it resumes from exactly.

The signals are real ones sent to real training processes (one process through ``rmlib train``, two
through ``accelerate launch`` with gloo); nothing is mocked. A run is stopped after a few logged steps,
long before its last one, and the resumed run's final weights are compared with those of a run that
was never interrupted, on the same machine with the same process count: bitwise, since the two runs
compute the same operations in the same order.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rmlib.training import EXIT_PREEMPTED
from rmlib.training.preemption import Preempted, SignalFlag, catching_signals
from tests.helpers import load_weights, write_config, write_pairs

TOTAL = 60  # steps of each run: the signal comes at step 3, far from the end


def _config(tmp_path: Path, tiny_llama: Path, name: str, **train) -> Path:
    data = tmp_path / "pairs.jsonl"
    if not data.exists():
        write_pairs(data, 96)
    t = {"output_dir": str(tmp_path / name), "per_device_batch_size": 2, "max_steps": TOTAL, "lr": 1e-3,
         "log_every": 1, "progress": False, "seed": 3, "resume_from": "auto", "eval_every": 0, "save_every": 0,
         "eval_at_start": False, **train}
    return write_config(tmp_path / f"{name}.yaml", model={"name_or_path": str(tiny_llama)},
                        data={"train": str(data), "max_length": 64}, loss={"name": "bt"}, train=t)


def _env(**extra) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def _signal_at_step(cmd: list[str], env: dict, step: int, send) -> tuple[int, str]:
    """Start ``cmd``, call ``send(proc)`` once it has logged ``step``; its exit status and output."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, sent = [], False
    deadline = time.time() + 300
    for line in proc.stdout:
        lines.append(line)
        if not sent and f"step {step}/{TOTAL}:" in line:
            send(proc)
            sent = True
        assert time.time() < deadline, "".join(lines[-40:])
    proc.wait(timeout=120)
    tail = "".join(lines[-40:])
    assert sent, f"the run never logged step {step}:\n{tail}"
    return proc.returncode, "".join(lines)


def _checkpoints(run: Path) -> list[str]:
    d = run / "checkpoints"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_weights(a / "model"), load_weights(b / "model")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs by {(wa[k] - wb[k]).abs().max().item():.3g}"


def test_signal_flag_counts_the_first_interrupt_and_a_second_one_raises():
    flag = SignalFlag()
    flag._handle(signal.SIGINT, None)
    assert flag.signum == signal.SIGINT and flag.raised == 1.0
    with pytest.raises(KeyboardInterrupt):
        flag._handle(signal.SIGINT, None)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert "another rank" in str(Preempted(0, 4, Path("ck")))  # the rank that only saw the all-reduce
    late = SignalFlag()
    late._handle(signal.SIGTERM, None)
    late._handle(signal.SIGTERM, None)  # a repeated SIGTERM never escalates: the save must finish
    assert late.signum == signal.SIGTERM


def test_catching_signals_records_a_real_sigterm_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with catching_signals() as flag:
        os.kill(os.getpid(), signal.SIGTERM)  # would end this pytest process without the handler
        time.sleep(0.05)
        assert flag.signum == signal.SIGTERM
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    with catching_signals(enabled=False) as off:
        assert signal.getsignal(signal.SIGTERM) == before[0] and off.raised == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_exits_75_and_resume_is_bit_identical(tmp_path, tiny_llama, signum):
    cfg = _config(tmp_path, tiny_llama, "stopped")
    cmd = [sys.executable, "-m", "rmlib", "train", str(cfg)]
    code, out = _signal_at_step(cmd, _env(), 3, lambda p: p.send_signal(signum))
    assert code == EXIT_PREEMPTED, out[-3000:]
    names = _checkpoints(tmp_path / "stopped")
    assert len(names) == 1 and not names[0].endswith(".tmp"), names  # save_every=0: the signal's save only
    step = int(names[0].split("-")[1])
    assert 3 <= step < TOTAL and "resume with train.resume_from=auto" in out
    assert not (tmp_path / "stopped" / "summary.json").exists()
    resumed = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"resumed from {tmp_path / 'stopped' / 'checkpoints' / names[0]} at step {step}" in resumed.stdout
    straight = subprocess.run([sys.executable, "-m", "rmlib", "train", str(_config(tmp_path, tiny_llama, "straight"))],
                              env=_env(), capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]
    _assert_same_weights(tmp_path / "stopped", tmp_path / "straight")


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_without_a_save(tmp_path, tiny_llama):
    cmd = [sys.executable, "-m", "rmlib", "train", str(_config(tmp_path, tiny_llama, "impatient"))]

    def twice(proc):  # two presses, not one coalesced delivery: a pending signal is a flag, not a count
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)

    code, out = _signal_at_step(cmd, _env(), 3, twice)
    assert code not in (0, EXIT_PREEMPTED) and "KeyboardInterrupt" in out, out[-2000:]
    assert "signal received: saved" not in out
    for name in _checkpoints(tmp_path / "impatient"):  # an interrupted save never looks complete
        assert name.endswith(".tmp") or (tmp_path / "impatient" / "checkpoints" / name / "trainer_state.json").is_file()


@pytest.mark.distributed
def test_sigterm_to_one_rank_of_two_stops_both_with_one_checkpoint_and_resume_is_bit_identical(tmp_path, tiny_llama):
    """The signal reaches rank 1 only; rank 0 learns of it through the step's all-reduce."""
    import psutil

    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
              "-m", "rmlib", "train"]
    env = _env(ACCELERATE_USE_CPU="true")
    cfg = _config(tmp_path, tiny_llama, "stopped")

    def to_rank_1(proc):
        ranks = {}
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                rank = child.environ().get("RANK")
            except psutil.Error:
                continue
            if rank is not None and "rmlib" in " ".join(child.cmdline()):
                ranks[rank] = child
        assert set(ranks) == {"0", "1"}, ranks
        ranks["1"].send_signal(signal.SIGTERM)

    code, out = _signal_at_step([*launch, str(cfg)], env, 3, to_rank_1)
    # both ranks stop with Preempted after the same save: rank 1 names its signal, rank 0 the other rank's
    assert "rmlib: stopped by SIGTERM after step" in out and "stopped by a signal another rank received" in out
    # the launcher reports the first rank to exit with 75 (it then SIGTERMs the other, already past its save)
    assert code != 0 and f"exitcode  : {EXIT_PREEMPTED}" in out, out[-4000:]
    names = _checkpoints(tmp_path / "stopped")
    assert len(names) == 1 and 3 <= int(names[0].split("-")[1]) < TOTAL, names
    assert out.count("signal received: saved") == 1  # printed by the main process only, both ranks saved
    resumed = subprocess.run([*launch, str(cfg)], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    straight = subprocess.run([*launch, str(_config(tmp_path, tiny_llama, "straight"))], env=env,
                              capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stdout[-3000:] + straight.stderr[-3000:]
    _assert_same_weights(tmp_path / "stopped", tmp_path / "straight")
