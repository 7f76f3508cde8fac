"""The Pairwise Justifier: judge data, flip rewrite, masking, the token-level loss, the verdict parser, the
suites, and training a tiny causal LM that learns to judge (HelpSteer2-Preference, arXiv 2410.01257)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rmlib.data.collate import collate_judge, collator_for
from rmlib.data.judge import (
    JudgeEncoder,
    flip_example,
    judge_input,
    justifier_examples,
    swap_response_names,
    target_text,
)
from rmlib.data.samples import sample_path
from rmlib.data.schema import JudgeExample
from rmlib.eval.generative import Verdict, judge_pairs, justifier_report, pair_verdict_metrics, parse_verdict
from rmlib.losses import get_loss, get_loss_class
from rmlib.testing import build_tiny_causal_lm

SAMPLE = sample_path("judge_learnable.jsonl")


@pytest.fixture(scope="module")
def tiny_causal(tmp_path_factory, tiny_llama):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny_causal"), tiny_llama)


@pytest.fixture(scope="module")
def tok(tiny_causal):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_causal)


def ex(justification="@Response 1 answers. Overall, @Response 2 is better than @Response 1.", better=2):
    return JudgeExample(({"role": "user", "content": "What is 2 + 3?"},), "2 + 3 = 5.", "No comment.",
                        justification, better)


# ----------------------------------------------------------------------------------------- data


def test_learnable_judge_sample_is_reproduced_by_its_generator(tmp_path):
    from tests.test_samples import load_tool

    tool = load_tool("make_judge_sample")
    rows = tool.records()
    assert "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) == SAMPLE.read_text(encoding="utf-8")
    assert sum(r["better"] == 1 for r in rows) == len(rows) // 2  # a position prior scores 50 %
    train_q = {r["prompt"][0]["content"] for r in rows if r["meta"]["split"] == "train"}
    assert not train_q & {r["prompt"][0]["content"] for r in rows if r["meta"]["split"] == "test"}


def test_input_template_and_multi_turn_rendering():
    assert judge_input([{"role": "user", "content": "Q?"}], "A", "B") == (
        "Q? @Response 1:\nA\n@Response 2:\nB\nBetween @Response 1 and @Response 2, which is better?")
    multi = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Q?"}]
    assert judge_input(multi, "A", "B").startswith("System: Be brief.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: Q? "
                                                   "@Response 1:\nA\n")


@pytest.mark.parametrize("text, target, want", [
    ("@Response 1 is wrong. Overall, @Response 2 is better.", "elaboration_statement",
     "@Response 1 is wrong. @Response 2 is better."),
    ("It helps. For these reasons, @Response 2 is better.", "statement", "@Response 2 is better."),
    ("@Response 2 is the better response because it answers. @Response 1 refuses.", "statement",
     "@Response 2 is the better response because it answers."),
    ("@Response 2 is the better response because it answers. @Response 1 refuses.", "elaboration_statement",
     "@Response 1 refuses. @Response 2 is the better response because it answers."),
    ("Anything at all.", "label", "@Response 2"),
])
def test_target_choices_follow_the_papers_statement_rule(text, target, want):
    assert target_text(text, 2, target) == want


def test_a_justification_without_statement_trains_only_the_label():
    with pytest.raises(ValueError, match="no '@Response 1/2 ... better' statement"):
        target_text("Both are fine.", 1, "statement")
    with pytest.raises(ValueError, match="target must be one of"):
        target_text("x", 1, "essay")


@pytest.mark.parametrize("text, want", [
    ("@Response 1 is better than @Response 2.", "@Response 2 is better than @Response 1."),
    ("Unlike Response 1, response 2 answers; @Response 1 is worse.",
     "Unlike Response 2, response 1 answers; @Response 2 is worse."),
    ('The user says "@Response 2 is better" and @Response1 agrees.',
     'The user says "@Response 1 is better" and @Response2 agrees.'),
    ("It prints `Response 1` and\n```\nx = 'Response 2'\n```\nso @Response 1 is better.",
     "It prints `Response 1` and\n```\nx = 'Response 2'\n```\nso @Response 2 is better."),
    ("Response 12 and @Response 21 are not names.", "Response 12 and @Response 21 are not names."),
])
def test_flip_rewrites_every_name_consistently(text, want):
    assert swap_response_names(text) == want
    assert swap_response_names(swap_response_names(text)) == text


def test_flip_example_swaps_responses_names_and_label():
    e = ex()
    f = flip_example(e)
    assert (f.response_1, f.response_2, f.better) == (e.response_2, e.response_1, 1)
    assert f.justification == "@Response 2 answers. Overall, @Response 1 is better than @Response 2."
    assert target_text(f.justification, f.better, "statement") == "@Response 1 is better than @Response 2."


def _hs2_record(strengths, justifications):
    return {"prompt": "Q?", "response_1": "A", "response_2": "B", "split": "train",
            "all_preferences_unprocessed": [{"strength": s, "justification": j}
                                            for s, j in zip(strengths, justifications)]}


def test_justification_sets_overall_and_all():
    j = {2: "Fine. @Response 2 is better.", 3: "Good. @Response 2 is much better.",
         1: "@Response 2 is slightly better.", -100: "Neither."}
    rec = _hs2_record([2, 3, 2, 1, -100], [j[2], j[3], j[2] + " Yes.", j[1], j[-100]])
    overall, rep = justifier_examples([rec], "hs2", justifications="overall", seed=0)
    assert len(overall) == 1 and overall[0].meta["annotation"] in (0, 2)  # strength 2 = the overall strength
    picks = {justifier_examples([rec], "hs2", seed=s)[0][0].meta["annotation"] for s in range(20)}
    assert picks == {0, 2}  # seeded, and both matching annotators get picked for some seed
    assert rep.filtered["not_picked"] == 3 and rep.filtered["neither_valid"] == 1
    every, rep = justifier_examples([rec], "hs2", justifications="all")
    assert sorted(e.meta["annotation"] for e in every) == [0, 1, 2]  # the three most similar: 2, 3, 2
    assert rep.filtered["not_in_most_similar"] == 1 and rep.kept == 3
    dropped, rep = justifier_examples([_hs2_record([-3, 3, 1], ["@Response 1 is better."] * 3)], "hs2")
    assert dropped == [] and rep.filtered["task_dropped"] == 1  # spread > 2: the paper drops the task


def test_helpsteer2_justifier_format_reads_the_overall_set():
    from rmlib.data.formats import detect_format, load, read_records

    src = Path(__file__).resolve().parents[1] / "rmlib" / "data" / "samples" / "formats" / "helpsteer2_preference.jsonl"
    loaded = load(src, "helpsteer2_justifier")
    records = [r for _, r in read_records(src)]
    want, _ = justifier_examples(records, str(src))
    assert loaded.kind == "judge" and [e.justification for e in loaded.examples] == [e.justification for e in want]
    assert loaded.report.seen == loaded.report.kept + loaded.report.n_filtered  # one count per record
    assert detect_format(records[:5], str(src)) == "helpsteer2_preference"  # never detected: named only


# -------------------------------------------------------------------------------- tokens, masking


def test_prompt_tokens_carry_no_loss_and_match_hf_masked_loss(tiny_causal, tok):
    from rmlib.models import JustifierModel

    model = JustifierModel.from_pretrained(tiny_causal, max_length=256)
    feats = model.encoder().encode_examples([ex(), ex("@Response 1 is better.", 1)], target="statement", flip=True)
    assert all(len(f.seqs) == 2 for f in feats)
    batch = collate_judge(feats, tok.pad_token_id)
    seqs = [s for f in feats for s in f.seqs]
    width = batch.input_ids.shape[1]
    want_pos = [r * width + p for r, s in enumerate(seqs) for p in range(s.prompt_len - 1, len(s.ids) - 1)]
    assert batch.end_index.tolist() == want_pos
    assert batch.labels["target_ids"].tolist() == [t for s in seqs for t in s.ids[s.prompt_len:]]
    # the target is the assistant turn: the statement and the template's end-of-turn token
    assert tok.decode(seqs[0].ids[seqs[0].prompt_len:]) == "@Response 2 is better than @Response 1.<|end|>"
    loss_fn = get_loss("justifier")
    ours = loss_fn.batch_values(model(batch), batch.labels).mean()
    labels = torch.where(batch.attention_mask.bool(), batch.input_ids, -100)
    for r, s in enumerate(seqs):
        labels[r, :s.prompt_len] = -100
    ref = model.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels).loss
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    # giving a prompt position a label changes the HF loss but can never reach ours: it reads no prompt labels
    labels[0, 3] = batch.input_ids[0, 4]
    other = model.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels).loss
    assert abs(other.item() - ref.item()) > 1e-4
    batch.input_ids[0, 3] = (batch.input_ids[0, 3] + 1) % 50 + 10  # a prompt token changes: targets do not
    assert collate_judge(feats, tok.pad_token_id).labels["target_ids"].tolist() == batch.labels["target_ids"].tolist()


def test_packed_batches_give_the_padded_loss(tiny_causal, tok):
    from rmlib.models import JustifierModel

    model = JustifierModel.from_pretrained(tiny_causal, max_length=256)
    feats = model.encoder().encode_examples([ex(), ex("@Response 1 is better.", 1)], target="statement", flip=True)
    loss_fn = get_loss("justifier")
    padded = collator_for("judge")(feats, tok.pad_token_id)
    packed = collator_for("judge", packing=True)(feats, tok.pad_token_id)
    assert packed.input_ids.shape[0] == 1 and packed.n_positions == packed.n_tokens
    torch.testing.assert_close(loss_fn.batch_values(model(packed), packed.labels),
                               loss_fn.batch_values(model(padded), padded.labels), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="shared_prompt"):
        collator_for("judge", shared_prompt=True)


def test_loss_declares_family_model_and_data_options():
    cls = get_loss_class("justifier")
    assert (cls.family, cls.count_unit, cls.data_kind, cls.labels, cls.model_kind) == (
        "generative", "tokens", "judge", (), "causal_lm")
    assert cls.data_options({}) == {"target": "elaboration_statement", "flip": True}
    assert get_loss_class("bt").data_options({"center_coef": 1}) == {}
    with pytest.raises(ValueError, match="target must be one of"):
        get_loss("justifier", target="essay")


def test_sum_over_global_target_tokens_equals_full_batch_mean():
    """Uneven micro-batches (different target-token counts): Σ sums / global count == full-batch mean."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(11, 7, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 7, (11,), generator=g)
    loss = get_loss("justifier", reduction="none")
    items = [3, 1, 5, 2]  # target tokens per item; micro-batches: [item 0], [items 1, 2, 3]
    count = loss.count({"n_target": torch.tensor(items, dtype=torch.float32)}, len(items))
    assert count == 11
    splits = [slice(0, 3), slice(3, 11)]
    accumulated = sum(loss.batch_values(logits[s], {"target_ids": targets[s]}).sum() for s in splits) / count
    full = get_loss("justifier")(logits, targets)
    torch.testing.assert_close(accumulated, full)
    grad_acc, = torch.autograd.grad(accumulated, logits)
    grad_full, = torch.autograd.grad(full, logits)
    torch.testing.assert_close(grad_acc, grad_full)
    mean_of_means = sum(get_loss("justifier")(logits[s], targets[s]) for s in splits) / 2
    assert abs(mean_of_means.item() - full.item()) > 1e-3


