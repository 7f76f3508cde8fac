"""End-to-end training on tiny models: learning, regression, two-stage init, kill + resume."""

import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from rmlib.config import ConfigError
from rmlib.io import publish_dir, remove_dir
from rmlib.models import RewardModel
from rmlib.training import Trainer, train
from tests.helpers import load_weights, write_pairs, write_ratings


def _cfg(model, data, out, **train_kw):
    t = {"output_dir": str(out), "per_device_batch_size": 8, "lr": 3e-3, "progress": False, "seed": 0}
    t.update(train_kw)
    return {"model": {"name_or_path": str(model)}, "data": {"train": str(data), "max_length": 64},
            "loss": {"name": "bt"}, "train": t}


def test_bt_training_learns_and_evaluates_on_held_out_prompts(tiny_llama, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", 240)
    s = train(_cfg(tiny_llama, data, tmp_path / "run", epochs=2, eval_at_start=True))
    assert s["eval"]["accuracy"] >= 0.95 > s["eval_before"]["accuracy"] + 0.2
    # 240 prompts, 5 % (12) held out, 228 train in global batches of 8: 29 per epoch (the last holds 4)
    assert s["steps"] == 2 * math.ceil((240 - 12) / 8) == 58
    assert "held out by prompt" in s["eval_source"]
    # the saved model reproduces the held-out accuracy when loaded again
    m = RewardModel.from_pretrained(tmp_path / "run" / "model")
    r = m.score(["0 what"], ["yes the answer"]) - m.score(["0 what"], ["no the answer"])
    assert r.item() > 0
    assert (tmp_path / "run" / "config.yaml").read_text().count("name: bt") == 1


@pytest.mark.parametrize("loss", ["margin_bt", "scaled_bt", "soft_bt"])
def test_other_pairwise_losses_train(tiny_llama, tmp_path, loss):
    data = write_pairs(tmp_path / "pairs.jsonl", 160, votes=True)
    cfg = _cfg(tiny_llama, data, tmp_path / "run", epochs=2)
    cfg["loss"]["name"] = loss
    s = train(cfg)
    assert s["eval"]["accuracy"] >= 0.9


def test_regression_training_and_two_stage_bt_init(tiny_llama, tmp_path):
    ratings = write_ratings(tmp_path / "ratings.jsonl", 240)
    cfg = _cfg(tiny_llama, ratings, tmp_path / "reg", epochs=3)
    cfg["loss"]["name"] = "mse"
    s = train(cfg)
    assert s["eval"]["pearson_helpfulness"] > 0.9 and s["eval"]["mse"] < s["eval"]["loss"] * 10
    reg = RewardModel.from_pretrained(tmp_path / "reg" / "model")
    assert reg.attributes == ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
    # stage 2: BT from the regression checkpoint, keeping the helpfulness row as the scalar head
    pairs = write_pairs(tmp_path / "pairs.jsonl", 160)
    cfg2 = _cfg(tmp_path / "reg" / "model", pairs, tmp_path / "bt", max_steps=1, lr=1e-12, eval_at_start=True)
    cfg2["model"]["init_from_regression_attribute"] = "helpfulness"
    s2 = train(cfg2)
    # the untrained stage-2 model already ranks by helpfulness: yes-responses were rated helpful
    assert s2["eval_before"]["accuracy"] >= 0.9
    bt = RewardModel.from_pretrained(tmp_path / "bt" / "model")
    assert bt.attributes == ["reward"]
    torch.testing.assert_close(bt.model.score.weight[0], reg.model.score.weight[0], atol=1e-6, rtol=0)


def test_config_errors_fail_before_loading_a_model(tiny_llama, tmp_path):
    import shutil

    data = write_pairs(tmp_path / "pairs.jsonl", 20, strength=False)
    not_a_model = tmp_path / "not_a_model"  # a config and a tokenizer (features need it) but no weights
    shutil.copytree(tiny_llama, not_a_model)
    for weights in not_a_model.glob("*.safetensors"):
        weights.unlink()
    base = _cfg(not_a_model, data, tmp_path / "run")
    with pytest.raises(ConfigError, match="train.lrr"):
        Trainer(base, ["train.lrr=1"])
    with pytest.raises(ConfigError, match="train.lr"):
        Trainer(base, ["train.lr=fast"])
    with pytest.raises(ConfigError, match="data file not found"):
        Trainer(base, ["data.train=missing.jsonl"])
    with pytest.raises(ConfigError, match="train.scheduler"):
        Trainer(base, ["train.scheduler=cosine_restarts"])
    with pytest.raises(ConfigError, match="unknown loss|not registered|registered"):
        Trainer(base, ["loss.name=bradley"])
    for key in ("train.eval_every=-1", "train.save_every=-2", "train.keep_best=-1", "train.max_grad_norm=-1"):
        with pytest.raises(ConfigError, match=key.split("=")[0] + ".*>= 0"):
            Trainer(base, [key])
    with pytest.raises(ConfigError, match="train.log_every.*>= 1"):
        Trainer(base, ["train.log_every=0"])
    with pytest.raises(ConfigError, match="grad scaler"):
        Trainer(base, ["train.mixed_precision=fp16", "model.dtype=float16"])
    # data/loss incompatibility is found from the data alone: the model path does not even exist
    with pytest.raises(ConfigError, match="consumes the label 'margin'"):
        Trainer(base, ["loss.name=margin_bt"]).fit()
    with pytest.raises(ConfigError, match="needs ratings data"):
        Trainer(base, ["loss.name=mse"]).fit()


def _weights_close(a, b, tol):
    wa, wb = load_weights(a), load_weights(b)
    assert wa.keys() == wb.keys()
    return max((wa[k] - wb[k]).abs().max().item() for k in wa) <= tol


def test_kill_during_training_then_resume_matches_uninterrupted_run(tiny_llama, tmp_path):
    """SIGKILL a real training process after its first checkpoint, resume, compare final weights."""
    from tests.helpers import write_config

    data = write_pairs(tmp_path / "pairs.jsonl", 160)

    def cfg(name):
        c = _cfg(tiny_llama, data, tmp_path / name, max_steps=64, save_every=16, lr=1e-3, keep_best=1,
                 resume_from="auto", eval_every=32)
        return write_config(tmp_path / f"{name}.yaml", **c)

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rmlib", "train", str(cfg("killed"))], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    first = tmp_path / "killed" / "checkpoints" / "step-0000016"
    deadline = time.time() + 240
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "killed" / "summary.json").exists()
    resumed = subprocess.run([sys.executable, "-m", "rmlib", "train", str(cfg("killed"))], env=env, check=True,
                             capture_output=True, text=True)
    assert "features from the cache" in resumed.stdout  # the resumed run tokenized nothing
    subprocess.run([sys.executable, "-m", "rmlib", "train", str(cfg("straight"))], env=env, check=True,
                   capture_output=True)
    assert _weights_close(tmp_path / "killed" / "model", tmp_path / "straight" / "model", 1e-6)
    # checkpoints kept: the best by eval loss plus the last, never a half-written .tmp
    names = sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir())
    assert "step-0000064" in names and len(names) <= 2 and not any(n.endswith(".tmp") for n in names)


