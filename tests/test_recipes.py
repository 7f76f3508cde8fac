"""The one-command recipes under recipes/: their full-scale configs (fast) and every ``--smoke`` run end to
end on the bundled samples (slow, listed in tests/conftest.py).

A smoke run is the real script: the same ``rmlib`` commands in the same order as the full-scale run, on
MiniLM and a few bundled records, with a few optimizer steps. Each writes ``SUMMARY.md`` linking every
stage's outputs; the tests follow every link and check what each stage must have produced.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rmlib.config import load_config

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.parent.name for p in (ROOT / "recipes").glob("*/run.sh"))


@pytest.fixture
def models_not_checked(monkeypatch):
    """The full-scale configs name hub models (not in an offline cache) or an earlier stage's output."""
    monkeypatch.setattr("rmlib.config.check_model_source", lambda name, key: None, raising=False)


def test_every_recipe_is_one_script_with_a_readme_and_a_smoke_mode():
    assert {"helpsteer2_preference", "skywork_bt", "diverging_preferences", "lora_consumer_gpu",
            "pairwise_justifier"} <= set(RECIPES)
    for name in RECIPES:
        assert f"test_{name}_smoke" in globals(), f"recipes/{name} has no smoke test in this file"
        script = ROOT / "recipes" / name / "run.sh"
        assert os.access(script, os.X_OK), f"{script} is not executable"
        assert (ROOT / "recipes" / name / "README.md").is_file()
        text = script.read_text()
        assert "--smoke" in text and "SUMMARY.md" in text, name
        subprocess.run(["bash", "-n", str(script)], check=True)  # syntax


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*/smoke/*.yaml")), ids=lambda p: p.parent.parent.name
                         + "/" + p.name)
def test_smoke_configs_validate(path, monkeypatch, models_not_checked):
    monkeypatch.chdir(ROOT)  # the smoke configs name bundled files relative to the repository root
    cfg = load_config(path)
    assert cfg.model.name_or_path == "minilm-l6" or cfg.model.name_or_path.startswith("runs/")
    assert 0 < cfg.train.max_steps <= 2, "a smoke run takes one or two optimizer steps"


HS2_BT = ["helpsteer2_bt", "helpsteer2_margin_bt", "helpsteer2_scaled_bt", "helpsteer2_scaled_bt_base"]
HS2_REGRESSION = ["helpsteer2_regression_helpfulness", "helpsteer2_regression_5attr"]


@pytest.mark.parametrize("name", HS2_BT + HS2_REGRESSION)
def test_helpsteer2_full_scale_configs_follow_the_paper(name, monkeypatch, models_not_checked):
    """arXiv 2410.01257: global batch 128, AdamW, constant LR from {1,2,3}e-6 after 10 warm-up steps, a
    checkpoint every 10 steps with the three lowest-validation-loss ones kept (plus the last); BT variants one
    epoch (more overfits), regression two; the step count follows from the data, never hard-coded."""
    monkeypatch.chdir(ROOT)
    cfg = load_config(ROOT / "configs" / "train" / f"{name}_llama3_8b.yaml")
    launch = yaml.safe_load((ROOT / "configs" / "accelerate" / "deepspeed_zero3.yaml").read_text())
    t = cfg.train
    assert t.per_device_batch_size * t.gradient_accumulation_steps * launch["num_processes"] == 128
    assert t.max_steps == -1 and t.epochs == (2 if name in HS2_REGRESSION else 1)
    assert t.lr in (1e-6, 2e-6, 3e-6) and t.scheduler == "constant_with_warmup"
    assert (t.save_every, t.eval_every, t.keep_best) == (10, 10, 3)
    # the paper's warm-up is 10 steps, given as steps (not a ratio that would follow the data's size)
    assert (t.warmup_steps, t.warmup_ratio) == (10, 0.0)


def test_table_one_has_a_config_per_loss():
    losses = {load_config(ROOT / "configs" / "train" / f"{n}_llama3_8b.yaml", check_sources=False).loss.name
              for n in HS2_BT + HS2_REGRESSION}
    assert losses == {"bt", "margin_bt", "scaled_bt", "mse"}


# ------------------------------------------------------------------------------------------- smoke runs

def _smoke(name: str, out: Path, *overrides: str, env_extra: dict | None = None) -> str:
    env = {**os.environ, **(env_extra or {})}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # this venv's `rmlib`
    proc = subprocess.run(["bash", f"recipes/{name}/run.sh", "--smoke", "--out", str(out), *overrides], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{name} --smoke failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout + proc.stderr


def _links(summary: Path) -> list[Path]:
    """Every relative link of SUMMARY.md, which must exist."""
    targets = [summary.parent / t for t in re.findall(r"\]\(([^)#]+)\)", summary.read_text())
               if not t.startswith(("http:", "https:"))]
    missing = [str(t) for t in targets if not t.exists()]
    assert not missing, f"{summary} links to missing outputs: {missing}"
    return targets


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_helpsteer2_preference_smoke(tmp_path):
    out = tmp_path / "hs2"
    _smoke("helpsteer2_preference", out)
    links = _links(out / "SUMMARY.md")
    assert len(links) >= 10
    reg, bt = _json(out / "regression" / "summary.json"), _json(out / "scaled_bt" / "summary.json")
    assert reg["steps"] == 2 and "mse" in reg["eval"]
    assert bt["steps"] == 2 and "accuracy" in bt["eval"]
    # stage 2 started from stage 1: its config names stage 1's model and the helpfulness row
    cfg = yaml.safe_load((out / "scaled_bt" / "config.yaml").read_text())
    assert cfg["model"]["name_or_path"] == f"{out}/regression/model"
    assert cfg["model"]["init_from_regression_attribute"] == "helpfulness"
    search = _json(out / "expo" / "search.json")
    assert [(row["alpha"], row["stage"]) for row in search["rows"]] == [(0.0, "baseline"), (0.5, "coarse")]
    assert search["best_alpha"] == 0.5 and search["baseline_row"]["alpha"] == 0.0  # the baseline is never picked
    assert (out / "expo" / "model" / "expo.json").is_file()
    for report in [out / "eval" / "expo" / "report.json", *sorted((out / "eval").glob("step-*/report.json"))]:
        assert _json(report)["suite"] == "rewardbench" and "overall" in _json(report)["metrics"]


