"""The export contract on every kind of final model (full, LoRA-merged, QLoRA-merged, ExPO), the
model card and the upload (only huggingface_hub's two network calls are faked)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from rmlib.expo import extrapolate
from rmlib.models import RewardModel
from rmlib.models.export import (
    ExportContractError,
    check_export_contract,
    finish_training_output,
    push_model,
    write_model_card,
)
from rmlib.models.lora import merge_adapter
from rmlib.training import train
from tests.helpers import run_cli, write_pairs

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _cfg(model, data, out, *, lora=False, quantization="none", steps=2):
    return {"model": {"name_or_path": str(model), "lora": {"enabled": lora, "r": 4, "alpha": 8,
                                                             "quantization": quantization}},
            "data": {"train": str(data), "max_length": 64}, "loss": {"name": "bt"},
            "train": {"output_dir": str(out), "per_device_batch_size": 4, "lr": 1e-3, "max_steps": steps,
                      "progress": False, "seed": 0, "eval_every": steps}}


def _config(d: Path) -> dict:
    return json.loads((d / "config.json").read_text())


def _assert_contract(d: Path, labels=("reward",)) -> None:
    assert check_export_contract(d) == [], check_export_contract(d)
    cfg = _config(d)
    # the fields one by one, as vLLM / SGLang / transformers read them
    assert cfg["architectures"][0].endswith("ForSequenceClassification")
    assert cfg["problem_type"] == "regression" and cfg["pad_token_id"] is not None
    assert [cfg["id2label"][str(i)] for i in range(len(labels))] == list(labels)
    assert "quantization_config" not in cfg and not (d / "adapter_config.json").exists()
    from safetensors import safe_open

    with safe_open(str(d / "model.safetensors"), "pt") as f:
        assert f.get_slice("score.weight").get_shape()[0] == len(labels)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(d).chat_template
    # transformers alone loads it and scores what rmlib scores
    from transformers import AutoModelForSequenceClassification

    hf = AutoModelForSequenceClassification.from_pretrained(d).eval()
    rm = RewardModel.from_pretrained(d)
    enc = rm.featurizer().encode([{"role": "user", "content": "hi there"}], "hello")
    with torch.no_grad():
        direct = hf(input_ids=torch.tensor([enc.ids])).logits[0]
    torch.testing.assert_close(direct, rm.score(["hi there"], ["hello"]).reshape(-1), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", 16)


@pytest.fixture(scope="module")
def full_run(tiny_llama, pairs, tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    train(_cfg(tiny_llama, pairs, root / "run"))
    return root / "run" / "model"


def test_full_fine_tune_meets_the_contract_and_has_a_card(full_run):
    _assert_contract(full_run)
    card = (full_run / "README.md").read_text()
    assert "train:" in card and "data_report" not in card and "Data report" in card  # config + data report
    assert 'function_to_apply="none"' in card and "vllm serve" in card and "--is-embedding" in card


def test_multi_head_model_names_its_attributes(tiny_llama_5, tmp_path):
    rm = RewardModel.from_pretrained(tiny_llama_5)
    rm.save_pretrained(tmp_path / "m")
    _assert_contract(tmp_path / "m", ("helpfulness", "correctness", "coherence", "complexity", "verbosity"))


def test_lora_merged_meets_the_contract(tiny_llama, pairs, tmp_path):
    train(_cfg(tiny_llama, pairs, tmp_path / "run", lora=True))
    adapter = tmp_path / "run" / "model"
    assert any("adapter_config.json" in p for p in check_export_contract(adapter))
    merge_adapter(adapter, tmp_path / "merged")
    _assert_contract(tmp_path / "merged")


def test_qlora_merged_meets_the_contract(tiny_llama, pairs, tmp_path):
    pytest.importorskip("bitsandbytes")
    train(_cfg(tiny_llama, pairs, tmp_path / "run", lora=True, quantization="4bit"))
    merge_adapter(tmp_path / "run" / "model", tmp_path / "merged")
    _assert_contract(tmp_path / "merged")


def test_expo_output_meets_the_contract(full_run, tiny_llama, tmp_path):
    weak = tmp_path / "weak"
    RewardModel.from_pretrained(tiny_llama).save_pretrained(weak)
    extrapolate(weak, full_run, 0.5, tmp_path / "expo")
    _assert_contract(tmp_path / "expo")


@pytest.mark.parametrize("breakage, field", [
    (lambda d, c: c.update(architectures=["LlamaForCausalLM"]), "architectures"),
    (lambda d, c: c.pop("problem_type"), "problem_type"),  # transformers' default: None
    (lambda d, c: c.update(pad_token_id=None), "pad_token_id"),
    (lambda d, c: c.update(quantization_config={"load_in_4bit": True}), "quantization_config"),
    (lambda d, c: c.update(id2label={"0": "LABEL_0"}), "id2label"),
    (lambda d, c: c.update(num_labels=2, id2label={"0": "a", "1": "b"}), "score.weight"),
    (lambda d, c: (d / "adapter_config.json").write_text("{}"), "adapter_config.json"),
    (lambda d, c: (d / "chat_template.jinja").unlink(), "chat_template"),
    (lambda d, c: (d / "tokenizer.json").unlink(), "tokenizer"),
    (lambda d, c: _rename_head(d), "score.weight"),
])
def test_each_broken_field_is_named(full_run, tmp_path, breakage, field):
    d = tmp_path / "m"
    shutil.copytree(full_run, d)
    cfg = _config(d)
    breakage(d, cfg)
    (d / "config.json").write_text(json.dumps(cfg))
    problems = check_export_contract(d)
    assert len(problems) == 1 and problems[0].startswith(field), problems


def _rename_head(d: Path) -> None:
    from safetensors.torch import load_file, save_file

    sd = load_file(str(d / "model.safetensors"))
    sd["value_head.weight"] = sd.pop("score.weight")
    save_file(sd, str(d / "model.safetensors"), metadata={"format": "pt"})


def test_export_refuses_a_directory_that_breaks_the_contract(tiny_llama, pairs, tmp_path, monkeypatch):
    import rmlib.models.lora as lora

    train(_cfg(tiny_llama, pairs, tmp_path / "run", lora=True))
    real = lora._merged_config

    def causal_lm_config(rm, dtype):  # the bug the contract catches: a base saved as a causal LM
        config = real(rm, dtype)
        config.architectures = ["LlamaForCausalLM"]
        return config

    monkeypatch.setattr(lora, "_merged_config", causal_lm_config)
    with pytest.raises(ExportContractError, match="architectures"):
        merge_adapter(tmp_path / "run" / "model", tmp_path / "merged")
    assert not (tmp_path / "merged").exists() and not (tmp_path / "merged.tmp").exists()


class FakeHub:
    """huggingface_hub.HfApi's two network calls, recorded instead of sent."""

    def __init__(self, monkeypatch):
        from huggingface_hub import HfApi

        self.calls = []
        monkeypatch.setattr(HfApi, "create_repo", lambda api, repo_id, **kw: self.calls.append(("create", repo_id, kw)))

        def upload_folder(api, *, folder_path, repo_id, **kw):
            self.calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
            return "https://huggingface.co/fake/commit/0"

        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)


