"""Real 2-process runs of the unchanged trainer on DDP and DeepSpeed ZeRO-1/2/3 (+ CPU offload).

Each backend trains the tiny Llama for 6 optimizer steps (micro-batch 2 × accumulation 2 × 2
processes, clipping active, a linear schedule) from the shipped ``configs/accelerate`` files and
must:

* run as 2 processes with the expected distributed type (read from the run's ``summary.json``);
* follow DDP's loss curve (eval losses at steps 3 and 6) and end at DDP's weights;
* resume from its step-3 sharded checkpoint (``resume_from=auto`` in a fresh output directory)
  to the same final weights as the uninterrupted run;
* save a full Hugging Face model (ZeRO-3 gathers the shards) that, reloaded in this separate
  process, reproduces the eval loss the training processes computed.

One launch per backend plus one resume launch are shared by all assertions (module-scoped cache).
The first DeepSpeed launch on a fresh machine JIT-compiles ``deepspeed_shm_comm`` (~40 s on 2
cores) and the offload run ``cpu_adam`` (~70 s); both are cached in ``~/.cache/torch_extensions``.

FSDP cannot shard on CPU through accelerate, so on CPU we only check that rmlib refuses it; the
real FSDP run is a ``gpu`` test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.helpers import load_weights, write_config, write_pairs

pytestmark = pytest.mark.distributed

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "accelerate"
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
          "--dynamo_backend", "no", "--main_process_port", "0", "--num_processes", "2"]

# name -> (launcher arguments, extra environment, expected distributed type)
BACKENDS = {
    "ddp": (["--multi_gpu"], {"ACCELERATE_USE_CPU": "true"}, "MULTI_CPU"),
    "zero1": (["--config_file", str(CONFIGS / "deepspeed_zero1.yaml")], {}, "DEEPSPEED"),
    "zero2": (["--config_file", str(CONFIGS / "deepspeed_zero2.yaml")], {}, "DEEPSPEED"),
    "zero3": (["--config_file", str(CONFIGS / "deepspeed_zero3.yaml")], {}, "DEEPSPEED"),
    "zero3_offload": (["--config_file", str(CONFIGS / "deepspeed_zero3_offload.yaml")], {}, "DEEPSPEED"),
}
DEEPSPEED = [name for name in BACKENDS if name != "ddp"]


def _has_deepspeed() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepspeed") is not None


needs_deepspeed = pytest.mark.skipif(not _has_deepspeed(), reason="pip install deepspeed --no-build-isolation")


class Runs:
    """Launch each backend at most once per module; later tests read the cached results."""

    def __init__(self, root: Path, tiny: Path):
        self.root, self.tiny = root, tiny
        self.train, self.eval = root / "pairs.jsonl", root / "eval.jsonl"
        write_pairs(self.train, 96)
        # 17 eval pairs in batches of 4: one process scores 3 batches, the other 2 (ZeRO-3 must not hang)
        write_pairs(self.eval, 17, seed=1)
        self.done: dict[str, Path] = {}

    def config(self, name: str, out: Path, resume: bool) -> Path:
        return write_config(
            self.root / f"{out.name}.yaml", model={"name_or_path": str(self.tiny)},
            data={"train": str(self.train), "eval": str(self.eval), "max_length": 64},
            loss={"name": "bt"},
            train={"output_dir": str(out), "per_device_batch_size": 2, "gradient_accumulation_steps": 2,
                   "max_steps": 6, "lr": 0.05, "scheduler": "linear", "seed": 3, "eval_batch_size": 4,
                   "max_grad_norm": 0.2,  # active: the unclipped gradient norm is above 0.2 at every step
                   "adam_eps": 1.0,  # Adam's step ∝ gradient, so a mis-scaled loss shows in the weights
                   "save_every": 3, "eval_every": 3, "keep_best": 2, "progress": False,
                   "resume_from": "auto" if resume else None})

    def _launch(self, name: str, cfg: Path) -> None:
        args, env, _ = BACKENDS[name]
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", **env}
        proc = subprocess.run([*LAUNCH, *args, "-m", "rmlib", "train", str(cfg)], cwd=ROOT, env=full_env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"

    def get(self, name: str) -> Path:
        if name not in self.done:
            out = self.root / name
            self._launch(name, self.config(name, out, resume=False))
            # resume: a fresh output directory holding only the step-3 checkpoint
            resumed = self.root / f"{name}_resumed"
            ckpt = out / "checkpoints" / "step-0000003"
            shutil.copytree(ckpt, resumed / "checkpoints" / ckpt.name)
            self._launch(name, self.config(name, resumed, resume=True))
            self.done[name] = out
        return self.done[name]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama) -> Runs:
    return Runs(tmp_path_factory.mktemp("backends"), tiny_llama)


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def _max_diff(a: Path, b: Path) -> float:
    wa, wb = load_weights(a), load_weights(b)
    assert wa.keys() == wb.keys()
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def _check_run(runs: Runs, name: str) -> None:
    run = runs.get(name)
    s = _summary(run)
    assert s["num_processes"] == 2, s["num_processes"]
    assert s["distributed_type"].endswith(BACKENDS[name][2]), s["distributed_type"]
    assert s["steps"] == 6
    # resume: same final weights as the uninterrupted run, and the run really resumed
    resumed = run.parent / f"{name}_resumed"
    r = _summary(resumed)
    assert r["steps"] == 6 and r["num_processes"] == 2
    # exact for every backend; ZeRO-3 + CPU offload used to end 4.3e-4 away: Accelerate swapped our
    # DeepSpeedCPUAdam for a copy whose param groups load_checkpoint replaced, so after resume the LR
    # schedule no longer reached the stepping optimizer (fixed in backends.configure_deepspeed)
    assert _max_diff(resumed / "model", run / "model") < 1e-6
    history = json.loads((resumed / "checkpoints" / "step-0000006" / "trainer_state.json").read_text())["history"]
    assert [h["step"] for h in history] == [3, 6]  # step 3 came from the copied checkpoint
    # reload in this (separate) process: the saved model reproduces the in-training eval loss
    from rmlib.data.formats import load
    from rmlib.models import RewardModel

    model = RewardModel.from_pretrained(run / "model", max_length=64)
    pairs = load(str(runs.eval)).examples
    chosen = model.score([p.prompt for p in pairs], [p.chosen for p in pairs])
    rejected = model.score([p.prompt for p in pairs], [p.rejected for p in pairs])
    loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean().item()
    # computed again in another process with other batch shapes: equal up to float rounding, not bitwise
    assert abs(loss - s["eval"]["loss"]) < 1e-5, (loss, s["eval"]["loss"])


def test_ddp_two_processes(runs):
    _check_run(runs, "ddp")


@needs_deepspeed
@pytest.mark.parametrize("name", DEEPSPEED)
def test_deepspeed_matches_ddp(runs, name):
    _check_run(runs, name)
    run, ddp = runs.get(name), runs.get("ddp")
    # same loss curve as DDP: eval losses after 3 and 6 steps, then the final weights
    curve = json.loads((run / "checkpoints" / "step-0000006" / "trainer_state.json").read_text())["history"]
    ddp_curve = json.loads((ddp / "checkpoints" / "step-0000006" / "trainer_state.json").read_text())["history"]
    for mine, ref in zip(curve, ddp_curve, strict=True):  # different reduction order: 1e-5, not bitwise
        assert abs(mine["loss"] - ref["loss"]) < 1e-5, (curve, ddp_curve)
    # weights move by ~0.3 over the run; summation order leaves ~1e-7 (DeepSpeedCPUAdam: ~1e-6)
    assert _max_diff(run / "model", ddp / "model") < 2e-5
    if name.startswith("zero3"):
        # the shards were real: the resumable state holds one partition file per rank
        state = next((run / "checkpoints" / "step-0000006" / "state").rglob("zero_pp_rank_1_*model_states.pt"))
        assert state.is_file()


def test_deepspeed_config_filled_from_train_config_and_conflicts_refused():
    from rmlib.config import ConfigError, TrainConfig
    from rmlib.training.backends import build_adamw, configure_deepspeed

    def fake(ds: dict):
        plugin = SimpleNamespace(deepspeed_config=ds)
        return SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin), num_processes=2,
                               gradient_accumulation_steps=1)

    t = TrainConfig(per_device_batch_size=4, gradient_accumulation_steps=3, max_grad_norm=0.5)
    acc = fake({"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
                "zero_optimization": {"stage": 3}})
    configure_deepspeed(acc, t)
    ds = acc.state.deepspeed_plugin.deepspeed_config
    assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["gradient_accumulation_steps"] == 3
    assert ds["train_batch_size"] == 24 and ds["gradient_clipping"] == 0.5
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert acc.gradient_accumulation_steps == 3
    with pytest.raises(ConfigError, match="gradient_accumulation_steps=8"):
        configure_deepspeed(fake({"gradient_accumulation_steps": 8}), t)
    with pytest.raises(ConfigError, match="stage3_gather"):
        configure_deepspeed(fake({"zero_optimization": {"stage": 3,
                                                        "stage3_gather_16bit_weights_on_model_save": False}}), t)
    # optimizer offload: DeepSpeed must step the DeepSpeedCPUAdam the trainer built (and its scheduler
    # drives), not the copy Accelerate makes when zero_force_ds_cpu_optimizer is true
    offload = fake({"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}})
    configure_deepspeed(offload, t)
    assert offload.state.deepspeed_plugin.deepspeed_config["zero_force_ds_cpu_optimizer"] is False
    assert "zero_force_ds_cpu_optimizer" not in ds
    with pytest.raises(ConfigError, match="zero_force_ds_cpu_optimizer"):
        configure_deepspeed(fake({"zero_force_ds_cpu_optimizer": True,
                                  "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}), t)
    from accelerate.utils import DistributedType

    no_ds = SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=None), distributed_type=DistributedType.MULTI_CPU)
    configure_deepspeed(no_ds, t)  # no DeepSpeed: nothing to do
    opt = build_adamw(no_ds, [{"params": [torch.nn.Parameter(torch.ones(2))]}], lr=0.1)
    assert type(opt) is torch.optim.AdamW and opt.defaults["fused"] is True  # DDP: torch owns the parameters
    no_ds.distributed_type = DistributedType.FSDP
    assert not build_adamw(no_ds, [{"params": [torch.nn.Parameter(torch.ones(2))]}], lr=0.1).defaults["fused"]


def test_fsdp_refused_without_cuda(tmp_path, tiny_llama):
    from rmlib.runtime import check_fsdp

    with pytest.raises(RuntimeError, match="does not shard on CPU"):
        check_fsdp({"ACCELERATE_USE_FSDP": "true"}, cuda_available=False)
    with pytest.raises(RuntimeError, match="FSDP"):
        check_fsdp({}, "DistributedType.FSDP", cuda_available=False)
    check_fsdp({"ACCELERATE_USE_FSDP": "true"}, cuda_available=True)
    check_fsdp({}, "DistributedType.MULTI_CPU", cuda_available=False)
    if torch.cuda.is_available():
        return
    # the shipped FSDP config, launched for real on this CPU machine, stops with the message
    write_pairs(tmp_path / "pairs.jsonl", 16)
    cfg = write_config(tmp_path / "fsdp.yaml", model={"name_or_path": str(tiny_llama)},
                       data={"train": str(tmp_path / "pairs.jsonl"), "max_length": 64},
                       train={"output_dir": str(tmp_path / "fsdp"), "max_steps": 1, "progress": False})
    proc = subprocess.run([*LAUNCH, "--config_file", str(CONFIGS / "fsdp_full_shard.yaml"), "-m", "rmlib", "train",
                           str(cfg)], cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "does not shard on CPU" in proc.stderr
    assert not (tmp_path / "fsdp" / "model").exists()


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a machine with 2 CUDA GPUs (FSDP shards on GPU only)")
def test_fsdp_on_two_gpus_matches_ddp(tmp_path, tiny_llama):
    """Needs 2 GPUs: FSDP2 full shard ends at DDP's weights and saves a full HF model."""
    write_pairs(tmp_path / "pairs.jsonl", 96)
    for name in ("ddp", "fsdp_full_shard"):
        cfg = write_config(tmp_path / f"{name}.yaml", model={"name_or_path": str(tiny_llama)},
                           data={"train": str(tmp_path / "pairs.jsonl"), "max_length": 64},
                           train={"output_dir": str(tmp_path / name), "per_device_batch_size": 2, "max_steps": 6,
                                  "lr": 0.05, "seed": 3, "progress": False, "adam_eps": 1.0})
        proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                               str(CONFIGS / f"{name}.yaml"), "--num_processes", "2", "--mixed_precision", "no",
                               "-m", "rmlib", "train", str(cfg)], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=900)
        assert proc.returncode == 0, proc.stderr[-5000:]
        s = _summary(tmp_path / name)
        assert s["num_processes"] == 2
        assert s["distributed_type"].endswith("FSDP" if name.startswith("fsdp") else "MULTI_GPU")
    assert _max_diff(tmp_path / "fsdp_full_shard" / "model", tmp_path / "ddp" / "model") < 1e-4


