"""Padding-free and shared-prompt batches: same rewards and same training as padded batches.

Shared-prompt encoding puts a prompt once, followed by all its responses, in one packed row; a
block mask lets every response see the prompt but not its siblings, and position ids continue
the prompt's. Rewards must equal separate encoding to 1e-4 in fp32.
"""

from __future__ import annotations

import pytest
import torch

from rmlib.data.collate import (
    CALL_PADDING,
    collate_pairs,
    collate_pairs_shared,
    collate_sequences,
    collate_shared_prompt,
)
from rmlib.data.features import encode_examples
from rmlib.data.schema import ValidationReport
from rmlib.models import RewardModel
from rmlib.models.reward_model import as_messages
from tests.helpers import load_weights, write_config, write_pairs

PROMPTS = ["what is the sum of 2 and 2 ? please answer with a number", "list sorted", "capital city ?"]
RESPONSES = [["the sum is 4", "no", "it is 5 please", "4"], ["1 2 3", "3 2 1 sorted"], ["yes"]]


def _groups(m: RewardModel, max_length: int | None = None):
    feat = m.featurizer(max_length)
    return [[feat.encode(as_messages(p), r) for r in rs] for p, rs in zip(PROMPTS, RESPONSES)]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("row_tokens", [0, None, 24])
def test_shared_prompt_rewards_equal_separate_encoding(tiny_llama, attn, row_tokens):
    m = RewardModel.from_pretrained(tiny_llama, attn_implementation=attn)
    groups = _groups(m)
    flat = [s for g in groups for s in g]
    pad = m.tokenizer.pad_token_id
    with torch.no_grad():
        separate = m(collate_sequences(flat, pad))
        shared_batch = collate_shared_prompt(groups, pad, row_tokens=row_tokens)
        shared = m(shared_batch)
    torch.testing.assert_close(shared, separate, atol=1e-4, rtol=0)
    # the prompt is computed once per group: fewer tokens than separate encoding
    assert shared_batch.n_tokens == sum(len(s.ids) for s in flat) - sum(
        (len(g) - 1) * g[0].prompt_len for g in groups)
    if row_tokens == 0:
        assert shared_batch.input_ids.shape[0] == 1
    # one row, or rows grouped into calls that pad at most CALL_PADDING
    assert shared_batch.padding_fraction <= CALL_PADDING
    with torch.no_grad():  # one call per row: no pad token computed at all, same rewards
        per_row = collate_shared_prompt(groups, pad, row_tokens=row_tokens, max_padding=0.0)
        torch.testing.assert_close(m(per_row), separate, atol=1e-4, rtol=0)
    assert per_row.padding_fraction == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_rows_are_grouped_into_calls_within_the_padding_budget(tiny_llama, seed):
    """Rows of similar length share a model call; no call pads more than the budget; every
    sequence is read from the right call and row (rewards equal separate encoding)."""
    import random

    m = RewardModel.from_pretrained(tiny_llama)
    feat, rng = m.featurizer(), random.Random(seed)
    groups = [[feat.encode(as_messages(" ".join(["what"] * rng.randint(1, 30))), " ".join(["yes"] * rng.randint(1, 30)))
               for _ in range(rng.randint(1, 3))] for _ in range(12)]
    flat = [s for g in groups for s in g]
    pad = m.tokenizer.pad_token_id
    for budget in (0.0, 0.05, 0.3):
        b = collate_shared_prompt(groups, pad, max_padding=budget)
        assert b.padding_fraction <= budget + 1e-9
        calls = b.row_calls or [(0, b.input_ids.shape[0], b.input_ids.shape[1])]
        assert [c[0] for c in calls[1:]] == [c[1] for c in calls[:-1]] and calls[-1][1] == b.input_ids.shape[0]
        assert all(w1 >= w2 for (_, _, w1), (_, _, w2) in zip(calls, calls[1:]))  # longest rows first
        if budget == 0.0:  # only rows of equal length share a call
            assert b.padding_fraction == 0.0 and len(calls) > 1
        with torch.no_grad():
            torch.testing.assert_close(m(b), m(collate_sequences(flat, pad)), atol=1e-4, rtol=0)