def test_push_uploads_a_contract_directory_and_refuses_others(full_run, tmp_path, monkeypatch):
    hub = FakeHub(monkeypatch)
    assert push_model(full_run, "me/rm", private=True).endswith("/commit/0")
    (create, upload) = hub.calls
    assert create == ("create", "me/rm", {"private": True, "exist_ok": True, "repo_type": "model"})
    assert upload[1] == "me/rm" and {"config.json", "model.safetensors", "README.md"} <= set(upload[2])
    broken = tmp_path / "broken"
    shutil.copytree(full_run, broken)
    (broken / "adapter_config.json").write_text("{}")
    with pytest.raises(ExportContractError, match="adapter_config.json"):
        push_model(broken, "me/rm")
    assert len(hub.calls) == 2


def test_train_push_to_hub_option_merges_a_lora_run_then_uploads(tiny_llama, pairs, tmp_path, monkeypatch):
    hub = FakeHub(monkeypatch)
    cfg = _cfg(tiny_llama, pairs, tmp_path / "run", lora=True)
    cfg["train"]["push_to_hub"] = "me/lora-rm"
    train(cfg)
    assert [c[:2] for c in hub.calls] == [("create", "me/lora-rm"), ("upload", "me/lora-rm")]
    merged = tmp_path / "run" / "model-merged"
    assert check_export_contract(merged) == [] and "README.md" in hub.calls[1][2]
    assert "me/lora-rm" in (merged / "README.md").read_text()