def test_resume_ignores_a_half_written_checkpoint(tiny_llama, tmp_path):
    from rmlib.training.checkpoint import resolve_resume

    data = write_pairs(tmp_path / "pairs.jsonl", 64)
    train(_cfg(tiny_llama, data, tmp_path / "run", max_steps=4, save_every=2))
    broken = tmp_path / "run" / "checkpoints" / "step-0000006.tmp"
    broken.mkdir()
    (broken / "trainer_state.json").write_text("{not json")
    assert resolve_resume("auto", tmp_path / "run").name == "step-0000004"
    with pytest.raises(FileNotFoundError, match="not a complete rmlib checkpoint"):
        resolve_resume(str(broken), tmp_path / "run")


def test_trackers_gradient_checkpointing_and_bf16_autocast(tiny_llama, tmp_path):
    """TensorBoard logging writes event files; checkpointing + bf16 autocast still train the model."""
    data = write_pairs(tmp_path / "pairs.jsonl", 96)
    cfg = _cfg(tiny_llama, data, tmp_path / "run", max_steps=8, report_to="tensorboard", log_every=2,
               mixed_precision="bf16")
    cfg["model"]["gradient_checkpointing"] = True
    s = train(cfg)
    events = list((tmp_path / "run").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert {"train/loss", "eval/accuracy"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == [2, 4, 6, 8]
    assert s["eval"]["accuracy"] > 0.8


def test_wandb_offline_run_writes_files(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    data = write_pairs(tmp_path / "pairs.jsonl", 48)
    train(_cfg(tiny_llama, data, tmp_path / "run", max_steps=2, report_to="wandb", log_every=1))
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert runs and runs[0].stat().st_size > 0


def test_evaluation_rows_never_reach_training(tiny_llama, tmp_path):
    """A separate eval file sharing rows with train, and eval_split without train_split, both exclude
    the evaluation rows from training and count them in the report."""
    import json

    from rmlib.config import load_config
    from rmlib.data.tokenize import Featurizer
    from rmlib.models.reward_model import load_tokenizer
    from rmlib.training.data import load_examples

    feat = Featurizer(load_tokenizer(tiny_llama), 64)
    data = write_pairs(tmp_path / "pairs.jsonl", 30)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:5]))
    cfg = load_config(None, base=_cfg(tiny_llama, data, tmp_path / "o") | {"data": {
        "train": str(data), "eval": str(tmp_path / "eval.jsonl")}})
    ex = load_examples(cfg, feat)
    assert len(ex.train) == 25 and len(ex.eval) == 5 and ex.report.filtered["in_eval_set"] == 5
    for i, r in enumerate(rows):
        r["meta"] = {"split": "val" if i % 3 == 0 else "train"}
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(None, base=_cfg(tiny_llama, data, tmp_path / "o") | {"data": {
        "train": str(data), "eval_split": "val"}})
    ex = load_examples(cfg, feat)
    assert len(ex.eval) == 10 and len(ex.train) == 20 and ex.report.filtered["eval_split"] == 10
    key = lambda e: tuple(e.chosen.ids[:e.chosen.prompt_len])  # noqa: E731
    assert not {key(e) for e in ex.train} & {key(e) for e in ex.eval}


