"""The justifier under data parallelism: 2 CPU processes (gloo, ``accelerate launch``) take the same
optimisation steps as one process with the whole global batch, so the loss's mean over the global batch's
target tokens is normalised correctly across processes (micro-batches hold different token counts)."""

import json
import subprocess

import pytest

from rmlib.testing import build_tiny_causal_lm
from tests.helpers import load_weights, write_config
from tests.test_distributed import LAUNCH, _env
from tests.test_justifier import SAMPLE

pytestmark = pytest.mark.distributed


def _config(tmp_path, model, name, micro, accum, lr=0.05):
    return write_config(
        tmp_path / f"{name}.yaml", model={"name_or_path": str(model)},
        data={"train": str(SAMPLE), "train_split": "train", "eval_split": "test", "max_length": 192},
        loss={"name": "justifier", "options": {"target": "statement"}},
        train={"output_dir": str(tmp_path / name), "per_device_batch_size": micro,
               "gradient_accumulation_steps": accum, "max_steps": 3, "lr": lr, "max_grad_norm": 0.0,
               "adam_eps": 1.0,  # Adam's step then follows the gradient's scale: a mis-normalised loss shows
               "progress": False, "seed": 3, "scheduler": "constant", "sanity_checks": False})


def _max_diff(a, b):
    wa, wb = load_weights(a / "model"), load_weights(b / "model")
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def test_two_processes_equal_one_process_with_the_global_batch(tmp_path, tiny_llama):
    from rmlib.training import train

    model = build_tiny_causal_lm(tmp_path / "base", tiny_llama)
    ddp = _config(tmp_path, model, "ddp", micro=2, accum=1)
    proc = subprocess.run([*LAUNCH, "--multi_gpu", "--num_processes", "2", "-m", "rmlib", "train", str(ddp)],
                          env=_env(ACCELERATE_USE_CPU="true"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["distributed_type"].endswith("MULTI_CPU")
    big = train(str(_config(tmp_path, model, "big", micro=4, accum=1)))
    tol = 5e-5
    assert _max_diff(tmp_path / "ddp", tmp_path / "big") < tol
    assert abs(summary["eval"]["loss"] - big["eval"]["loss"]) < 1e-3  # held-out loss gathered over both ranks
    # the check can fail: the same run with twice the learning rate (a loss scaled by 2) ends far away
    train(str(_config(tmp_path, model, "scaled", micro=4, accum=1, lr=0.1)))
    assert _max_diff(tmp_path / "scaled", tmp_path / "big") > 100 * tol


def test_two_process_generation_gives_the_one_process_report(tmp_path, tiny_llama):
    """``rmlib eval`` of a justifier under ``accelerate launch``: each process generates a shard, the main
    process writes the report, which equals the one-process report (greedy decoding, same verdicts)."""
    from rmlib.eval.cli import main as eval_main

    model = build_tiny_causal_lm(tmp_path / "base", tiny_llama)
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()][:13]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": r["prompt"][0]["content"], "chosen": r["response_1"],
                                        "rejected": r["response_2"]}) + "\n" for r in rows))
    args = [str(model), "--suite", "pairs", "--data", str(data), "judge.both_orders=true", "judge.max_new_tokens=6",
            "batch_size=4"]
    proc = subprocess.run([*LAUNCH, "--multi_gpu", "--num_processes", "2", "-m", "rmlib", "eval", *args,
                           "--out", str(tmp_path / "two")], env=_env(ACCELERATE_USE_CPU="true"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert eval_main([*args, "--out", str(tmp_path / "one")]) == 0
    two, one = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("two", "one"))
    assert two["meta"]["num_processes"] == 2 and one["meta"]["num_processes"] == 1
    assert two["meta"]["justifier"] == one["meta"]["justifier"] and two["metrics"] == one["metrics"]
    assert two["meta"]["justifier"]["n"] == 13


@pytest.mark.parametrize("backend", ["deepspeed_zero2", "deepspeed_zero3"])
def test_deepspeed_trains_the_justifier_like_one_process(tmp_path, tiny_llama, backend):
    """The unchanged trainer under DeepSpeed ZeRO-2/3 (2 CPU processes): the same weights as one process
    holding the whole global batch, and ZeRO-3's gathered save is a plain causal LM."""
    pytest.importorskip("deepspeed")
    from transformers import AutoModelForCausalLM

    from rmlib.training import train
    from tests.test_deepspeed import CONFIGS

    model = build_tiny_causal_lm(tmp_path / "base", tiny_llama)
    cfg = _config(tmp_path, model, backend, micro=2, accum=1)
    proc = subprocess.run([*LAUNCH, "--config_file", str(CONFIGS / f"{backend}.yaml"), "--num_processes", "2",
                           "-m", "rmlib", "train", str(cfg)], env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / backend / "summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["distributed_type"].endswith("DEEPSPEED")
    big = train(str(_config(tmp_path, model, "big", micro=4, accum=1)))
    assert _max_diff(tmp_path / backend, tmp_path / "big") < 5e-5
    assert abs(summary["eval"]["loss"] - big["eval"]["loss"]) < 1e-3
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / backend / "model")).__name__ == "LlamaForCausalLM"