def _nvme_offload_available() -> bool:
    if not (_has_deepspeed() and torch.cuda.is_available()):
        return False
    try:
        from deepspeed.ops.op_builder import AsyncIOBuilder

        return bool(AsyncIOBuilder().is_compatible(verbose=False))
    except Exception:  # an op builder that fails to import means no NVMe offload on this machine
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _nvme_offload_available(),
                    reason="needs a CUDA GPU and DeepSpeed's async_io op (libaio) for NVMe offload")
def test_zero3_nvme_offload_on_gpu_matches_a_plain_gpu_run(tmp_path, tiny_llama):
    """Needs a GPU: the shipped NVMe config (parameters and optimizer swapped to disk) trains like plain AdamW."""
    nvme = tmp_path / "nvme"
    nvme.mkdir()
    ds = json.loads((CONFIGS / "deepspeed" / "zero3_offload_nvme.json").read_text())
    for key in ("offload_optimizer", "offload_param"):
        ds["zero_optimization"][key]["nvme_path"] = str(nvme)
    (tmp_path / "ds.json").write_text(json.dumps(ds))
    acc = (CONFIGS / "deepspeed_zero3_offload.yaml").read_text()
    assert "configs/accelerate/deepspeed/zero3_offload.json" in acc
    (tmp_path / "nvme.yaml").write_text(acc.replace("configs/accelerate/deepspeed/zero3_offload.json",
                                                    str(tmp_path / "ds.json")))
    write_pairs(tmp_path / "pairs.jsonl", 96)
    for name, acc_cfg in (("plain", CONFIGS / "single_gpu.yaml"), ("nvme", tmp_path / "nvme.yaml")):
        cfg = write_config(tmp_path / f"{name}.yaml", model={"name_or_path": str(tiny_llama)},
                           data={"train": str(tmp_path / "pairs.jsonl"), "max_length": 64},
                           train={"output_dir": str(tmp_path / name), "per_device_batch_size": 2, "max_steps": 6,
                                  "lr": 0.05, "seed": 3, "progress": False, "adam_eps": 1.0})
        proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(acc_cfg),
                               "--num_processes", "1", "--mixed_precision", "no", "-m", "rmlib", "train", str(cfg)],
                              cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                              timeout=900)
        assert proc.returncode == 0, proc.stderr[-5000:]
    s = _summary(tmp_path / "nvme")
    assert s["num_processes"] == 1 and s["distributed_type"].endswith("DEEPSPEED")
    assert (nvme / "zero_stage_3").is_dir()  # DeepSpeed's swap folders: the states really went to disk
    assert _max_diff(tmp_path / "nvme" / "model", tmp_path / "plain" / "model") < 1e-4