def test_single_process_optimizer_is_fused_adamw(tiny_llama, tmp_path):
    """Fused AdamW (no foreach temporaries) wherever torch owns the parameters."""
    from rmlib.runtime import make_accelerator

    t = Trainer(_cfg(tiny_llama, write_pairs(tmp_path / "pairs.jsonl", 8), tmp_path / "run"))
    acc = make_accelerator()
    assert acc.distributed_type.name == "NO"
    opt, _ = t._optimizer(acc, t._build_model(t._preflight()[0], ["reward"], acc.device), 10)
    assert type(opt) is torch.optim.AdamW and opt.defaults["fused"] is True


@pytest.mark.parametrize("shared_prompt", [False, True])
def test_training_runs_in_train_mode_and_checkpointing_recomputes(tiny_llama, tmp_path, monkeypatch, shared_prompt):
    """transformers loads in eval mode; training must switch to train mode, or dropout is off and
    gradient checkpointing (active only while training) silently keeps every activation."""
    from transformers.models.llama.modeling_llama import LlamaMLP

    data = write_pairs(tmp_path / "pairs.jsonl", 32)
    calls = {"train": 0, "eval": 0}
    original = LlamaMLP.forward  # inside each decoder layer (whose own forward is the checkpoint wrapper)

    def counting(self, *a, **kw):
        if torch.is_grad_enabled():  # training forwards and their recomputation in backward
            calls["train" if self.training else "eval"] += 1
        return original(self, *a, **kw)

    monkeypatch.setattr(LlamaMLP, "forward", counting)

    def run(gc: bool) -> int:
        calls.update(train=0, eval=0)
        cfg = _cfg(tiny_llama, data, tmp_path / f"run_{gc}_{shared_prompt}", max_steps=1, eval_at_start=False)
        cfg["model"]["gradient_checkpointing"] = gc
        cfg["data"]["shared_prompt"] = shared_prompt
        train(cfg)
        assert calls["eval"] == 0, "a training forward ran in eval mode"
        return calls["train"]

    plain, checkpointed = run(False), run(True)
    assert plain > 0 and checkpointed == 2 * plain  # every layer is run again in the backward pass