def test_mask_keeps_responses_apart_and_positions_continue_the_prompt(tiny_llama):
    m = RewardModel.from_pretrained(tiny_llama)
    g = _groups(m)[1]  # one prompt, two responses
    b = collate_shared_prompt([g], m.tokenizer.pad_token_id)
    p, a, c = g[0].prompt_len, len(g[0].ids) - g[0].prompt_len, len(g[1].ids) - g[1].prompt_len
    mask, pos = b.attention_mask[0, 0], b.position_ids[0]
    assert pos.tolist() == list(range(p)) + list(range(p, p + a)) + list(range(p, p + c))
    assert mask[p:p + a, :p].all() and mask[p + a:, :p].all()  # both see the whole prompt
    assert not mask[p + a:, p:p + a].any()  # the second response never sees the first
    assert not mask[:p, p:].any()  # the prompt never sees a response
    assert mask[p + a:, p + a:].equal(torch.ones(c, c, dtype=torch.bool).tril())
    assert b.end_index.tolist() == [p + a - 1, p + a + c - 1]


def test_differently_truncated_prompts_are_not_shared(tiny_llama):
    """Left truncation depends on the response length: such responses get their own prompt copy."""
    m = RewardModel.from_pretrained(tiny_llama)
    feat = m.featurizer(24)
    long_prompt = as_messages(" ".join(["what is the answer"] * 6))
    seqs = [feat.encode(long_prompt, "yes"), feat.encode(long_prompt, "no it is not the sum of the list")]
    assert seqs[0].ids[:seqs[0].prompt_len] != seqs[1].ids[:seqs[1].prompt_len]
    with torch.no_grad():
        separate = m(collate_sequences(seqs, m.tokenizer.pad_token_id))
        shared = m(collate_shared_prompt([seqs], m.tokenizer.pad_token_id))
    torch.testing.assert_close(shared, separate, atol=1e-4, rtol=0)


def test_pair_batches_shared_equal_padded(tiny_llama):
    m = RewardModel.from_pretrained(tiny_llama)
    from rmlib.data.schema import PreferencePair

    pairs = [PreferencePair(prompt=as_messages(p), chosen=rs[0], rejected=rs[-1])
             for p, rs in zip(PROMPTS, RESPONSES) if len(rs) > 1]
    feats = encode_examples(m.featurizer(), pairs, ValidationReport("t"))
    pad = m.tokenizer.pad_token_id
    with torch.no_grad():
        padded = m(collate_pairs(feats, pad))
        shared = m(collate_pairs_shared(feats, pad))
    torch.testing.assert_close(shared, padded, atol=1e-4, rtol=0)
    assert collate_pairs_shared(feats, pad).num_pairs == len(feats)


def test_score_shared_prompt_best_of_n(tiny_llama):
    """Best-of-N: N responses per prompt, scored with each prompt computed once, input order kept."""
    m = RewardModel.from_pretrained(tiny_llama)
    prompts = [p for p, rs in zip(PROMPTS, RESPONSES) for _ in rs]
    responses = [r for rs in RESPONSES for r in rs]
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(0)).tolist()
    prompts, responses = [prompts[i] for i in order], [responses[i] for i in order]
    separate = m.score(prompts, responses)
    for bs in (1, 2, 16):
        torch.testing.assert_close(m.score(prompts, responses, shared_prompt=True, batch_size=bs), separate,
                                   atol=1e-4, rtol=0)


def test_flash_attention_refused_for_shared_prompt(tiny_llama):
    m = RewardModel.from_pretrained(tiny_llama)
    m.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="varlen"):
        m._block_mask(torch.ones(1, 1, 2, 2, dtype=torch.bool))
    m.config._attn_implementation = "flex_attention"  # its CPU compile breaks on changing shapes
    with pytest.raises(ValueError, match="CUDA only"):
        m._block_mask(torch.ones(1, 1, 2, 2, dtype=torch.bool))


# -- GPU-only kernels: skipped, and reported as skipped, on machines without CUDA ----------------


def _flash_available() -> bool:
    from transformers.utils import is_flash_attn_2_available

    return torch.cuda.is_available() and is_flash_attn_2_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _flash_available(), reason="needs a CUDA GPU with flash-attn installed")