def test_finish_without_push_only_writes_the_card(full_run, tmp_path, monkeypatch):
    hub = FakeHub(monkeypatch)
    d = tmp_path / "m"
    shutil.copytree(full_run, d)
    finish_training_output(d, config_yaml="train:\n  lr: 1.0\n", summary={"steps": 3}, push_to_hub=None)
    assert hub.calls == [] and "lr: 1.0" in (d / "README.md").read_text()


def test_card_lists_rmlib_eval_results(full_run, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(full_run, d)
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "report.json").write_text(json.dumps({"suite": "pairs", "metrics": {"accuracy": 0.75,
                                                                                             "n": 40}}))
    write_model_card(d, eval_reports=[tmp_path / "ev"])
    card = (d / "README.md").read_text()
    assert "| pairs | accuracy | 0.75 |" in card and "| pairs | n | 40 |" in card


@pytest.mark.slow  # a CLI subprocess (about 10 s)
def test_push_cli(full_run, tmp_path):
    # the CLI path up to the upload: a directory that breaks the contract is refused before any network call
    broken = tmp_path / "broken"
    shutil.copytree(full_run, broken)
    cfg = _config(broken)
    cfg["problem_type"] = None
    (broken / "config.json").write_text(json.dumps(cfg))
    res = run_cli("push", str(broken), "me/rm", check=False)
    assert res.returncode == 2 and "problem_type" in res.stderr


# -- one-output export: the heads folded into the one reward every RL client reads ----------------

FIVE = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
PROMPTS = ["What is 2 + 2?", "Name a colour.", "Say something kind, please."]
RESPONSES = ["4", "Blue, like the sky at noon.", "You did well today."]


@pytest.fixture(scope="module")
def five_heads(tiny_llama_5, tmp_path_factory):
    """A plain 5-head directory as training writes it."""
    d = tmp_path_factory.mktemp("five") / "model"
    rm = RewardModel.from_pretrained(tiny_llama_5)
    rm.save_pretrained(d, extra={"summary": {"steps": 3}})
    return d


def _one_output(out: Path, src: Path, w) -> None:
    """The export is a one-output model whose reward equals the weighted sum of the source's heads (1e-5),
    through rmlib and through transformers alone (the export contract's check), and its card says so."""
    _assert_contract(out, ("reward",))
    heads = RewardModel.from_pretrained(src).score(PROMPTS, RESPONSES)
    assert heads.shape == (3, 5)
    got = RewardModel.from_pretrained(out).score(PROMPTS, RESPONSES)
    torch.testing.assert_close(got, heads @ torch.tensor(w), atol=1e-5, rtol=0)
    assert (got - heads[:, 0]).abs().max() > 1e-3 or w[0] == 1  # not merely the first head
    card = (out / "README.md").read_text()
    assert "**The reward is output 0 (`reward`), the only output**" in card


def test_one_output_export_equals_the_weighted_heads(five_heads, tmp_path, capsys):
    from rmlib.cli import main

    w = [0.3, 0.7, 0.0, -0.5, 1.0]
    assert main(["export", str(five_heads), "--out", str(tmp_path / "one"), "--head-weights", "0.3,0.7,0,-0.5,1",
                 "--device", "cpu"]) == 0
    assert "reward = 0.3*helpfulness + 0.7*correctness + -0.5*complexity + 1*verbosity" in capsys.readouterr().out
    _one_output(tmp_path / "one", five_heads, w)
    info = json.loads((tmp_path / "one" / "rmlib.json").read_text())
    assert info["summary"] == {"steps": 3} and info["folded_heads"]["weights"] == dict(zip(FIVE, w))
    assert "--head-weights 0.3,0.7,0,-0.5,1" in (tmp_path / "one" / "README.md").read_text()
    # --heads by name: the unnamed heads weigh 0, so helpfulness=1 is exactly the first head
    assert main(["export", str(five_heads), "--out", str(tmp_path / "h"), "--heads", "helpfulness=1"]) == 0
    _one_output(tmp_path / "h", five_heads, [1.0, 0, 0, 0, 0])


