"""Tokenization (reward position, pad == eos, truncation policy) and collators (padding fractions)."""

import numpy as np
import pytest
from transformers import AutoTokenizer

from rmlib.data.collate import (
    collate_pairs,
    collate_rated,
    global_batches,
    iterate_in_length_order,
    split_global_batch,
)
from rmlib.data.features import encode_examples
from rmlib.data.schema import PreferencePair, RatedResponse, ValidationReport
from rmlib.data.tokenize import Featurizer, prepare_tokenizer, votes_to_target_prob
from rmlib.testing import build_tokenizer


def _pair(prompt: str, chosen: str, rejected: str, system: str | None = None, strength=None, votes=None):
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return PreferencePair(tuple(msgs), chosen, rejected, strength, votes)


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_last_token_is_end_of_response_and_not_pad(tok):
    f = Featurizer(tok, max_length=64)
    enc = f.encode([{"role": "user", "content": "What is 2+3?"}], "5")
    assert enc.ids[-1] == tok.convert_tokens_to_ids("<|end|>")
    assert enc.ids[-1] != tok.pad_token_id
    assert tok.decode(enc.ids[: enc.prompt_len]).endswith("<|assistant|>")


def test_pad_equals_eos_gets_a_distinct_pad_token():
    t = build_tokenizer(pad_equals_eos=True)
    assert t.pad_token_id == t.eos_token_id
    prepare_tokenizer(t)
    assert t.pad_token_id != t.eos_token_id
    f = Featurizer(t, max_length=64)
    feats = encode_examples(f, [_pair("hi", "yes there", "no")], ValidationReport("x"))
    batch = collate_pairs(feats, t.pad_token_id)
    flat = batch.input_ids.reshape(-1)
    # the reward position holds the end token, and padding never uses that id
    assert (flat[batch.end_index] == t.eos_token_id).all()
    assert not (batch.input_ids[batch.attention_mask == 0] == t.eos_token_id).any()


def test_prepare_tokenizer_adds_a_token_when_no_spare_special_exists():
    t = build_tokenizer(pad_equals_eos=True)
    t.unk_token = None
    n = len(t)
    assert prepare_tokenizer(t) is True
    assert len(t) == n + 1 and t.pad_token == "<|rmlib_pad|>"


def test_truncation_cuts_prompt_from_left_keeps_system_and_response(tok):
    f = Featurizer(tok, max_length=40, keep_system=True)
    long_prompt = " ".join(["question"] * 80) + " FINAL"
    msgs = [{"role": "system", "content": "be kind"}, {"role": "user", "content": long_prompt}]
    enc = f.encode(msgs, "the answer")
    assert len(enc.ids) == 40
    text = tok.decode(enc.ids)
    assert text.startswith("<s><|system|>be kind<|end|>")
    assert text.endswith("FINAL<|end|><|assistant|>the answer<|end|>")
    assert f.truncated_prompts == 1


def test_truncation_without_keep_system_drops_system_first(tok):
    f = Featurizer(tok, max_length=30, keep_system=False)
    msgs = [{"role": "system", "content": "be kind"}, {"role": "user", "content": " ".join(["q"] * 60)}]
    text = tok.decode(f.encode(msgs, "ok").ids)
    assert "be kind" not in text and text.endswith("<|assistant|>ok<|end|>")


def test_keep_response_end_keeps_the_last_tokens_of_a_too_long_response(tok):
    """The reward server's option: a response longer than max_length keeps BOS and its last tokens (the
    end-of-turn token last, where the reward is read), the prompt dropped; without it the sequence is None.
    A response that fits is placed exactly as without the option. Counted apart from prompt truncations."""
    msgs = [{"role": "user", "content": "q " * 30}]
    words = " ".join(f"w{i}" for i in range(80))
    assert Featurizer(tok, max_length=24).encode(msgs, words) is None
    f = Featurizer(tok, max_length=24, keep_response_end=True)
    enc = f.encode(msgs, words)
    full = Featurizer(tok, max_length=4096).encode(msgs, words)  # the whole sequence, to compare against
    end = tok.convert_tokens_to_ids("<|end|>")
    assert len(enc.ids) == 24 and enc.prompt_len == 1
    assert enc.ids == full.ids[:1] + full.ids[-23:] and enc.ids[-1] == end and enc.ids[0] == tok.bos_token_id
    text = tok.decode(enc.ids)
    assert text.endswith(" w78 w79<|end|>") and " w1 " not in text and "q q" not in text
    assert (f.truncated_responses, f.truncated_prompts) == (1, 1)
    short = f.encode(msgs, "ok")  # fits once the prompt is cut: the training rule, unchanged
    assert short.ids == Featurizer(tok, max_length=24).encode(msgs, "ok").ids
    assert (f.truncated_responses, f.truncated_prompts) == (1, 2)
    # a kept system message that fills the limit leaves no room: still None
    system = [{"role": "system", "content": "rule " * 40}, {"role": "user", "content": "q"}]
    assert f.encode(system, words) is None


