"""Reward model: packed = padded, save → reload (rmlib and plain transformers) scores identically."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from rmlib.data.collate import collate_sequences
from rmlib.models import RewardModel
from rmlib.testing import build_tiny_llama

PROMPTS = ["What is 2+3?", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fox."}],
           "Tell me a long story about a fox and the sea please, with many details and words", "hi"]
RESPONSES = ["5", "Reynard.", "Once upon a time the fox swam in the sea and it was happy and it was fine.", "hello"]


def _plain_hf_scores(model_dir, model: RewardModel) -> torch.Tensor:
    """Score with transformers alone: right-padded batch, the model's own last-non-pad pooling."""
    hf = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    feat = model.featurizer()
    from rmlib.models.reward_model import as_messages

    seqs = [feat.encode(as_messages(p), r) for p, r in zip(PROMPTS, RESPONSES)]
    b = collate_sequences(seqs, model.tokenizer.pad_token_id)
    with torch.no_grad():
        return hf(input_ids=b.input_ids, attention_mask=b.attention_mask,
                  token_type_ids=b.token_type_ids).logits.squeeze(-1)


def test_packed_and_padded_rewards_match(tiny_llama):
    m = RewardModel.from_pretrained(tiny_llama)
    feat = m.featurizer()
    from rmlib.models.reward_model import as_messages

    seqs = [feat.encode(as_messages(p), r) for p, r in zip(PROMPTS, RESPONSES)]
    with torch.no_grad():
        padded = m(collate_sequences(seqs, m.tokenizer.pad_token_id))
        packed = m(collate_sequences(seqs, m.tokenizer.pad_token_id, packing=True))
    assert padded.shape == (4, 1)
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=0)
    # and packing must really isolate sequences: a different neighbour leaves a reward unchanged
    with torch.no_grad():
        alone = m(collate_sequences(seqs[:1], m.tokenizer.pad_token_id, packing=True))
    torch.testing.assert_close(alone[0], packed[0], atol=1e-5, rtol=0)