def test_judge_features_in_the_arrow_cache(tiny_causal, tmp_path):
    from rmlib.data.features import FeatureSet, SourceSpec, build_features
    from rmlib.data.tokenize import Featurizer
    from rmlib.models.reward_model import load_tokenizer

    fz = Featurizer(load_tokenizer(tiny_causal), 160)
    spec = SourceSpec(str(SAMPLE))
    table = build_features(spec, fz, cache_dir=tmp_path, data_options={"target": "label", "flip": True},
                           expect_kind=("judge", "needs judge data"))
    assert table.kind == "judge" and table.built and len(table.ds) == 400
    fs = FeatureSet(table, np.arange(6))
    items = fs.take([0, 5])
    enc = JudgeEncoder(load_tokenizer(tiny_causal), 160)
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()[:6]]
    want = enc.encode_examples([JudgeExample(tuple(r["prompt"]), r["response_1"], r["response_2"],
                                             r["justification"], r["better"]) for r in rows], target="label", flip=True)
    assert [s.ids for s in items[1].seqs] == [s.ids for s in want[5].seqs]
    assert [s.prompt_len for s in items[0].seqs] == [s.prompt_len for s in want[0].seqs]
    assert fs.labels([0, 5])["n_target"].tolist() == [want[0].n_target, want[5].n_target]
    again = build_features(spec, fz, cache_dir=tmp_path, data_options={"target": "label", "flip": True})
    assert not again.built
    other = build_features(spec, fz, cache_dir=tmp_path, data_options={"target": "label", "flip": False})
    assert other.built and other.directory != table.directory  # options are part of the cache key
    assert len(FeatureSet(other, np.arange(1)).take([0])[0].seqs) == 1