def test_packed_batches_on_flash_attention_varlen_equal_padded(tiny_llama):
    """Padding-free packing on GPU runs flash-attention's varlen path (position ids restart per sequence)."""
    flash = RewardModel.from_pretrained(tiny_llama, dtype="bf16", attn_implementation="flash_attention_2").cuda()
    ref = RewardModel.from_pretrained(tiny_llama, attn_implementation="sdpa").cuda()  # fp32, padded
    seqs = [s for g in _groups(flash) for s in g]
    pad = flash.tokenizer.pad_token_id
    with torch.no_grad():
        packed = flash(collate_sequences(seqs, pad, packing=True).to("cuda")).float()
        alone = flash(collate_sequences(seqs[-1:], pad, packing=True).to("cuda")).float()
        padded = ref(collate_sequences(seqs, pad).to("cuda")).float()
    torch.testing.assert_close(packed, padded, atol=3e-2, rtol=0)  # bf16 vs fp32
    torch.testing.assert_close(alone[0], packed[-1], atol=1e-2, rtol=0)  # neighbours do not leak in


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (flex_attention's BlockMask path)")
@pytest.mark.parametrize("row_tokens", [0, None])
def test_shared_prompt_on_flex_attention_equals_separate_encoding(tiny_llama, row_tokens):
    """On GPU the shared-prompt mask becomes a flex_attention BlockMask (masked tiles are skipped)."""
    flex = RewardModel.from_pretrained(tiny_llama, attn_implementation="flex_attention").cuda()
    ref = RewardModel.from_pretrained(tiny_llama, attn_implementation="sdpa").cuda()
    groups = _groups(flex)
    pad = flex.tokenizer.pad_token_id
    with torch.no_grad():
        separate = ref(collate_sequences([s for g in groups for s in g], pad).to("cuda"))
        shared = flex(collate_shared_prompt(groups, pad, row_tokens=row_tokens).to("cuda"))
    torch.testing.assert_close(shared, separate, atol=1e-3, rtol=0)  # fp32; GPU kernels may use TF32


# -- training ----------------------------------------------------------------------------------


def _train(tmp_path, tiny_llama, name: str, **data_options):
    from rmlib.training import train

    data = tmp_path / "pairs.jsonl"
    if not data.exists():
        write_pairs(data, 64)
    gc = data_options.pop("gradient_checkpointing", False)
    cfg = write_config(tmp_path / f"{name}.yaml", model={"name_or_path": str(tiny_llama), "gradient_checkpointing": gc},
                       data={"train": str(data), "max_length": 64, **data_options},
                       train={"output_dir": str(tmp_path / name), "per_device_batch_size": 4, "max_steps": 5,
                              "lr": 0.05, "adam_eps": 1.0, "seed": 1, "progress": False, "scheduler": "constant"})
    return train(str(cfg))


def _max_diff(a, b) -> float:
    wa, wb = load_weights(a / "model"), load_weights(b / "model")
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


@pytest.mark.slow
def test_packed_and_shared_prompt_training_match_padded(tmp_path, tiny_llama):
    """Same weights after 5 steps; gradient checkpointing changes nothing either."""
    padded = _train(tmp_path, tiny_llama, "padded")
    packed = _train(tmp_path, tiny_llama, "packed", packing=True)
    shared = _train(tmp_path, tiny_llama, "shared", shared_prompt=True)
    _train(tmp_path, tiny_llama, "packed_gc", packing=True, gradient_checkpointing=True)
    _train(tmp_path, tiny_llama, "shared_gc", shared_prompt=True, gradient_checkpointing=True)
    assert padded["padding_fraction"] > 0.1 and packed["padding_fraction"] == 0.0
    assert 0.0 <= shared["padding_fraction"] <= CALL_PADDING
    base = tmp_path / "padded"
    for name in ("packed", "shared", "packed_gc", "shared_gc"):
        assert _max_diff(tmp_path / name, base) < 1e-4, name
    # the weights did move, so the comparison means something
    start = load_weights(tiny_llama)
    end = load_weights(base / "model")
    assert max((end[k] - start[k]).abs().max().item() for k in start) > 1e-2