def test_fp16_mixed_precision_is_refused_on_cpu(tiny_llama, tmp_path):
    """Accelerate accepts fp16 on CPU and then runs fp32 without saying so."""
    data = write_pairs(tmp_path / "pairs.jsonl", 32)
    with pytest.raises(RuntimeError, match="fp16 has no effect on CPU"):
        train(_cfg(tiny_llama, data, tmp_path / "run", max_steps=1, mixed_precision="fp16"))


def test_every_checkpoint_is_ranked_and_an_older_resume_sets_the_newer_ones_aside(tiny_llama, tmp_path):
    import json

    from rmlib.training import checkpoint as ckpt

    data = write_pairs(tmp_path / "pairs.jsonl", 96)
    run = tmp_path / "run"
    # eval only at the end of the epoch, but keep_best > 0: every save is evaluated so it can be ranked
    train(_cfg(tiny_llama, data, run, max_steps=6, save_every=2, keep_best=3, eval_every=0))
    state = json.loads((run / "checkpoints" / "step-0000006" / ckpt.STATE_FILE).read_text())
    assert sorted(name for _, name in state["best"]) == ["step-0000002", "step-0000004", "step-0000006"]
    old_model = load_weights(run / "model")

    # resume from step 2 on other data: a new branch; steps 4 and 6 of the old one are kept under
    # .superseded, never resumed from or pruned, and the new branch's own 4 and 6 replace them
    other = write_pairs(tmp_path / "other.jsonl", 96, seed=1)
    train(_cfg(tiny_llama, other, run, max_steps=6, save_every=2, keep_best=3, eval_every=0,
               resume_from=str(run / "checkpoints" / "step-0000002"), allow_resume_changes=True))
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step-0000002", "step-0000004", "step-0000004.superseded", "step-0000006",
                     "step-0000006.superseded"]
    assert [p.name for p in ckpt.complete_checkpoints(run)] == ["step-0000002", "step-0000004", "step-0000006"]
    assert ckpt.resolve_resume("auto", run).name == "step-0000006"
    # the final model was replaced as a whole (publish leaves no model.tmp / model.old behind)
    new_model = load_weights(run / "model")
    assert any(not torch.equal(old_model[k], new_model[k]) for k in old_model)
    assert not (run / "model.tmp").exists() and not (run / "model.old").exists()


def test_publish_and_remove_never_leave_a_checkpoint_that_looks_complete(tmp_path):
    from rmlib.training import checkpoint as ckpt

    final, staging = tmp_path / "model", tmp_path / "model.tmp"
    final.mkdir()
    (final / "w").write_text("old")
    (tmp_path / "model.old").mkdir()  # left by a kill between the two renames of an earlier publish
    staging.mkdir()
    (staging / "w").write_text("new")
    publish_dir(staging, final)
    assert (final / "w").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]

    root = tmp_path / "run"
    for step in (2, 4):
        d = ckpt.checkpoint_dir(root) / f"step-{step:07d}"
        d.mkdir(parents=True)
        ckpt.TrainerState(step=step).save(d / ckpt.STATE_FILE)
    remove_dir(ckpt.checkpoint_dir(root) / "step-0000002")
    assert [p.name for p in ckpt.checkpoint_dir(root).iterdir()] == ["step-0000004"]