def test_one_output_export_of_an_encoder_folds_the_head_bias_too(tmp_path):
    """A BERT-style head has a bias (classifier.bias, one value per output): the fold carries w·b."""
    from rmlib.models.export import export_model
    from rmlib.testing import build_tiny_bert

    src = build_tiny_bert(tmp_path / "bert", num_labels=3)
    rm = RewardModel.from_pretrained(src, attributes=["a", "b", "c"])
    with torch.no_grad():
        rm.model.classifier.bias.copy_(torch.tensor([0.5, -2.0, 1.5]))  # so that w·b matters
    rm.save_pretrained(tmp_path / "m")
    res = export_model(tmp_path / "m", tmp_path / "one", heads={"a": 1.0, "c": -0.5})
    assert res["fold"]["weights"] == {"a": 1.0, "b": 0.0, "c": -0.5}
    assert check_export_contract(tmp_path / "one") == []
    heads = RewardModel.from_pretrained(tmp_path / "m").score(PROMPTS, RESPONSES)
    got = RewardModel.from_pretrained(tmp_path / "one").score(PROMPTS, RESPONSES)
    torch.testing.assert_close(got, heads[:, 0] - 0.5 * heads[:, 2], atol=1e-5, rtol=0)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "one" / "model.safetensors"), "pt") as f:
        assert f.get_tensor("classifier.bias").tolist() == pytest.approx([0.5 - 0.75])


def test_one_output_uses_the_grid_search_weights_the_run_recorded(five_heads, tmp_path):
    from rmlib.cli import main
    from rmlib.eval.report import Report

    run = tmp_path / "run"
    shutil.copytree(five_heads, run)
    with pytest.raises(SystemExit, match="no head-weight grid search in"):
        main(["export", str(run), "--out", str(tmp_path / "none"), "--one-output"])
    # what `rmlib eval RUN --suite rewardbench heads.search=true` writes into RUN/eval-rewardbench
    w = [0.5, 0.0, -0.2, 0.0, 0.9]
    Report("rewardbench", meta={"head_search": {"weights": w, "heads": list(FIVE), "overall": 0.8}}).save(
        run / "eval-rewardbench")
    assert main(["export", str(run), "--out", str(tmp_path / "grid"), "--one-output"]) == 0
    _one_output(tmp_path / "grid", run, w)
    card = (tmp_path / "grid" / "README.md").read_text()
    assert f"grid search in {run / 'eval-rewardbench' / 'report.json'}" in card


@pytest.mark.parametrize("flags, message", [
    (["--heads", "helpfulness=1,kindness=2"], "unknown heads ['kindness']"),
    (["--heads", "helpfulness"], "NAME=WEIGHT pairs"),
    (["--head-weights", "1,2"], "2 head weights for the 5 heads"),
    (["--head-weights", "0,0,0,0,0"], "the reward would be constant"),
    (["--heads", "helpfulness=1", "--head-weights", "1,0,0,0,0"], "not both"),
    ([], "not a LoRA adapter directory"),
])
def test_one_output_export_errors_name_the_heads(five_heads, tmp_path, flags, message):
    from rmlib.cli import main

    with pytest.raises(SystemExit, match=message.replace("[", r"\[").replace("]", r"\]")):
        main(["export", str(five_heads), "--out", str(tmp_path / "x"), *flags])
    assert not (tmp_path / "x").exists()


def test_a_multi_head_card_says_no_output_alone_is_the_reward(five_heads):
    write_model_card(five_heads)
    card = (five_heads / "README.md").read_text()
    assert "**Which output is the reward**: none alone. This model has 5 outputs" in card
    assert "TRL's GRPO the first (`helpfulness`), verl the last (`verbosity`)" in card


def test_one_output_export_of_a_multi_head_lora_run(tiny_llama, tmp_path):
    """A 5-attribute LoRA regression run: merged (probe-checked), then folded; equal to the adapter's heads
    combined (1e-4: the merge reorders sums)."""
    from rmlib.cli import main
    from tests.helpers import write_ratings

    cfg = _cfg(tiny_llama, write_ratings(tmp_path / "ratings.jsonl", 16), tmp_path / "run", lora=True)
    cfg["loss"]["name"] = "mse"
    train(cfg)
    adapter = tmp_path / "run" / "model"
    assert (adapter / "adapter_config.json").is_file()
    assert main(["export", str(adapter), "--out", str(tmp_path / "one"), "--heads",
                 "helpfulness=0.6,correctness=0.4"]) == 0
    out = tmp_path / "one"
    _assert_contract(out, ("reward",))
    heads = RewardModel.from_pretrained(adapter).score(PROMPTS, RESPONSES)
    got = RewardModel.from_pretrained(out).score(PROMPTS, RESPONSES)
    torch.testing.assert_close(got, heads[:, 0] * 0.6 + heads[:, 1] * 0.4, atol=1e-4, rtol=0)
    assert not (tmp_path / "one.merged").exists()  # the intermediate merge is removed