def test_keep_response_end_on_a_text_pair_keeps_the_separator_and_segment_ids():
    from rmlib.io import resolve_model

    t = AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    f = Featurizer(t, max_length=16, keep_response_end=True)
    enc = f.encode([{"role": "user", "content": "capital of france"}], " ".join(str(i) for i in range(40)))
    tokens = t.convert_ids_to_tokens(enc.ids)
    assert tokens[:2] == ["[CLS]", "[SEP]"] and tokens[-1] == "[SEP]" and tokens[-2] == "39"
    assert len(enc.ids) == 16 and enc.type_ids == [0, 0] + [1] * 14


def test_pairs_that_cannot_fit_are_dropped_and_counted(tok):
    f = Featurizer(tok, max_length=24)
    report = ValidationReport("t")
    pairs = [_pair("hi", "yes", "no"), _pair("hi", "word " * 50, "no"), _pair("hello", "fine", "bad")]
    feats = encode_examples(f, pairs, report)
    assert [x.index for x in feats] == [0, 2]
    assert report.filtered["too_long"] == 1
    assert "max_length=24" in report.examples["too_long"][0]


def test_pairs_identical_after_tokenization_are_counted(tok):
    from rmlib.models.reward_model import load_tokenizer

    report = ValidationReport("t")
    assert len(encode_examples(Featurizer(tok, max_length=64), [_pair("hi", "Yes.", "yes.")], report)) == 1
    assert report.n_filtered == 0
    # MiniLM's tokenizer lowercases: "Yes." and "yes." become the same ids, so the pair teaches nothing
    uncased = Featurizer(load_tokenizer("minilm-l6"), max_length=64)
    assert encode_examples(uncased, [_pair("hi", "Yes.", "yes.")], report) == []
    assert report.filtered["identical_after_tokenization"] == 1
    assert "tokenize identically" in report.examples["identical_after_tokenization"][0]


def test_encoder_tokenizer_without_chat_template_uses_pair_segments():
    from rmlib.io import resolve_model

    t = AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    f = Featurizer(t, max_length=64)
    enc = f.encode([{"role": "user", "content": "capital of france"}], "paris")
    assert t.convert_ids_to_tokens(enc.ids[0]) == "[CLS]" and t.convert_ids_to_tokens(enc.ids[-1]) == "[SEP]"
    assert enc.type_ids[0] == 0 and enc.type_ids[-1] == 1
    assert t.decode(enc.ids) == "[CLS] user : capital of france [SEP] paris [SEP]"


def test_padded_pair_batch_layout_and_padding_fraction(tok):
    f = Featurizer(tok, max_length=64)
    feats = encode_examples(f, [_pair("a", "yes yes yes yes", "no", strength=2), _pair("b", "ok", "bad bad", strength=1)],
                            ValidationReport("t"), labels=("margin",))
    b = collate_pairs(feats, tok.pad_token_id)
    lens = [len(x.chosen.ids) for x in feats] + [len(x.rejected.ids) for x in feats]
    assert b.num_pairs == 2 and b.input_ids.shape == (4, max(lens))
    assert b.n_tokens == sum(lens) and b.padding_fraction == pytest.approx(1 - sum(lens) / (4 * max(lens)))
    assert b.labels["margin"].tolist() == [2.0, 1.0] and set(b.labels) == {"margin"}  # only what the loss asked
    b8 = collate_pairs(feats, tok.pad_token_id, pad_to_multiple_of=8)
    assert b8.input_ids.shape[1] % 8 == 0 and b8.padding_fraction >= b.padding_fraction