# ------------------------------------------------------------------------------------ verdicts


@pytest.mark.parametrize("text, choice, kind", [
    ("@Response 1 is wrong. Overall, @Response 2 is better than @Response 1.", 2, "statement"),
    ("@Response 2 is better. On reflection, @Response 1 is slightly better.", 1, "statement"),  # the last wins
    ("For these reasons, @Response 2 is the better response because it answers.", 2, "statement"),
    ("@Response 1 is not better than @Response 2.", None, "unparseable"),
    ("@Response 1 and @Response 2 are equally better than nothing.", None, "both_sides"),
    ("Both @Response 1 and @Response 2 are better.", None, "both_sides"),
    ("Compared with @Response 1, @Response 2 is better.", 2, "statement"),
    ("@Response 2", 2, "label"),
    (" @Response 1.", 1, "label"),
    ("Response 2 is good.", None, "unparseable"),
    ("", None, "unparseable"),
    (None, None, "too_long"),
])
def test_verdict_parser(text, choice, kind):
    assert parse_verdict(text) == Verdict(choice, kind)


def test_verdict_metrics_orders_position_bias_and_two_game_netting():
    V = Verdict
    games = [
        [(1, V(1, "statement")), (2, V(2, "statement"))],  # right twice
        [(1, V(1, "statement")), (2, V(1, "statement"))],  # always position 1: biased, net 0
        [(1, V(None, "unparseable")), (2, V(2, "label"))],  # half + right: net +1
        [(1, V(2, "statement")), (2, V(1, "statement"))],  # wrong twice
    ]
    m = pair_verdict_metrics(games)
    assert m["accuracy"] == pytest.approx((1 + 0.5 + 0.75 + 0) / 4)
    assert m["accuracy_chosen_as_1"] == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    assert m["accuracy_chosen_as_2"] == pytest.approx((1 + 0 + 1 + 0) / 4)
    assert m["position_bias_rate"] == pytest.approx(1 / 3) and m["position_bias_pairs"] == 3
    assert m["two_game_accuracy"] == 0.5 and m["two_game_net"] == {"right": 2, "tie": 1, "wrong": 1}
    assert m["verdicts_unparseable"] == 1 and m["half_credit_games"] == 1 and m["verdicts_label"] == 1