def test_regression_eval_loss_is_the_training_mean_over_weighted_rows(tiny_llama_5, tmp_path):
    """Rows whose only targets have weight 0 count in neither the training nor the eval mean."""
    import math

    from accelerate import Accelerator

    from rmlib.data.tokenize import RatedFeatures
    from rmlib.losses import get_loss
    from rmlib.training.evaluate import evaluate, predict

    m = RewardModel.from_pretrained(tiny_llama_5)
    feat = m.featurizer()
    from rmlib.models.reward_model import as_messages

    nan = math.nan
    targets = [[3.0, 1, 1, 1, 1], [nan, 2, 2, 2, 2], [1.0, nan, nan, nan, nan], [nan, 4, nan, nan, nan]]
    feats = [RatedFeatures(feat.encode(as_messages(f"q{i}"), f"answer {i}"), {"targets": t}, i)
             for i, t in enumerate(targets)]
    weights = [1.0, 0.0, 0.0, 0.0, 0.0]  # helpfulness only: rows 1 and 3 carry no weighted target
    kw = dict(pad_id=m.tokenizer.pad_token_id, batch_size=4, accelerator=Accelerator(cpu=True))
    metrics = evaluate(m, get_loss("mse", reduction="none", attribute_weights=weights), feats,
                       kind="ratings", attributes=m.attributes, **kw)
    preds = predict(m, feats, **kw)
    expected = get_loss("mse", attribute_weights=weights)(preds, torch.tensor(targets))  # mean over 2 rows
    assert metrics["loss"] == pytest.approx(expected.item(), rel=1e-5)


def test_an_unsplittable_last_batch_is_counted_every_epoch(tiny_llama, tmp_path):
    """34 pairs, global batch 8 × 4 accumulation = 32: each epoch's last batch holds 2 pairs, too
    few for 4 micro-batches. It is dropped and counted, once per epoch, never silently."""
    train_data = write_pairs(tmp_path / "train.jsonl", 34)
    eval_data = write_pairs(tmp_path / "eval.jsonl", 8, seed=1)
    cfg = _cfg(tiny_llama, train_data, tmp_path / "run", epochs=3, gradient_accumulation_steps=4)
    cfg["data"]["eval"] = str(eval_data)
    s = train(cfg)
    assert s["steps"] == 3 and s["dropped_incomplete_batch_items"] == 3 * 2


def test_a_new_loss_with_a_new_label_trains_without_touching_the_trainer(tiny_llama, tmp_path, monkeypatch):
    """The label contract: a loss declares a label no built-in loss uses; the data carries it in
    ``meta``; features, batches, the load-time check and evaluation pass it through unchanged."""
    import json

    import torch.nn.functional as F

    from rmlib.losses import PairwiseLoss, register_loss
    from rmlib.losses import registry as loss_registry

    monkeypatch.setattr(loss_registry, "_REGISTRY", dict(loss_registry._REGISTRY))
    seen: list[torch.Tensor] = []

    @register_loss("weighted_bt_test")
    class WeightedBT(PairwiseLoss):
        labels = ("pair_weight",)

        def per_pair(self, delta, labels):
            seen.append(labels["pair_weight"].detach().cpu())
            return -labels["pair_weight"] * F.logsigmoid(delta)

    src = write_pairs(tmp_path / "pairs.jsonl", 160)
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    weighted = tmp_path / "weighted.jsonl"
    weighted.write_text("".join(json.dumps({**r, "meta": {"pair_weight": 1.0 + i % 2}}) + "\n"
                                for i, r in enumerate(rows)))
    cfg = _cfg(tiny_llama, weighted, tmp_path / "run", epochs=2)
    cfg["loss"]["name"] = "weighted_bt_test"
    s = train(cfg)
    assert s["eval"]["accuracy"] >= 0.9
    values = torch.cat(seen)
    assert set(values.unique().tolist()) == {1.0, 2.0}  # the label reached the loss, per pair
    # data without the label is refused by name before any model is loaded
    cfg["data"]["train"] = str(src)
    cfg["train"]["output_dir"] = str(tmp_path / "run2")
    with pytest.raises(ConfigError, match="consumes the label 'pair_weight'"):
        train(cfg)