def test_packed_batch_has_no_padding_and_restarting_positions(tok):
    f = Featurizer(tok, max_length=64)
    feats = encode_examples(f, [_pair("a", "yes yes yes yes", "no"), _pair("b", "ok", "bad bad")], ValidationReport("t"))
    b = collate_pairs(feats, tok.pad_token_id, packing=True)
    assert b.input_ids.shape[0] == 1 and b.padding_fraction == 0.0 and b.attention_mask is None
    starts = (b.position_ids[0] == 0).nonzero().flatten().tolist()
    assert len(starts) == 4
    assert (b.end_index + 1).tolist() == starts[1:] + [b.input_ids.shape[1]]


def test_rated_batch_marks_missing_targets_nan(tok):
    f = Featurizer(tok, max_length=64)
    rows = [RatedResponse(({"role": "user", "content": "q"},), "r", {"helpfulness": 3.0, "verbosity": None})]
    feats = encode_examples(f, rows, ValidationReport("t"), attributes=["helpfulness", "verbosity"])
    b = collate_rated(feats, tok.pad_token_id)
    assert b.labels["targets"][0, 0] == 3.0 and b.labels["targets"][0, 1].isnan()


def test_votes_to_target_prob():
    assert votes_to_target_prob([1, 2, -1, 0]) == pytest.approx(2.5 / 4)
    assert votes_to_target_prob(None) is None


def test_global_batches_are_a_seeded_permutation_grouped_by_length():
    lengths = [i % 50 for i in range(1000)]
    a = [b.tolist() for b in global_batches(lengths, 16, seed=1, epoch=0)]
    assert a == [b.tolist() for b in global_batches(lengths, 16, seed=1, epoch=0)]
    assert a != [b.tolist() for b in global_batches(lengths, 16, seed=1, epoch=1)]
    assert [len(b) for b in a] == [16] * 62 + [8]  # only the last batch is short
    assert sorted(k for b in a for k in b) == list(range(1000))
    spread = sum(max(lengths[k] for k in b) - min(lengths[k] for k in b) for b in a) / len(a)
    ungrouped = global_batches(lengths, 16, seed=1, epoch=0, group_by_length=False)
    spread_u = sum(max(lengths[k] for k in b) - min(lengths[k] for k in b) for b in ungrouped) / len(ungrouped)
    assert spread < spread_u / 3  # grouping pads far less
    firsts = [min(lengths[k] for k in b) for b in a[:10]]
    assert firsts != sorted(firsts)  # batch order is shuffled, not a global sort


def test_split_global_batch_is_even_and_refuses_too_few_items():
    parts = split_global_batch(list(range(10)), [1] * 10, 4)
    assert [len(p) for p in parts] == [3, 3, 2, 2] and sorted(np.concatenate(parts).tolist()) == list(range(10))
    lengths = [5, 1, 9, 3, 7, 2]
    longest_first = [[lengths[k] for k in p] for p in split_global_batch(range(6), lengths, 3)]
    assert longest_first == [[9, 7], [5, 3], [2, 1]]  # sorted by length, so a micro-batch pads little
    assert split_global_batch([1, 2], [1, 1, 1], 4) is None


def test_inference_batches_bound_padding_items_and_tokens():
    import random

    rng = random.Random(0)
    lengths = [int(rng.lognormvariate(5, 0.8)) + 1 for _ in range(300)]  # long-tailed, like HelpSteer2
    budget = 16 * max(lengths)

    def padding(batch):
        return 1 - sum(lengths[k] for k in batch) / (max(lengths[k] for k in batch) * len(batch))

    plain = list(iterate_in_length_order(lengths, budget, 16))
    bounded = list(iterate_in_length_order(lengths, budget, 16, max_padding=0.05))
    for batches in (plain, bounded):
        assert sorted(k for b in batches for k in b) == list(range(len(lengths)))  # each index once
        assert all(len(b) <= 16 and max(lengths[k] for k in b) * len(b) <= budget for b in batches)
    assert all(padding(b) <= 0.05 for b in bounded)
    assert max(padding(b) for b in plain) > 0.05  # the bound is what keeps the long tail unpadded
    computed = sum(max(lengths[k] for k in b) * len(b) for b in bounded)
    assert 1 - sum(lengths) / computed <= 0.05
    # a tight token budget still splits batches, whatever the padding
    assert all(max(lengths[k] for k in b) * len(b) <= 400 or len(b) == 1
               for b in iterate_in_length_order(lengths, 400, 16, max_padding=0.05))
