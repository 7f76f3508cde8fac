"""The one-command recipes under recipes/: their full-scale configs (fast) and every ``--smoke`` run end to
end on the bundled samples (slow, listed in tests/conftest.py).

A smoke run is the real script: the same ``rmlib`` commands in the same order as the full-scale run, on
MiniLM and a few bundled records, with a few optimizer steps. Each writes ``SUMMARY.md`` linking every
stage's outputs; the tests follow every link and check what each stage must have produced.
"""

from __future__ import annotations

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

def _smoke(name: str, out: Path, *overrides: str) -> str:
    env = dict(os.environ)
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


def test_skywork_bt_smoke(tmp_path):
    out = tmp_path / "sky"
    _smoke("skywork_bt", out)
    _links(out / "SUMMARY.md")
    c = out / "curation"
    dedup, decon = _json(c / "dedup" / "report.json"), _json(c / "decontaminate" / "report.json")
    # 44 pairs: one exact duplicate and one swapped copy (a label conflict: both sides of it go)
    assert (dedup["n_in"], dedup["n_out"]) == (44, 41)
    assert dedup["removed"] == {"duplicate": 1, "conflict": 2}
    # the two pairs whose prompts hold a benchmark prompt's n-grams are removed, nothing else
    assert decon["n_in"] == dedup["n_out"] and decon["n_out"] == decon["n_in"] - 2
    filt = _json(c / "filter" / "report.json")
    assert filt["n_in"] == decon["n_out"] and (c / "filter" / "scores_gold.jsonl").is_file()
    bt = _json(out / "bt" / "summary.json")
    assert bt["data_report"]["kept"] == filt["n_out"] + 8  # the curated pairs plus the 8 held-out eval pairs
    assert _json(out / "eval" / "rewardbench" / "report.json")["suite"] == "rewardbench"
    retrieve = _json(c / "retrieve" / "report.json")
    assert retrieve["n_in"] == 30 and 0 < retrieve["n_out"] <= 30


def test_diverging_preferences_smoke(tmp_path):
    out = tmp_path / "div"
    log = _smoke("diverging_preferences", out)
    _links(out / "SUMMARY.md")
    # the trainer's data line of each run, in the script's order: bt_aggregate, bt_all, mse_aggregate, mse_all
    train_sizes = [int(n) for n in re.findall(r"^train (\d+) \|", log, flags=re.M)]
    assert len(train_sizes) == 4, log[-3000:]
    # every annotation as its own example: more examples than records (3 to 5 votes per bundled pair; 2 to 4
    # ratings per disagreements row), from the same records
    assert train_sizes[1] > train_sizes[0] and train_sizes[3] > train_sizes[2], train_sizes
    for kind in ("bt", "mse"):
        agg, every = (_json(out / f"{kind}_{a}" / "summary.json") for a in ("aggregate", "all"))
        assert every["data_report"]["kept"] == agg["data_report"]["kept"], kind
    assert "tie_annotation" in _json(out / "bt_all" / "summary.json")["data_report"]["filtered"]
    for run, model_type in [("bt_aggregate", "bt"), ("bt_all", "bt"), ("mse_aggregate", "regression"),
                            ("mse_all", "regression")]:
        report = _json(out / "divergence" / run / "report.json")
        assert report["suite"] == "divergence" and report["tables"]["classes"], run
        assert report["metrics"]["model_type"] == model_type, run


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