ANNOTATION = {"task_category": "factual question", "objectivity": "objective", "controversiality": "low",
              "desired_attributes": ["correct", "concise"], "annotation_guideline": "The correct answer wins.",
              "preferred": 1, "strength": 2}


def _answering_causal_lm(out: Path, answer: str) -> Path:
    """A one-layer LlamaForCausalLM whose greedy reply to any chat is ``answer`` (one added token) then end of
    turn: attention and MLP outputs are zero, so the last hidden state is the current token's embedding, and
    the head maps every token to the answer token and the answer token to eos. A random tiny LM writes
    garbage, which would leave the smoke's annotations empty; this one makes the recipe's loop carry data
    through `rmlib serve`'s real /v1/chat/completions (no LLM that writes annotations runs offline)."""
    import torch
    from tokenizers import AddedToken
    from transformers import LlamaConfig, LlamaForCausalLM

    from rmlib.testing import build_tokenizer

    tok = build_tokenizer(1000, seed=0)
    tok.add_tokens([AddedToken(answer, special=False, normalized=False)])
    ans = tok.convert_tokens_to_ids(answer)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in [model.model.norm, *(m for layer in model.model.layers
                                         for m in (layer.input_layernorm, layer.post_attention_layernorm))]:
            norm.weight.fill_(1.0)
        emb = model.model.embed_tokens.weight
        emb[:, 0] = 1.0
        emb[ans, 0], emb[ans, 1] = 0.0, 1.0
        model.lm_head.weight[ans, 0] = 10.0
        model.lm_head.weight[tok.eos_token_id, 1] = 10.0
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_skywork_bt_smoke(tmp_path):
    from tests.test_serve import free_port

    out = tmp_path / "sky"
    lm = _answering_causal_lm(tmp_path / "annotator", json.dumps(ANNOTATION))
    _smoke("skywork_bt", out, "--rounds", "2",
           env_extra={"ANNOTATOR_MODEL": str(lm), "ANNOTATOR_PORT": str(free_port())})
    _links(out / "SUMMARY.md")
    s1, c = out / "stage1", out / "curation"
    reports = {p.relative_to(out).parent.as_posix(): _json(p) for p in out.glob("**/report.json")
               if _json(p).get("step") in ("annotate", "retrieve", "review_sample")}
    for where, rep in reports.items():  # every step accounts for every pair
        assert rep["n_in"] == rep["n_out"] + sum(rep["removed"].values()), where
        if rep["step"] == "annotate":  # the annotator server answered every request, each parsed
            assert rep["requests"]["failed"] == {} and rep["requests"]["answered"] == rep["n_in"], where
            assert rep["removed"] == {} and rep["n_out"] == rep["n_in"], where
    assert (reports["stage1/pool"]["n_in"], reports["stage1/gold"]["n_in"], reports["stage1/silver"]["n_in"]) == (30, 16, 44)
    annotated = 0
    for r in (1, 2):
        ret, ann = reports[f"stage1/round{r}/retrieve"], reports[f"stage1/round{r}/annotate"]
        assert ret["params"]["key"] == "prompt_attributes" and ret["n_in"] == 30 and 0 < ret["n_out"] <= 30
        assert ann["n_in"] == ret["n_out"] and ann["params"]["examples"] == f"{s1}/gold/data.jsonl"
        rows = (s1 / f"round{r}" / "annotate" / "data.jsonl").read_text().splitlines()
        assert all(json.loads(x)["meta"]["attributes"]["task_category"] == "factual question" for x in rows)
        review = reports[f"stage1/round{r}/review"]
        assert review["n_out"] == min(8, ann["n_out"])
        with open(s1 / f"round{r}" / "review" / "review.csv", newline="") as fh:
            assert len(list(csv.DictReader(fh))) == review["n_out"]
        annotated += ann["n_out"]
    # round 2 never retrieves what round 1 took (recipes/skywork_bt passes it as --exclude)
    taken = [{(json.dumps(row["prompt"]), row["chosen"], row["rejected"]) for row in map(json.loads, (
        s1 / f"round{r}" / "retrieve" / "data.jsonl").read_text().splitlines())} for r in (1, 2)]
    assert taken[1] and not taken[0] & taken[1]
    assert reports["stage1/round2/retrieve"]["removed"]["already_taken"] == len(taken[0])
    dedup, decon = _json(c / "dedup" / "report.json"), _json(c / "decontaminate" / "report.json")
    # 44 pairs: one exact duplicate and one swapped copy (a label conflict: both sides of it go)
    assert (dedup["n_in"], dedup["n_out"]) == (44, 41)
    assert dedup["removed"] == {"duplicate": 1, "conflict": 2}
    # the two pairs whose prompts hold a benchmark prompt's n-grams are removed, nothing else
    assert decon["n_in"] == dedup["n_out"] and decon["n_out"] == decon["n_in"] - 2
    judge, filt = reports["curation/judge"], _json(c / "filter" / "report.json")
    assert judge["n_in"] == decon["n_out"] and judge["params"]["label"] == "keep"
    assert len((c / "judge" / "judge.jsonl").read_text().splitlines()) == judge["n_out"] == filt["n_in"]
    assert filt["params"]["judge"] == f"{c}/judge/judge.jsonl" and (c / "filter" / "scores_gold.jsonl").is_file()
    assert set(filt["params"]["models"]) == {"gold", "best"}
    bt = _json(out / "bt" / "summary.json")
    # stage 2's pairs, the silver pairs, both rounds' annotations and the 16 gold pairs, plus 8 held-out pairs
    assert bt["data_report"]["kept"] == filt["n_out"] + reports["stage1/silver"]["n_out"] + annotated + 16 + 8
    assert _json(out / "eval" / "rewardbench" / "report.json")["suite"] == "rewardbench"


