"""LoRA and QLoRA reward models on CPU: the head trains and is saved, saves check themselves.

Each run trains the tiny Llama for a few steps through ``rmlib.train`` and saves a checkpoint at
the last step, whose state holds every trainable weight of the trained model: that is where we
see that LoRA and the head moved and that nothing of the base was trainable.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rmlib.config import ConfigError, LoraSettings
from rmlib.models import RewardModel
from rmlib.models.lora import (
    HeadNotTrainedError,
    SaveCheckError,
    apply_lora,
    default_target_modules,
    load_adapter,
    merge_adapter,
    probe_scores,
    save_checked,
)
from rmlib.training import train
from tests.helpers import write_pairs, write_ratings


def _cfg(model, data, out, *, quantization="none", steps=4, **model_kw):
    return {"model": {"name_or_path": str(model), "lora": {"enabled": True, "r": 4, "alpha": 8,
                                                             "quantization": quantization}, **model_kw},
            "data": {"train": str(data), "max_length": 64}, "loss": {"name": "bt"},
            "train": {"output_dir": str(out), "per_device_batch_size": 8, "lr": 2e-2, "max_steps": steps,
                      "save_every": steps, "progress": False, "seed": 0}}


def _final_state(run: Path) -> dict[str, torch.Tensor]:
    """Every trainable weight of the trained model, from the last checkpoint's state."""
    (ckpt,) = sorted((run / "checkpoints").glob("step-*"))
    return load_file(str(ckpt / "state" / "model.safetensors"))


def _check_trained(run: Path, base: Path) -> None:
    start = load_file(str(base / "model.safetensors"))
    end = _final_state(run)
    lora_b = [k for k in end if "lora_B" in k]
    assert lora_b and all(end[k].abs().max() > 0 for k in lora_b), "LoRA B starts at zero and must have moved"
    head = next(k for k in end if k.endswith("score.modules_to_save.default.weight"))
    assert not torch.equal(end[head], start["score.weight"]), "the reward head did not train"
    # the state holds exactly the trainable weights: LoRA factors and the head copy, no base weight
    base = [k for k in end if "lora_" not in k and ".modules_to_save." not in k]
    assert not base, f"base weights were trainable: {base[:3]}"
    # the adapter file holds LoRA and the full head, nothing of the base
    saved = load_file(str(run / "model" / "adapter_model.safetensors"))
    assert "base_model.model.score.weight" in saved
    assert all("lora_" in k or k.endswith("score.weight") for k in saved)
    torch.testing.assert_close(saved["base_model.model.score.weight"], end[head].to(saved[
        "base_model.model.score.weight"].dtype))