class ScriptedJudge:
    """A stand-in judge whose answers are fixed rules of the responses (to test the scoring, not a model)."""

    def __init__(self, rule):
        self.rule, self.calls = rule, []

    def judge(self, prompts, r1, r2, **kw):
        self.calls.append(len(prompts))
        return [self.rule(a, b) for a, b in zip(r1, r2)]


def _pairs_file(tmp_path, n=8):
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "group": "g" + str(i % 2)}
            for i in range(n)]
    p = tmp_path / "pairs.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_suites_score_a_justifier_with_half_credit(tmp_path):
    from rmlib.eval.runner import load_suite

    data = load_suite("pairs", _pairs_file(tmp_path))
    right = ScriptedJudge(lambda a, b: f"@Response {1 if a.startswith('good') else 2} is better.")
    rep = justifier_report(right, "pairs", data, both_orders=True)
    assert rep.metrics["accuracy"] == 1.0 and rep.meta["justifier"]["two_game_accuracy"] == 1.0
    assert right.calls == [16]  # both orders of every pair in one batched call
    first = ScriptedJudge(lambda a, b: "@Response 1 is better.")  # pure position bias
    rep = justifier_report(first, "pairs", data, both_orders=True)
    assert rep.metrics["accuracy"] == 0.5 and rep.meta["justifier"]["position_bias_rate"] == 1.0
    assert rep.meta["justifier"]["two_game_accuracy"] == 0.0
    mute = ScriptedJudge(lambda a, b: "I cannot decide.")
    rep = justifier_report(mute, "pairs", data)
    assert rep.metrics["accuracy"] == 0.5  # 0.5 credit each, where a reward-model tie counts 0
    assert rep.meta["justifier"]["verdicts_unparseable"] == 8
    assert {t["group"]: t["accuracy"] for t in rep.tables["groups"]} == {"g0": 0.5, "g1": 0.5}
    single = justifier_report(right, "pairs", data, seed=1)
    assert single.metrics["accuracy"] == 1.0 and single.meta["games"] == 8