def test_skywork_full_scale_config_has_the_paper_numbers(monkeypatch, models_not_checked):
    """arXiv 2507.01352, section 4.1 and appendix E: global batch 10,240, lr 3e-6, a constant schedule, 16K
    tokens, DeepSpeed ZeRO stage 1 (the launch config the recipe uses)."""
    monkeypatch.chdir(ROOT)
    cfg = load_config(ROOT / "configs" / "train" / "skywork_bt_llama3_8b.yaml")
    launch = yaml.safe_load((ROOT / "configs" / "accelerate" / "deepspeed_zero1.yaml").read_text())
    zero = json.loads((ROOT / launch["deepspeed_config"]["deepspeed_config_file"]).read_text())
    t = cfg.train
    assert t.per_device_batch_size * t.gradient_accumulation_steps * launch["num_processes"] == 10_240
    assert t.lr == 3e-6 and t.scheduler == "constant" and t.warmup_ratio == 0 and t.warmup_steps == 0
    assert cfg.data.max_length == 16_384 and cfg.loss.name == "bt" and zero["zero_optimization"]["stage"] == 1
    assert cfg.model.name_or_path == "meta-llama/Llama-3.1-8B-Instruct"
    assert "configs/accelerate/deepspeed_zero1.yaml" in (ROOT / "recipes" / "skywork_bt" / "run.sh").read_text()