def test_score_returns_input_order_regardless_of_batching(tiny_llama):
    m = RewardModel.from_pretrained(tiny_llama)
    full = m.score(PROMPTS, RESPONSES, batch_size=8)
    one_by_one = torch.stack([m.score([p], [r])[0] for p, r in zip(PROMPTS, RESPONSES)])
    torch.testing.assert_close(full, one_by_one, atol=1e-5, rtol=0)
    assert full.shape == (4,)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        m.score(PROMPTS[:2], RESPONSES[:1])
    # many lengths: length-sorted, padding-bounded batches still give every sequence its own reward
    words = "the fox swam in a sea of long and short words".split()
    prompts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(1 + (i * 13) % 40)) for i in range(40)]
    responses = [" ".join(words[(i + j) % len(words)] for j in range(1 + (i * 5) % 23)) for i in range(40)]
    batched = m.score(prompts, responses, batch_size=16)
    single = torch.cat([m.score(prompts[i:i + 1], responses[i:i + 1]) for i in range(40)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


def test_save_reload_scores_identically_in_rmlib_and_plain_transformers(tiny_llama, tmp_path):
    m = RewardModel.from_pretrained(tiny_llama)
    with torch.no_grad():
        m.model.score.weight.normal_()  # a head that is not the random init
    before = m.score(PROMPTS, RESPONSES)
    out = m.save_pretrained(tmp_path / "saved")
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    again = RewardModel.from_pretrained(out).score(PROMPTS, RESPONSES)
    # same weights, recomputed: equal up to kernel rounding (layouts differ between loads on some CPUs)
    torch.testing.assert_close(again, before, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(_plain_hf_scores(out, m), before, atol=1e-5, rtol=0)


def test_pad_equals_eos_checkpoint_still_scores_the_end_token_in_plain_transformers(tmp_path):
    src = build_tiny_llama(tmp_path / "padeos", pad_equals_eos=True)
    # loaded as training loads a base (rmlib.models.build: reward_token="end"); a pad == eos checkpoint
    # trained elsewhere is read where it was trained (tests/test_interop.py)
    m = RewardModel.from_pretrained(src, reward_token="end")
    assert m.tokenizer.pad_token_id != m.tokenizer.eos_token_id
    out = m.save_pretrained(tmp_path / "saved")
    torch.testing.assert_close(_plain_hf_scores(out, m), m.score(PROMPTS, RESPONSES), atol=1e-5, rtol=0)


def test_encoder_backbone_minilm_scores_and_roundtrips(tmp_path):
    m = RewardModel.from_pretrained("minilm-l6", attributes=["reward"])  # the built-in alias
    assert not m.is_decoder_head and m.attributes == ["reward"]
    s = m.score(PROMPTS, RESPONSES, batch_size=2)
    assert s.shape == (4,) and torch.isfinite(s).all()
    out = m.save_pretrained(tmp_path / "minilm_rm")
    torch.testing.assert_close(_plain_hf_scores(out, m), s, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="decoder"):
        m.score(PROMPTS, RESPONSES, packing=True)


def test_multi_head_scores_combine_and_keep_attributes(tiny_llama_5):
    m = RewardModel.from_pretrained(tiny_llama_5)
    assert m.attributes == ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
    s = m.score(PROMPTS, RESPONSES)
    assert s.shape == (4, 5)
    w = [1.0, 0.5, 0.0, 0.0, -0.2]
    torch.testing.assert_close(m.score(PROMPTS, RESPONSES, combine=w), s @ torch.tensor(w))
    m.keep_attributes(["correctness"], rename=["reward"])
    assert m.attributes == ["reward"] and m.config.num_labels == 1
    torch.testing.assert_close(m.score(PROMPTS, RESPONSES), s[:, 1], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="not in this model's outputs"):
        m.keep_attributes(["nope"])


def test_new_head_when_attributes_differ(tiny_llama):
    m = RewardModel.from_pretrained(tiny_llama, attributes=["a", "b"])
    assert m.attributes == ["a", "b"] and m.model.score.weight.shape[0] == 2


def test_trust_remote_code_is_off_by_default(tiny_llama, monkeypatch):
    import transformers

    seen = {}
    real = transformers.AutoModelForSequenceClassification.from_pretrained

    def spy(*a, **k):
        seen.update(k)
        return real(*a, **k)

    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", spy)
    RewardModel.from_pretrained(tiny_llama)
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is True


def test_fsdp_auto_wrap_finds_the_decoder_layers_through_the_reward_model(tiny_llama):
    """Accelerate's FSDP policies read `_no_split_modules`, the input embeddings and the final norm
    from the module it prepares (the RewardModel). Without them everything became one FSDP unit.
    The policy functions are pure and run on CPU; sharding itself needs GPUs (test_deepspeed.py)."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import _find_final_norm, fsdp2_prepare_auto_wrap_policy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRMSNorm

    m = RewardModel.from_pretrained(tiny_llama)
    policy = fsdp2_prepare_auto_wrap_policy(
        FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap"), m)
    wrapped = [type(x) for x in m.modules() if policy(x)]
    assert wrapped and set(wrapped) == {LlamaDecoderLayer}
    assert len(wrapped) == m.config.num_hidden_layers
    assert m.get_input_embeddings() is m._hf.model.embed_tokens
    assert isinstance(_find_final_norm(m), LlamaRMSNorm)

    fsdp1 = FullyShardedDataParallelPlugin(fsdp_version=1, auto_wrap_policy="transformer_based_wrap")
    fsdp1.set_auto_wrap_policy(m)
    assert fsdp1.auto_wrap_policy.keywords["transformer_layer_cls"] == {LlamaDecoderLayer}


def test_rewards_stay_fp32_under_bf16_autocast(tiny_llama):
    """The head runs outside autocast: bf16 rewards (3 significant digits) would tie close pairs."""
    m = RewardModel.from_pretrained(tiny_llama)
    with torch.no_grad():
        m.model.score.weight.normal_(std=3.0)
    feat = m.featurizer()
    from rmlib.models.reward_model import as_messages

    batch = collate_sequences([feat.encode(as_messages(p), r) for p, r in zip(PROMPTS, RESPONSES)],
                              m.tokenizer.pad_token_id)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        rewards = m(batch)
    assert rewards.dtype == torch.float32
    assert not torch.equal(rewards, rewards.to(torch.bfloat16).float())  # not bf16 values stored as fp32