def test_rewardbench_sections_for_a_justifier():
    from rmlib.eval.runner import load_suite

    recs = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "subset": sub, "id": i}
            for i, sub in enumerate(["alpacaeval-easy"] * 3 + ["math-prm"] * 2)]
    data = load_suite("rewardbench", recs)
    right = ScriptedJudge(lambda a, b: f"@Response {1 if a.startswith('good') else 2} is better.")
    rep = justifier_report(right, "rewardbench", data, both_orders=True)
    assert rep.metrics["Chat"] == 1.0 and rep.metrics["Reasoning"] == 1.0 and rep.metrics["Safety"] == 0.0  # absent
    half = justifier_report(ScriptedJudge(lambda a, b: "@Response 1 and @Response 2 are both better."),
                            "rewardbench", data)
    assert half.metrics["Chat"] == 0.5 and half.meta["justifier"]["verdicts_both_sides"] == 5
    assert {r["subset"]: r["accuracy"] for r in half.tables["subsets"]} == {"alpacaeval-easy": 0.5, "math-prm": 0.5}


def test_suites_that_need_scalar_scores_are_refused(tmp_path):
    from rmlib.eval.runner import load_suite

    rb2 = [{"id": "1", "subset": "Math", "prompt": "q", "chosen": ["a"], "rejected": ["b", "c", "d"]}]
    with pytest.raises(ValueError, match="best-of-4.*Ties"):
        justifier_report(ScriptedJudge(lambda a, b: ""), "rewardbench2", load_suite("rewardbench2", rb2))
    with pytest.raises(ValueError, match="needs scalar scores"):
        justifier_report(ScriptedJudge(lambda a, b: ""), "agreement", load_suite("pairs", _pairs_file(tmp_path)))


def test_generation_is_batched_left_padded_and_in_input_order(tiny_causal):
    from rmlib.models import JustifierModel

    model = JustifierModel.from_pretrained(tiny_causal, max_length=256)
    prompts = [[{"role": "user", "content": "What is " + "1 + " * k + "1?"}] for k in (0, 5, 1, 9)]
    r1, r2 = ["a", "bb", "c", "d"], ["e", "f", "gg", "h"]
    batched = model.judge(prompts, r1, r2, max_new_tokens=6, batch_size=4)
    alone = [model.judge([p], [a], [b], max_new_tokens=6, batch_size=1)[0] for p, a, b in zip(prompts, r1, r2)]
    assert batched == alone and all(isinstance(t, str) for t in batched)
    long = [[{"role": "user", "content": "word " * 400}]]
    assert model.judge(long, ["a"], ["b"], max_new_tokens=4) == [None]  # counted as too_long, never cut
    res = judge_pairs(model, prompts + long, r1 + ["a"], r2 + ["b"], both_orders=True, max_new_tokens=4)
    assert res.metrics["verdicts_too_long"] == 2 and res.metrics["n"] == 5


def test_causal_lm_directories_are_recognised(tiny_causal, tiny_llama):
    from rmlib.models import is_causal_lm_dir

    assert is_causal_lm_dir(tiny_causal) and not is_causal_lm_dir(tiny_llama)


# ------------------------------------------------------------------------------------- training