@pytest.fixture(scope="module")
def lora_run(tiny_llama, tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    data = write_pairs(root / "pairs.jsonl", 80)
    summary = train(_cfg(tiny_llama, data, root / "run"))
    return root / "run", summary


def test_lora_trains_head_and_adapters_only_then_reloads_and_merges(lora_run, tiny_llama, tmp_path):
    run, summary = lora_run
    assert summary["eval"]["accuracy"] >= 0.75
    _check_trained(run, tiny_llama)
    info = json.loads((run / "model" / "rmlib.json").read_text())["lora"]
    assert info["base_model"] == str(tiny_llama) and info["heads"] == ["score"]
    rm = RewardModel.from_pretrained(run / "model")  # an adapter directory loads directly
    assert type(rm.model).__name__ == "PeftModelForSequenceClassification"
    adapter_scores = probe_scores(rm)
    # merged export: a plain transformers directory that scores the same without rmlib or peft
    result = merge_adapter(run / "model", tmp_path / "merged")
    assert result["max_abs_diff"] < 1e-5
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    from transformers import AutoModelForSequenceClassification

    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert not any("lora" in n for n, _ in plain.named_parameters())
    merged = RewardModel(plain, rm.tokenizer)
    torch.testing.assert_close(probe_scores(merged), adapter_scores, atol=1e-5, rtol=0)
    # the streamed merge writes what peft's merge_and_unload computes (B @ A is a matmul: fp32 tolerance)
    reference = load_adapter(run / "model").model.merge_and_unload().state_dict()
    got = plain.state_dict()
    assert got.keys() == reference.keys()
    for k in got:
        torch.testing.assert_close(got[k], reference[k], rtol=1e-5, atol=1e-6, msg=k)
    # pairs the model learned: "yes ..." beats "no ..."
    r = rm.score(["0 what"], ["yes the answer"]) - rm.score(["0 what"], ["no the answer"])
    assert r.item() > 0


def test_export_command_merges_without_the_merge_flag(lora_run, tmp_path, capsys):
    """`rmlib export DIR --out OUT` merges (``--merge`` is still accepted); small shards get an index."""
    from rmlib.cli import build_parser, main
    from rmlib.models.safetensors_io import INDEX_NAME

    run, _ = lora_run
    assert main(["export", str(run / "model"), "--out", str(tmp_path / "m"), "--max-shard-size", "100KB"]) == 0
    assert "probe scores reproduced" in capsys.readouterr().out
    assert (tmp_path / "m" / INDEX_NAME).is_file() and len(list((tmp_path / "m").glob("*.safetensors"))) > 1
    assert not (tmp_path / "m.tmp").exists()
    info = json.loads((tmp_path / "m" / "rmlib.json").read_text())
    assert info["merged_from"] == str(run / "model")
    assert build_parser().parse_args(["export", "a", "--merge", "--out", "b"]).merge  # old spelling parses


def test_models_import_one_way():
    """reward_model never imports lora (lora registers its loader); models never import rmlib.config."""
    import ast
    import subprocess
    import sys

    tree = ast.parse((Path(__file__).resolve().parents[1] / "rmlib" / "models" / "reward_model.py").read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if "lora" in m]
    code = ("import sys, rmlib.models.lora, rmlib.models.merge; "
            "print(sorted(m for m in sys.modules if m in ('rmlib.config', 'rmlib.losses', 'rmlib.expo')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_qlora_trains_saves_reloads_and_merges(tiny_llama, tmp_path):
    pytest.importorskip("bitsandbytes")
    data = write_pairs(tmp_path / "pairs.jsonl", 80)
    cfg = _cfg(tiny_llama, data, tmp_path / "run", quantization="4bit", gradient_checkpointing=True)
    train(cfg)
    _check_trained(tmp_path / "run", tiny_llama)
    rm = RewardModel.from_pretrained(tmp_path / "run" / "model")
    assert any(type(m).__name__ == "Linear4bit" for m in rm.model.modules()), "reloaded on its 4-bit base"
    result = merge_adapter(tmp_path / "run" / "model", tmp_path / "merged")
    assert result["max_abs_diff"] < 1e-4
    plain = RewardModel.from_pretrained(tmp_path / "merged")
    assert not any(type(m).__name__ == "Linear4bit" for m in plain.model.modules())
    torch.testing.assert_close(probe_scores(plain), probe_scores(rm), atol=1e-4, rtol=0)


def test_a_save_that_does_not_reproduce_the_model_fails_and_keeps_the_previous_output(lora_run, monkeypatch):
    from accelerate import Accelerator

    run, _ = lora_run
    out = run / "model"
    before = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in out.iterdir()}
    rm = load_adapter(out)
    original = RewardModel.save_pretrained

    def loses_the_head(self, out_dir, **kw):  # the classic LoRA-RM bug: the trained head is not what is saved
        original(self, out_dir, **kw)
        f = Path(out_dir) / "adapter_model.safetensors"
        from safetensors.torch import save_file

        save_file({k: torch.zeros_like(v) if "score" in k else v for k, v in load_file(str(f)).items()}, str(f))

    monkeypatch.setattr(RewardModel, "save_pretrained", loses_the_head)
    with pytest.raises(SaveCheckError, match="probe scores changed"):
        save_checked(Accelerator(cpu=True), rm, out)
    assert {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in out.iterdir()} == before
    assert not (run / "model.tmp").exists()
    monkeypatch.undo()
    save_checked(Accelerator(cpu=True), rm, run / "again")  # the same model saves fine unpatched
    assert (run / "again" / "adapter_model.safetensors").is_file()


def test_default_targets_follow_the_module_tree_and_never_reach_the_head(tiny_llama, tmp_path):
    from rmlib.testing import build_tiny_bert

    llama = RewardModel.from_pretrained(tiny_llama)
    assert default_target_modules(llama._hf) == (
        r"model\.layers\.\d+\.(?:.*\.)?(?:down_proj|gate_proj|k_proj|o_proj|q_proj|up_proj|v_proj)")
    bert = RewardModel.from_pretrained(build_tiny_bert(tmp_path / "bert"))
    apply_lora(bert, LoraSettings(enabled=True, r=2))
    adapted = {n.rsplit(".", 1)[-1] for n, m in bert.model.named_modules() if hasattr(m, "lora_A")}
    assert adapted == {"query", "key", "value", "dense"}
    trainable = [n for n, p in bert.model.named_parameters() if p.requires_grad and "lora_" not in n]
    assert {n.split(".modules_to_save")[0].rsplit(".", 1)[-1] for n in trainable} == {"classifier", "pooler"}
    assert not any("pooler" in n for n, m in bert.model.named_modules() if hasattr(m, "lora_A"))
    # a user list whose suffix match reaches the head (BERT's pooler.dense) is refused
    with pytest.raises(HeadNotTrainedError, match="pooler"):
        apply_lora(RewardModel.from_pretrained(tmp_path / "bert"), LoraSettings(enabled=True, target_modules=["dense"]))
    with pytest.raises(HeadNotTrainedError, match="score"):
        apply_lora(RewardModel.from_pretrained(tiny_llama), LoraSettings(enabled=True, target_modules=["score"]))
    bert_out = bert(_bert_batch(bert))
    assert bert_out.shape == (2, 1) and bert_out.dtype == torch.float32


def _bert_batch(rm):
    from rmlib.data.collate import collate_sequences

    feat = rm.featurizer()
    seqs = [feat.encode([{"role": "user", "content": "hi"}], r) for r in ("yes", "no thanks")]
    return collate_sequences(seqs, rm.tokenizer.pad_token_id)


def test_two_stage_init_with_lora(tiny_llama_5, tmp_path):
    """Regression LoRA -> merged export -> BT LoRA keeping the helpfulness row as the head."""
    ratings = write_ratings(tmp_path / "ratings.jsonl", 64)
    cfg = _cfg(tiny_llama_5, ratings, tmp_path / "reg", steps=3)
    cfg["loss"]["name"] = "mse"
    train(cfg)
    merge_adapter(tmp_path / "reg" / "model", tmp_path / "reg_merged")
    pairs = write_pairs(tmp_path / "pairs.jsonl", 48)
    with pytest.raises(ValueError, match="rmlib export"):  # adapters are not bases
        bad = _cfg(tmp_path / "reg" / "model", pairs, tmp_path / "bad", steps=1)
        bad["model"]["init_from_regression_attribute"] = "helpfulness"
        train(bad)
    cfg2 = _cfg(tmp_path / "reg_merged", pairs, tmp_path / "bt", steps=1)
    cfg2["model"]["init_from_regression_attribute"] = "helpfulness"
    cfg2["train"]["lr"] = 1e-12
    train(cfg2)
    reg = RewardModel.from_pretrained(tmp_path / "reg_merged")
    bt = RewardModel.from_pretrained(tmp_path / "bt" / "model")
    assert bt.attributes == ["reward"] and reg.attributes[0] == "helpfulness"
    head = bt._hf.score.modules_to_save["default"].weight
    torch.testing.assert_close(head[0], reg.model.score.weight[0], atol=1e-6, rtol=0)


def test_quantization_errors_name_the_alternative(monkeypatch, tmp_path, tiny_llama):
    import builtins

    from rmlib.models.lora import require_bitsandbytes

    real_import = builtins.__import__

    def no_bnb(name, *a, **kw):
        if name.startswith("bitsandbytes"):
            raise ImportError("No module named 'bitsandbytes'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_bnb)
    with pytest.raises(ImportError, match=r"bitsandbytes>=0.45.*model.lora.quantization=none"):
        require_bitsandbytes("4bit", torch.device("cpu"))
    monkeypatch.undo()
    data = write_pairs(tmp_path / "p.jsonl", 8)
    from rmlib.config import load_config

    model = str(tiny_llama)  # an existing model, so only the LoRA settings are wrong
    with pytest.raises(ConfigError, match="model.lora.enabled=true"):
        load_config(None, ["model.lora.quantization=4bit"], base=_cfg(model, data, tmp_path) | {
            "model": {"name_or_path": model}})
    with pytest.raises(ConfigError, match="model.lora.quantization"):
        load_config(None, ["model.lora.quantization=3bit"], base=_cfg(model, data, tmp_path))


# -- the memory estimator ----------------------------------------------------------------------

def test_estimator_terms_match_measured_bytes(tiny_llama):
    """Weights, trainable parameters, gradients and AdamW states of real tiny LoRA and QLoRA models."""
    from rmlib.models.lora import quantization_kwargs
    from rmlib.plan import estimate_memory

    for quant in ("none", "4bit"):
        if quant == "4bit":
            pytest.importorskip("bitsandbytes")
        lo = LoraSettings(enabled=True, r=4, quantization=quant)
        rm = apply_lora(RewardModel.from_pretrained(tiny_llama, **quantization_kwargs(lo, torch.device("cpu"))), lo)
        est = estimate_memory(tiny_llama, 4, quant, seq_len=32, micro_batch=1, dtype="float32")
        storages: dict[int, int] = {}
        for n, p in rm.model.named_parameters():
            if p.requires_grad or ".original_module." in n:
                continue
            tensors = [p]
            qs = getattr(p, "quant_state", None)
            for state in (qs, getattr(qs, "state2", None)):
                tensors += [v for v in vars(state).values() if torch.is_tensor(v)] if state is not None else []
            for t in tensors:
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        measured = sum(storages.values())
        assert abs(est.weights - measured) <= 0.005 * measured, (quant, est.weights, measured)
        trainable = [p for p in rm.model.parameters() if p.requires_grad]
        assert est.trainable_params == sum(p.numel() for p in trainable)
        assert est.lora_params == sum(p.numel() * p.element_size() for p in trainable)
        opt = torch.optim.AdamW(trainable, lr=1e-3)
        rm(_llama_batch(rm)).sum().backward()
        assert est.grads == sum(p.grad.numel() * p.grad.element_size() for p in trainable)
        opt.step()
        states = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if v.ndim > 0)
        assert est.optimizer == states


def _llama_batch(rm):
    from rmlib.data.collate import collate_sequences

    feat = rm.featurizer()
    seqs = [feat.encode([{"role": "user", "content": "hello there"}], r) for r in ("yes", "no thanks")]
    return collate_sequences(seqs, rm.tokenizer.pad_token_id)


def test_block_activation_formula_matches_saved_tensors():
    """The per-token activation coefficient against what autograd really keeps (bf16, CPU)."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, LlamaConfig

    from rmlib.plan import block_activation_bytes

    h, inter, heads, kv, tokens = 192, 672, 6, 2, 128

    def saved_bytes(layers: int) -> int:
        cfg = LlamaConfig(vocab_size=256, hidden_size=h, intermediate_size=inter, num_hidden_layers=layers,
                          num_attention_heads=heads, num_key_value_heads=kv, num_labels=1, pad_token_id=0)
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(cfg).to(torch.bfloat16)
        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=8, target_modules=targets),
                               autocast_adapter_dtype=False).get_base_model()
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        seen: dict[int, int] = {}

        def pack(t):
            ptr = t.untyped_storage().data_ptr()
            if ptr not in params:
                seen[ptr] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.model(input_ids=torch.randint(1, 256, (1, tokens)), use_cache=False)
        return sum(seen.values())

    measured = (saved_bytes(2) - saved_bytes(1)) / tokens
    predicted = block_activation_bytes(h, inter, kv * h // heads, 8, 2)
    assert abs(predicted - measured) <= 0.03 * measured, (predicted, measured)


def test_recommend_and_plan_cli(tmp_path):
    from rmlib.plan import GIB, estimate_memory, recommend
    from tests.helpers import run_cli

    qlora = estimate_memory("meta-llama/Llama-3.1-8B", 16, "4bit", 4096, 1, True)
    lora = estimate_memory("meta-llama/Llama-3.1-8B", 16, "none", 4096, 1, True)
    assert qlora.total < lora.total and qlora.weights < 0.45 * lora.weights
    assert estimate_memory("meta-llama/Llama-3.1-8B", 16, "4bit", 4096, 1, False).activations > 3 * qlora.activations
    fits = recommend("meta-llama/Llama-3.1-8B", 16, 4096)
    assert fits and all(e.total <= 0.9 * 16 * GIB for e in fits)
    assert fits[0].settings["quantization"] != "none"  # a bf16 8B base does not fit 16 GiB
    # the shipped consumer-GPU recipes fit their card by the estimate (GPU calibration pending)
    root = Path(__file__).resolve().parents[1] / "configs" / "train"
    for name in ("lora_llama3_8b_24gb.yaml", "qlora_qwen7b_24gb.yaml"):
        out = run_cli("plan", str(root / name), "--budget", "24").stdout
        assert "fits in 24 GiB" in out and "setting(s) fit in 24 GiB" in out, out


def test_a_headless_base_takes_the_task_prefix_its_adapter_names():
    """MiniLM ships as a bare ``BertModel`` (``encoder.*``) while its LoRA adapter names ``bert.encoder.*``:
    the merge renames the base tensors so every factor finds its tensor; a base that already has the
    prefix, or an ambiguous one, is left as it is."""
    from rmlib.models.merge import _with_task_prefix
    from rmlib.models.safetensors_io import Entry

    def entries(*names):
        return {n: Entry(n, Path("x"), 0, (1,), torch.float32) for n in names}

    headless = entries("embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight")
    adapter = ["base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight",
               "base_model.model.classifier.modules_to_save.weight"]
    renamed = _with_task_prefix(headless, adapter)
    assert sorted(renamed) == ["bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.attention.self.query.weight"]
    assert all(e.name == k for k, e in renamed.items())
    prefixed = entries("bert.encoder.layer.0.attention.self.query.weight")
    assert _with_task_prefix(prefixed, adapter) == prefixed
