"""Real multi-process runs (2 CPU processes, gloo) through `accelerate launch`.

Gradient accumulation and data parallelism must be the same optimisation: one process with
accumulation 4, two processes with accumulation 2 and one process with a 4-pair micro-batch see
the same global batches and must end with the same weights.
"""

import json
import os
import subprocess
import sys

import pytest

from rmlib.runtime import check_launch_environment, check_world
from tests.helpers import load_weights, write_config, write_pairs

pytestmark = pytest.mark.distributed

LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
          "--dynamo_backend", "no", "--main_process_port", "0"]


def _env(**extra):
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra}


def _config(tmp_path, tiny_llama, name, micro, accum, lr=0.5):
    data = tmp_path / "pairs.jsonl"
    if not data.exists():
        write_pairs(data, 96)
    return write_config(
        tmp_path / f"{name}.yaml", model={"name_or_path": str(tiny_llama)},
        data={"train": str(data), "max_length": 64},
        loss={"name": "bt"},
        train={"output_dir": str(tmp_path / name), "per_device_batch_size": micro,
               "gradient_accumulation_steps": accum, "max_steps": 6, "lr": lr, "max_grad_norm": 0.0,
               # a large eps makes Adam's step proportional to the gradient, so a mis-scaled
               # loss would show in the weights (plain Adam is invariant to the gradient's scale)
               "adam_eps": 1.0,
               "progress": False, "seed": 3, "scheduler": "constant"})


def _max_diff(a, b):
    wa, wb = load_weights(a / "model"), load_weights(b / "model")
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def test_two_processes_equal_accumulation_equal_big_batch(tmp_path, tiny_llama):
    from rmlib.training import train

    ddp = _config(tmp_path, tiny_llama, "ddp", micro=1, accum=2)
    proc = subprocess.run([*LAUNCH, "--multi_gpu", "--num_processes", "2", "-m", "rmlib", "train", str(ddp)],
                          env=_env(ACCELERATE_USE_CPU="true"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["distributed_type"].endswith("MULTI_CPU")

    s_acc = train(str(_config(tmp_path, tiny_llama, "accum", micro=1, accum=4)))
    s_big = train(str(_config(tmp_path, tiny_llama, "big", micro=4, accum=1)))
    assert s_acc["num_processes"] == 1
    base = tmp_path / "big"
    # weights move by ~0.3 over the run; float summation order leaves differences ~1e-5
    tol = 5e-5
    assert _max_diff(tmp_path / "accum", base) < tol
    assert _max_diff(tmp_path / "ddp", base) < tol
    for s in (summary, s_acc):
        assert abs(s["eval"]["loss"] - s_big["eval"]["loss"]) < 1e-3
    # the comparison can fail: the same run with the loss scaled by 2 (as a wrong normalisation
    # would) ends far outside the tolerance
    train(str(_config(tmp_path, tiny_llama, "scaled", micro=4, accum=1, lr=1.0)))
    assert _max_diff(tmp_path / "scaled", base) > 100 * tol


def test_cpu_flag_with_two_processes_is_refused(tmp_path, tiny_llama):
    cfg = _config(tmp_path, tiny_llama, "cpu2", micro=1, accum=1)
    proc = subprocess.run([*LAUNCH, "--cpu", "--num_processes", "2", "-m", "rmlib", "train", str(cfg)],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "starts a single process" in proc.stderr and "ACCELERATE_USE_CPU=true" in proc.stderr


def test_multi_gpu_on_cpu_without_env_is_refused(tmp_path, tiny_llama):
    cfg = _config(tmp_path, tiny_llama, "nogroup", micro=1, accum=1)
    env = _env()
    env.pop("ACCELERATE_USE_CPU", None)
    proc = subprocess.run([*LAUNCH, "--multi_gpu", "--num_processes", "2", "-m", "rmlib", "train", str(cfg)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "train independently" in proc.stderr and "ACCELERATE_USE_CPU=true" in proc.stderr


def test_launch_checks_on_environments():
    check_launch_environment({})  # plain python: fine
    check_launch_environment({"ACCELERATE_USE_CPU": "True"})  # accelerate launch --cpu, one process: fine
    with pytest.raises(RuntimeError, match="single process"):
        check_launch_environment({"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1"})
    check_launch_environment({"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "x", "PMI_SIZE": "2"})  # mpirun
    check_world(2, "DistributedType.MULTI_CPU", {"WORLD_SIZE": "2"})
    check_world(1, "DistributedType.NO", {})
    with pytest.raises(RuntimeError, match="2 processes"):
        check_world(1, "DistributedType.NO", {"WORLD_SIZE": "2"})
    with pytest.raises(RuntimeError, match="independently"):
        check_world(2, "DistributedType.NO", {"WORLD_SIZE": "2"})


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_machines_on_loopback_train_like_one_process(tmp_path, tiny_llama):
    """The multi-node path for real: two launchers (``--num_machines 2``, machine ranks 0 and 1, one process
    each) meet at 127.0.0.1 through torch's static rendezvous, as two nodes do at the head node's address."""
    from rmlib.training import train

    cfg = _config(tmp_path, tiny_llama, "nodes", micro=1, accum=2)
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
                               "--num_processes", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
                               "--main_process_port", str(port), "--rdzv_backend", "static", "--mixed_precision",
                               "no", "--dynamo_backend", "no", "-m", "rmlib", "train", str(cfg)],
                              env=_env(ACCELERATE_USE_CPU="true"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
             for rank in (0, 1)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    summary = json.loads((tmp_path / "nodes" / "summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["distributed_type"].endswith("MULTI_CPU")
    # the same global batches as one process holding the whole batch of 4 pairs
    train(str(_config(tmp_path, tiny_llama, "one", micro=4, accum=1)))
    assert _max_diff(tmp_path / "nodes", tmp_path / "one") < 5e-5  # the tolerance of the 2-process test above
