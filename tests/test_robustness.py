"""Mistakes a new user makes, refused early and clearly: each test reproduces a failure that once
crashed a run late, mixed two runs, ran code from a checkpoint, or printed a long traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rmlib.config import ConfigError
from rmlib.models import RewardModel
from rmlib.training import Trainer, train
from rmlib.training.checkpoint import CheckpointError
from tests.helpers import write_pairs

ROOT = Path(__file__).resolve().parents[1]


def _cfg(model, data, out, **train_kw):
    t = {"output_dir": str(out), "per_device_batch_size": 8, "lr": 3e-3, "progress": False, "seed": 0}
    t.update(train_kw)
    return {"model": {"name_or_path": str(model)}, "data": {"train": str(data), "max_length": 64},
            "loss": {"name": "bt"}, "train": t}


# 1. max_length and the model's position limit ------------------------------------------------------


def test_max_length_defaults_to_the_position_limit_and_refuses_more():
    m = RewardModel.from_pretrained("minilm-l6", attributes=["reward"])
    assert m.max_length == 512  # MiniLM has 512 positions: the default 1024 would crash on long inputs
    with pytest.raises(ValueError, match="more than this model's 512 positions"):
        RewardModel.from_pretrained("minilm-l6", attributes=["reward"], max_length=600)
    # a 600-token prompt is now left-truncated instead of crashing the encoder
    long_prompt = " ".join(["word"] * 600)
    r = m.score([long_prompt, "short"], ["an answer", "an answer"])
    assert r.shape == (2,) and bool(r.isfinite().all())


def test_training_refuses_a_max_length_above_the_limit_before_reading_data(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", 20)
    cfg = _cfg("minilm-l6", data, tmp_path / "run")
    cfg["data"]["max_length"] = 600
    with pytest.raises(ConfigError, match="data.max_length=600 is more than this model's 512 positions"):
        Trainer(cfg).fit()


# 2. one output directory, one run ----------------------------------------------------------------


def test_a_second_fresh_run_into_a_used_directory_is_refused_unless_overwrite(tiny_llama, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", 64)
    run = tmp_path / "run"
    train(_cfg(tiny_llama, data, run, max_steps=4, save_every=2, keep_best=0))
    assert (run / "checkpoints" / "step-0000004").is_dir()
    with pytest.raises(ConfigError, match="already holds a run.*train.overwrite=true"):
        train(_cfg(tiny_llama, data, run, max_steps=2))
    s = train(_cfg(tiny_llama, data, run, max_steps=2, overwrite=True))
    assert s["steps"] == 2
    assert not (run / "checkpoints").exists()  # the first run's checkpoints cannot be resumed into this one


def test_resume_refuses_another_runs_checkpoint_and_one_past_the_end(tiny_llama, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", 96)
    other = write_pairs(tmp_path / "other.jsonl", 96, seed=3)
    run = tmp_path / "run"
    train(_cfg(tiny_llama, data, run, max_steps=6, save_every=3, keep_best=0))
    # another run's settings: refused with the differing keys named
    with pytest.raises(CheckpointError, match=r"train.max_steps: 6 → 3.*train.lr"):
        train(_cfg(tiny_llama, data, run, max_steps=3, lr=1e-3, resume_from="auto"))
    # same names, other contents: the data fingerprint differs
    data.write_text(other.read_text())
    with pytest.raises(CheckpointError, match="data fingerprint"):
        train(_cfg(tiny_llama, data, run, max_steps=6, save_every=3, keep_best=0, resume_from="auto"))
    # told to accept the changes, a checkpoint past this run's end is still an error, not a silent finish
    with pytest.raises(CheckpointError, match="at step 6, beyond this run's 3 steps"):
        train(_cfg(tiny_llama, data, run, max_steps=3, resume_from="auto", allow_resume_changes=True))


# 3. errors found at config time ---------------------------------------------------------------------


def test_a_missing_model_or_checkpoint_is_refused_at_config_time(tmp_path, monkeypatch):
    data = write_pairs(tmp_path / "pairs.jsonl", 8)
    with pytest.raises(ConfigError, match="local model directory not found: /no/such/model"):
        Trainer(_cfg("/no/such/model", data, tmp_path / "run"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="not-cached-org/model is neither a local directory nor a hub model in "
                                          "the local cache.*HF_HUB_OFFLINE=1"):
        Trainer(_cfg("not-cached-org/model", data, tmp_path / "run"))
    with pytest.raises(ConfigError, match="train.resume_from.*is not a directory"):
        Trainer(_cfg("minilm-l6", data, tmp_path / "run", resume_from=str(tmp_path / "nope")))


# 4. one clear line, exit status 2 ----------------------------------------------------------------------


def _rmlib(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmlib", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=300)


def test_cli_prints_rmlib_errors_as_one_line_with_status_2(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", 8)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(_cfg("/no/such/model", data, tmp_path / "run")))
    p = _rmlib("train", str(cfg))
    assert p.returncode == 2
    assert p.stderr.startswith("rmlib: error: config key 'model.name_or_path': local model directory not found")
    assert "Traceback" not in p.stderr and len(p.stderr.splitlines()) == 2
    p = _rmlib("train", str(cfg), "--debug")
    assert p.returncode == 1 and "Traceback" in p.stderr and "ConfigError" in p.stderr
    p = _rmlib("--version")
    assert p.returncode == 0 and p.stdout.startswith("rmlib ")


def test_every_option_of_every_subcommand_has_help_text():
    """`rmlib X --help` documents every argument (formats and suites listed where they are choices)."""
    import argparse

    from rmlib.cli import build_parser
    from rmlib.eval.cli import add_eval_arguments
    from rmlib.expo import add_search_arguments

    def eval_parser():
        p = argparse.ArgumentParser(prog="rmlib eval")
        add_eval_arguments(p)
        return p

    def parsers():
        root = build_parser()
        yield "rmlib", root
        stack = [("rmlib", root)]
        while stack:
            name, p = stack.pop()
            for a in p._actions:
                if isinstance(a, argparse._SubParsersAction):
                    for sub, sp in a.choices.items():
                        yield f"{name} {sub}", sp
                        stack.append((f"{name} {sub}", sp))
        yield "rmlib eval", eval_parser()
        search = argparse.ArgumentParser()
        add_search_arguments(search)
        yield "rmlib expo search", search

    missing = [f"{name}: {'/'.join(a.option_strings) or a.dest}" for name, p in parsers() for a in p._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction))
               and not (a.help or "").strip()]
    assert not missing, missing
    from rmlib.data.formats import FORMATS
    from rmlib.eval import list_suites

    score_help = dict(parsers())["rmlib score"].format_help()
    assert all(f in score_help.replace("\n", " ").replace("  ", " ") for f in ("trl", "helpsteer2"))
    assert FORMATS and all(s in dict(parsers())["rmlib eval"].format_help() for s in list_suites())


# 9. small things a user trips on ---------------------------------------------------------------------


def test_hf_and_trl_spellings_get_did_you_mean(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", 8)
    base = _cfg("minilm-l6", data, tmp_path / "run")
    for override, hint in (("train.learning_rate=1e-5", "train.lr"), ("output_dir=x", "train.output_dir"),
                           ("train.num_train_epochs=2", "train.epochs"), ("data.max_lenght=64", "max_length")):
        with pytest.raises(ConfigError, match=f"[Dd]id you mean.*'{hint}'"):
            Trainer(base, [override])


def test_shipped_configs_resolve_the_bundled_samples_from_any_directory(tmp_path, monkeypatch):
    from rmlib.config import load_config

    monkeypatch.chdir(tmp_path)
    cfg = load_config(ROOT / "configs" / "train" / "quickstart_minilm_bt.yaml")
    assert Path(cfg.data.train).is_file() and Path(cfg.data.eval).is_file()


def test_auto_resume_names_an_incomplete_checkpoint_and_the_loss_is_logged_without_a_bar(
        tiny_llama, tmp_path, capsys):
    data = write_pairs(tmp_path / "pairs.jsonl", 32)
    (tmp_path / "run" / "checkpoints" / "step-0000004.tmp").mkdir(parents=True)
    train(_cfg(tiny_llama, data, tmp_path / "run", max_steps=2, resume_from="auto", log_every=1, progress=False))
    out = capsys.readouterr().out
    assert "no complete checkpoint" in out and "incomplete, ignored: step-0000004.tmp" in out
    assert "step 1/2: loss=" in out and "step 2/2: loss=" in out


def test_a_failed_save_names_the_file_and_the_os_error(tiny_llama, tmp_path, monkeypatch):
    import errno

    from rmlib.training import trainer as trainer_module

    def disk_full(staging, final):
        raise OSError(errno.ENOSPC, "No space left on device", str(final))

    monkeypatch.setattr(trainer_module, "publish_dir", disk_full)
    data = write_pairs(tmp_path / "pairs.jsonl", 32)
    with pytest.raises(CheckpointError, match=r"saving .*model failed: No space left on device .*previous"):
        train(_cfg(tiny_llama, data, tmp_path / "run", max_steps=1))


def test_score_skips_and_reports_invalid_records(tiny_llama, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", 6)
    lines = data.read_text().splitlines()
    lines[2] = json.dumps({**json.loads(lines[2]), "chosen": 5})
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.jsonl"
    p = _rmlib("score", str(tiny_llama), str(data), "--out", str(out))
    assert p.returncode == 2 and "record 2: field 'chosen'" in p.stderr and not out.exists()
    p = _rmlib("score", str(tiny_llama), str(data), "--out", str(out), "--on-invalid", "skip")
    assert p.returncode == 0 and "1 skipped as invalid" in p.stderr
    assert len(out.read_text().splitlines()) == 5


# 6-8. accounting, detection, empty results ---------------------------------------------------------


def test_a_missing_column_is_named_instead_of_could_not_detect(tmp_path):
    from rmlib.data.formats import load
    from rmlib.data.schema import DataError

    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "q", "chosen": "a"}) + "\n")
    with pytest.raises(DataError, match="field 'rejected': missing"):
        load(path)


def test_empty_results_are_errors_and_training_shows_the_report_first(tiny_llama, tmp_path):
    from rmlib.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"prompt": "q", "chosen": i, "rejected": "b"}) + "\n" for i in range(3)))
    assert main(["data", "prepare", str(bad), "--out", str(tmp_path / "o.jsonl"), "--format", "trl",
                 "--on-invalid", "skip"]) == 2
    assert not (tmp_path / "o.jsonl").exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["data", "inspect", str(empty)]) == 2
    long_pairs = tmp_path / "long.jsonl"
    long_pairs.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"q{i}"}],
                                              "chosen": "yes " * 100, "rejected": "no " * 100,
                                              "strength": None, "votes": None, "meta": {}}) + "\n"
                                  for i in range(10)))
    with pytest.raises(ConfigError, match=r"(?s)no training examples left.*filtered too_long: 10.*max_length=64"):
        train(_cfg(tiny_llama, long_pairs, tmp_path / "run"))


def test_score_names_the_pair_and_side_that_cannot_fit(tiny_llama, tmp_path):
    data = tmp_path / "p.jsonl"
    rows = [{"prompt": [{"role": "user", "content": "q"}], "chosen": "yes", "rejected": "no", "strength": None,
             "votes": None, "meta": {}} for _ in range(3)]
    rows[1]["rejected"] = "no " * 100
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = _rmlib("score", str(tiny_llama), str(data), "--out", str(tmp_path / "r.jsonl"), "--max-length", "32")
    assert p.returncode == 2 and "record 1: (0-based, among the valid examples) pair 1: the rejected response" in p.stderr