def test_diverging_preferences_smoke(tmp_path):
    out = tmp_path / "div"
    log = _smoke("diverging_preferences", out)
    _links(out / "SUMMARY.md")
    # the trainer's data line of each run, in the script's order: bt_aggregate, bt_all, mse_aggregate, mse_all,
    # mean_var (every vote), rating_ce (every rating)
    train_sizes = [int(n) for n in re.findall(r"^train (\d+) \|", log, flags=re.M)]
    assert len(train_sizes) == 6, log[-3000:]
    assert train_sizes[4] == train_sizes[1] and train_sizes[5] == train_sizes[3], train_sizes
    # every annotation as its own example: more examples than records (3 to 5 votes per bundled pair; 2 to 4
    # ratings per disagreements row), from the same records
    assert train_sizes[1] > train_sizes[0] and train_sizes[3] > train_sizes[2], train_sizes
    for kind in ("bt", "mse"):
        agg, every = (_json(out / f"{kind}_{a}" / "summary.json") for a in ("aggregate", "all"))
        assert every["data_report"]["kept"] == agg["data_report"]["kept"], kind
    assert "tie_annotation" in _json(out / "bt_all" / "summary.json")["data_report"]["filtered"]
    for run, model_type in [("bt_aggregate", "bt"), ("bt_all", "bt"), ("mse_aggregate", "regression"),
                            ("mse_all", "regression"), ("mean_var", "mean_var"), ("rating_ce", "rating_ce")]:
        report = _json(out / "divergence" / run / "report.json")
        assert report["suite"] == "divergence" and report["tables"]["classes"], run
        assert report["metrics"]["model_type"] == model_type, run
        # every model gets the |gap| AUROC; only a distributional one has an uncertainty of its own
        has_unc = report["metrics"]["auroc"]["high_agreement"]["uncertainty"] is not None
        assert has_unc == (model_type in ("mean_var", "rating_ce")), run
        assert ("ece" in report["metrics"]) == (model_type != "regression"), run
    for run in ("mean_var", "rating_ce"):
        cfg = _json(out / run / "model" / "config.json")
        assert cfg["rmlib_distribution"]["kind"] == run and (out / "divergence" / run / "reliability.png").is_file()
    rows = _json(out / "divergence" / "comparison.json")
    assert [r["model"] for r in rows] == ["BT (aggregated)", "BT (every annotation)", "MSE (aggregated)",
                                          "MSE (every annotation)", "mean_var", "rating_ce"]
    assert all("auroc.high_agreement.abs_gap" in r and "metric.diverging_all" in r for r in rows)
    assert "| mean_var |" in (out / "divergence" / "comparison.md").read_text()


def test_lora_consumer_gpu_smoke(tmp_path):
    out = tmp_path / "lora"
    _smoke("lora_consumer_gpu", out)
    _links(out / "SUMMARY.md")
    assert _json(out / "model" / "rmlib.json")["lora"]
    assert (out / "merged" / "config.json").is_file()
    assert not list((out / "merged").glob("adapter_*")), "the export is a plain model"
    assert "accuracy" in _json(out / "eval" / "report.json")["metrics"]


def _tiny_causal_lm(out: Path) -> Path:
    """A random-init two-layer LlamaForCausalLM with rmlib.testing's BPE tokenizer (chat template included):
    no causal LM ships with rmlib, and the justifier smoke needs one offline."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from rmlib.testing import build_tokenizer

    tok = build_tokenizer(1000, seed=0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      tie_word_embeddings=False)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_pairwise_justifier_smoke(tmp_path):
    out = tmp_path / "just"
    model = _tiny_causal_lm(tmp_path / "tiny_causal")
    _smoke("pairwise_justifier", out, f"model.name_or_path={model}")
    _links(out / "SUMMARY.md")
    summary = _json(out / "justifier" / "summary.json")
    assert summary["steps"] == 2
    config = json.loads((out / "justifier" / "model" / "config.json").read_text())
    assert config["architectures"][0].endswith("ForCausalLM"), "the justifier is a plain causal-LM directory"
    report = _json(out / "eval" / "rewardbench" / "report.json")
    assert report["suite"] == "rewardbench" and report["meta"]["model_type"] == "generative judge (causal LM)"
    assert report["meta"]["games"] == 2 * report["meta"]["records"] == 24  # every pair judged in both orders