def test_trainer_applies_overrides_to_a_config_object(tiny_llama, tmp_path):
    from rmlib.config import load_config

    data = write_pairs(tmp_path / "pairs.jsonl", 20)
    cfg = load_config(None, base=_cfg(tiny_llama, data, tmp_path / "run"))
    t = Trainer(cfg, ["train.lr=0.25", "loss.name=scaled_bt"])
    assert t.cfg.train.lr == 0.25 and t.cfg.loss.name == "scaled_bt"
    assert cfg.train.lr == 3e-3  # the caller's object is not changed
    with pytest.raises(ConfigError, match="train.lrr"):
        Trainer(cfg, ["train.lrr=1"])
    with pytest.raises(ConfigError, match="shared_prompt"):
        Trainer(cfg, ["loss.name=mse", "data.shared_prompt=true"]).fit()


def test_resume_reads_no_pickle_so_a_planted_one_never_runs(tiny_llama, tmp_path):
    """Trainer state is safetensors + JSON: a crafted pickle copied into a checkpoint is never loaded."""
    import pickle

    data = write_pairs(tmp_path / "pairs.jsonl", 48)
    cfg = _cfg(tiny_llama, data, tmp_path / "run", max_steps=4, save_every=2, keep_best=3)
    train(cfg)
    ckpt_dir = tmp_path / "run" / "checkpoints" / "step-0000002"
    state = ckpt_dir / "state"
    assert {p.suffix for p in state.iterdir()} <= {".json", ".safetensors"}
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name in ("optimizer.bin", "scheduler.bin", "custom_checkpoint_0.pkl", "random_states_0.pkl",
                 "pytorch_model.bin"):
        (state / name).write_bytes(pickle.dumps(Payload()))
    s = train({**cfg, "train": {**cfg["train"], "resume_from": str(ckpt_dir), "max_steps": 4}})
    assert s["steps"] == 4 and not marker.exists()


def test_warmup_steps_set_the_schedule_and_clash_with_a_ratio(tiny_llama, tmp_path, capsys):
    """train.warmup_steps (HF's `warmup_steps`) warms up over that many steps, whatever the run's length."""
    from rmlib.config import load_config

    data = write_pairs(tmp_path / "pairs.jsonl", 40)
    cfg = _cfg(tiny_llama, data, tmp_path / "run", max_steps=4, warmup_steps=2, scheduler="constant_with_warmup",
               lr=1e-3, log_every=1)
    train(cfg)
    lrs = [float(line.split("lr=")[1].split()[0]) for line in capsys.readouterr().out.splitlines()
           if line.startswith("step ") and "lr=" in line]
    assert lrs == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3])  # the lr after steps 1..4: 1/2, then the peak
    with pytest.raises(ConfigError, match="warmup_steps.*warmup_ratio.*both set"):
        Trainer(_cfg(tiny_llama, data, tmp_path / "r2", warmup_steps=10, warmup_ratio=0.1))
    with pytest.raises(ConfigError, match="(?i)did you mean.*warmup_steps"):
        load_config(None, ["train.num_warmup_steps=10"], base=_cfg(tiny_llama, data, tmp_path / "r3"))