@pytest.fixture
def one_thread():
    """One intra-op thread for the training tests: tiny matrices gain nothing from a second thread, and on a
    shared CPU two threads per process made the 80-step run 5x slower (measured: 211 s vs 40 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train_config(model, out, **train):
    return {"model": {"name_or_path": str(model)},
            "data": {"train": str(SAMPLE), "train_split": "train", "eval_split": "test", "max_length": 128},
            "loss": {"name": "justifier", "options": {"target": "label"}},
            "train": {"output_dir": str(out), "per_device_batch_size": 8, "lr": 5e-3, "scheduler": "constant",
                      "progress": False, "seed": 0, "sanity_checks": False, **train}}


def test_training_learns_to_emit_the_right_label(tiny_causal, tmp_path, one_thread):
    """80 steps on the learnable sample, then verdicts generated and parsed on held-out items, in both orders:
    well above chance (a position prior scores 0.5 accuracy and 0 two-game accuracy)."""
    from rmlib.eval.cli import main as eval_main
    from rmlib.models import JustifierModel, is_causal_lm_dir
    from rmlib.training import train

    summary = train(_train_config(tiny_causal, tmp_path / "run", max_steps=80))
    assert summary["eval"]["loss"] < 0.3 and summary["eval"]["token_accuracy"] > 0.9
    out = tmp_path / "run" / "model"
    assert is_causal_lm_dir(out)  # a plain transformers causal LM
    from transformers import AutoModelForCausalLM

    assert type(AutoModelForCausalLM.from_pretrained(out)).__name__ == "LlamaForCausalLM"
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    test = [r for r in rows if r["meta"]["split"] == "test"]
    pairs = tmp_path / "test_pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": r["prompt"], "chosen": r[f"response_{r['better']}"],
                                         "rejected": r[f"response_{3 - r['better']}"]}) + "\n" for r in test))
    assert eval_main([str(out), "--suite", "pairs", "--data", str(pairs), "--out", str(tmp_path / "rep"),
                      "judge.both_orders=true", "judge.max_new_tokens=8"]) == 0
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    judge = rep["meta"]["justifier"]
    assert rep["metrics"]["accuracy"] >= 0.7, judge
    assert judge["two_game_accuracy"] >= 0.5 and judge["verdicts_label"] == 2 * len(test), judge
    model = JustifierModel.from_pretrained(out)
    res = judge_pairs(model, [r["prompt"] for r in test[:10]], [r[f"response_{r['better']}"] for r in test[:10]],
                      [r[f"response_{3 - r['better']}"] for r in test[:10]], both_orders=True, max_new_tokens=8)
    assert res.metrics["n"] == 10 and all(len(g) == 2 for g in res.games)


@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_lora_justifier_trains_adapters_and_reloads(tiny_causal, tmp_path, one_thread, quantization):
    """LoRA, and QLoRA (bitsandbytes 4-bit, which runs on CPU), train the justifier's adapters only."""
    from rmlib.models import JustifierModel, is_causal_lm_dir
    from rmlib.training import train

    if quantization == "4bit":
        pytest.importorskip("bitsandbytes")
    train(_train_config(tiny_causal, tmp_path / "lora", max_steps=3,
                        lr=1e-2) | {"model": {"name_or_path": str(tiny_causal),
                                              "lora": {"enabled": True, "r": 4, "alpha": 8,
                                                       "quantization": quantization}}})
    out = tmp_path / "lora" / "model"
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["task_type"] == "CAUSAL_LM" and is_causal_lm_dir(out)
    assert not (out / "model.safetensors").exists()  # the adapter only: the base stays where it is
    tuned, base = JustifierModel.from_pretrained(out), JustifierModel.from_pretrained(tiny_causal)
    feats = base.encoder().encode_examples([ex()], target="label")
    batch = collate_judge(feats, base.tokenizer.pad_token_id)
    with torch.no_grad():
        assert (tuned(batch) - base(batch)).abs().max() > 1e-4  # trained adapters changed the outputs
    for name, p in tuned.model.named_parameters():
        if "embed" in name or "lm_head" in name:
            torch.testing.assert_close(p, dict(base.model.named_parameters())[name])  # not trained
