"""A Pairwise Justifier through `rmlib export` (its LoRA adapter merged into a plain causal LM, probe-checked,
the generative contract) and `rmlib score` (its verdicts as scores), on a tiny causal LM."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from rmlib.cli import main
from rmlib.eval.generative import judge_pairs, verdict_rows
from rmlib.models import JustifierModel
from rmlib.models.contract import check_generative_contract
from rmlib.models.export import ExportContractError, require_contract
from rmlib.testing import build_tiny_causal_lm

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PAIRS = [("What is 2 + 3?", "2 + 3 = 5.", "No comment."), ("Sort 3 1 2.", "1 2 3", "I would rather not."),
         ("Say hi", "hi there", "What is the weather?"), ("Name a city.", "Paris.", "No.")]


@pytest.fixture(scope="module")
def tiny_causal(tmp_path_factory, tiny_llama):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny_causal"), tiny_llama)


@pytest.fixture(scope="module")
def adapter(tiny_causal, tmp_path_factory):
    """A LoRA justifier's output as training saves it (JustifierModel.save_pretrained of the PEFT model), with
    random B factors so that the merge has a delta to get right (PEFT initialises B at zero)."""
    from rmlib.config import LoraSettings
    from rmlib.models.causal import apply_causal_lora

    model = apply_causal_lora(JustifierModel.from_pretrained(tiny_causal), LoraSettings(enabled=True, r=4, alpha=8,
                                                                                         dropout=0.0))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    out = tmp_path_factory.mktemp("lora_justifier") / "model"
    model.save_pretrained(out, extra={"summary": {"steps": 3}})
    return out


def _judge_batch(model: JustifierModel):
    ids = model.judge_prompt_ids([p for p, _, _ in PAIRS], [c for _, c, _ in PAIRS], [r for _, _, r in PAIRS])
    width = max(map(len, ids))
    x = torch.full((len(ids), width), model.tokenizer.pad_token_id)
    m = torch.zeros((len(ids), width), dtype=torch.long)
    for k, row in enumerate(ids):
        x[k, : len(row)], m[k, : len(row)] = torch.tensor(row), 1
    return x, m


def test_export_merges_a_lora_justifier_into_a_plain_causal_lm(adapter, tiny_causal, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "merged"
    assert main(["export", str(adapter), "--out", str(out), "--device", "cpu"]) == 0
    assert check_generative_contract(out) == []
    assert not (out / "adapter_config.json").exists() and not (tmp_path / "merged.tmp").exists()
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert "Pairwise Justifier" in (out / "README.md").read_text()
    # transformers alone (no peft) computes what base + unmerged adapter computed (fp32: 1e-4)
    reference = JustifierModel.from_pretrained(adapter, merge_lora=False).eval()
    base = JustifierModel.from_pretrained(tiny_causal).eval()
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    x, m = _judge_batch(reference)
    with torch.no_grad():
        want = reference.model(input_ids=x, attention_mask=m).logits[m.bool()]
        got = plain(input_ids=x, attention_mask=m).logits[m.bool()]
        untouched = base.model(input_ids=x, attention_mask=m).logits[m.bool()]
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert (untouched - want).abs().max() > 1e-2  # the adapter matters, so the check above means something
    merged = JustifierModel.from_pretrained(out)
    args = ([p for p, _, _ in PAIRS], [c for _, c, _ in PAIRS], [r for _, _, r in PAIRS])
    assert merged.judge(*args, max_new_tokens=8) == reference.judge(*args, max_new_tokens=8)


def test_a_merge_that_loses_the_adapter_fails_and_publishes_nothing(adapter, tmp_path, monkeypatch):
    import dataclasses

    import rmlib.models.merge as merge
    from rmlib.models.lora import SaveCheckError

    real = merge.open_adapter

    def without_deltas(*a, **k):  # the bug the probe check catches: the base written back unchanged
        planned = real(*a, **k)
        return dataclasses.replace(planned, entries={n: dataclasses.replace(e, lora=None)
                                                     for n, e in planned.entries.items()})

    monkeypatch.setattr(merge, "open_adapter", without_deltas)
    out = tmp_path / "merged"
    out.mkdir()
    (out / "previous.txt").write_text("the last good export")
    with pytest.raises(SaveCheckError, match="probe scores changed"):
        main(["export", str(adapter), "--out", str(out), "--device", "cpu"])
    assert (out / "previous.txt").read_text() == "the last good export" and not (tmp_path / "merged.tmp").exists()


def _drop_output_layer(d: Path) -> None:
    from safetensors.torch import load_file, save_file

    sd = load_file(str(d / "model.safetensors"))
    del sd["lm_head.weight"]
    save_file(sd, str(d / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize("breakage, field", [
    (lambda d, c: c.update(architectures=["LlamaForSequenceClassification"]), "architectures"),
    (lambda d, c: c.update(pad_token_id=None), "pad_token_id"),
    (lambda d, c: c.update(quantization_config={"load_in_4bit": True}), "quantization_config"),
    (lambda d, c: (d / "adapter_config.json").write_text("{}"), "adapter_config.json"),
    (lambda d, c: (d / "tokenizer.json").unlink(), "tokenizer"),
    (lambda d, c: _drop_output_layer(d), "lm_head.weight"),
])
def test_each_broken_field_of_a_generative_judge_is_named(tiny_causal, tmp_path, breakage, field):
    d = tmp_path / "m"
    shutil.copytree(tiny_causal, d)
    cfg = json.loads((d / "config.json").read_text())
    breakage(d, cfg)
    (d / "config.json").write_text(json.dumps(cfg))
    problems = check_generative_contract(d)
    assert len(problems) == 1 and problems[0].startswith(field), problems


def test_a_reward_model_relabelled_as_a_causal_lm_is_refused(tiny_llama, tmp_path):
    """require_contract picks the contract by kind; a sequence classifier renamed *ForCausalLM has no
    output layer, so it cannot pass as a generative judge (nor as a reward model)."""
    d = tmp_path / "rm"
    shutil.copytree(tiny_llama, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["LlamaForCausalLM"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExportContractError, match="lm_head.weight: the output layer"):
        require_contract(d)


# ------------------------------------------------------------------------------------------- score


class ScriptedJudge:
    """A stand-in judge whose answers are fixed rules of the responses (to test the rows, not a model)."""

    def __init__(self, rule):
        self.rule = rule

    def judge(self, prompts, r1, r2, **kw):
        return [self.rule(a, b) for a, b in zip(r1, r2)]


def test_verdict_rows_are_the_share_of_games_won_by_the_chosen_response():
    prompts, chosen, rejected = zip(*PAIRS)
    right = verdict_rows(judge_pairs(ScriptedJudge(lambda a, b: f"@Response {1 if a in chosen else 2} is better."),
                                     prompts, chosen, rejected, both_orders=True))
    assert [(r["chosen"], r["rejected"]) for r in right] == [(1.0, 0.0)] * 4
    assert [[g["chosen_position"] for g in r["games"]] for r in right] == [[1, 2]] * 4
    assert right[0]["games"][1] == {"chosen_position": 2, "verdict": 2, "kind": "statement",
                                    "text": "@Response 2 is better."}
    first = verdict_rows(judge_pairs(ScriptedJudge(lambda a, b: "@Response 1"), prompts, chosen, rejected,
                                     both_orders=True))
    assert [r["chosen"] for r in first] == [0.5] * 4  # position bias: one game won, one lost
    half = verdict_rows(judge_pairs(ScriptedJudge(lambda a, b: "@Response 1" if a in chosen else "no idea"),
                                    prompts, chosen, rejected, both_orders=True))
    assert [r["chosen"] for r in half] == [0.75] * 4 and half[0]["games"][1]["kind"] == "unparseable"


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_command_writes_the_verdicts_of_a_justifier(tiny_causal, tmp_path):
    pairs = _write(tmp_path / "pairs.jsonl", [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in PAIRS])
    out = tmp_path / "verdicts.jsonl"
    assert main(["score", str(tiny_causal), str(pairs), "--out", str(out), "--max-new-tokens", "6"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    model = JustifierModel.from_pretrained(tiny_causal)
    prompts, chosen, rejected = zip(*PAIRS)
    want = verdict_rows(judge_pairs(model, prompts, chosen, rejected, both_orders=True, max_new_tokens=6))
    assert rows == want and [r["index"] for r in rows] == [0, 1, 2, 3]
    assert all(r["chosen"] + r["rejected"] == 1 and len(r["games"]) == 2 for r in rows)
    one = tmp_path / "one.jsonl"
    assert main(["score", str(tiny_causal), str(pairs), "--out", str(one), "--max-new-tokens", "6",
                 "--one-order", "--seed", "3"]) == 0
    assert all(len(json.loads(line)["games"]) == 1 for line in one.read_text().splitlines())


def test_score_command_refuses_what_a_justifier_cannot_judge(tiny_causal, tmp_path, capsys):
    """rmlib's own errors print one line naming file and record, and exit with status 2."""
    ratings = _write(tmp_path / "ratings.jsonl", [{"prompt": [{"role": "user", "content": "q"}], "response": "a",
                                                         "attributes": {"helpfulness": 3.0}}])
    assert main(["score", str(tiny_causal), str(ratings), "--format", "rmlib_ratings",
                 "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "a Pairwise Justifier judges pairs" in capsys.readouterr().err
    long = _write(tmp_path / "long.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"},
                                            {"prompt": "q", "chosen": "word " * 700, "rejected": "b"}])
    assert main(["score", str(tiny_causal), str(long), "--out", str(tmp_path / "y.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "long.jsonl: record 1:" in err and "pair 1: the judge prompt" in err, err
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "y.jsonl").exists()
