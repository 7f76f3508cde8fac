"""The same (prompt, response) gets the same reward however it is batched, padded or computed, and
training, scoring, the server and the exported model feed it the same token ids.

Tolerances: fp32 paths agree to 1e-5 (kernels sum in different orders on different batch shapes);
bf16 autocast rounds activations to 8 bits of mantissa, so it agrees to 5e-2 × max(1, |reward|)
(the bound ``rmlib.models.lora.tolerance`` uses for half precision). The head itself runs in fp32
under autocast (``RewardModel._head``).
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch

from rmlib.data.collate import Batch, collate_sequences
from rmlib.data.features import encode_examples
from rmlib.data.schema import PreferencePair, ValidationReport
from rmlib.models import RewardModel
from rmlib.testing import build_tiny_llama

FP32_TOL = 1e-5
BF16_TOL = 5e-2

PROMPTS = ["What is the capital of France?", "Sort 3 1 2.", "Sort 3 1 2.", "Say hi",
           "Convert 10 meters to feet, please, and show the working."]
RESPONSES = ["Paris.", "1 2 3", "3 2 1, no wait: 1 2 3", "hi there, how are you doing today?", "About 32.8 feet."]
ENCODER_ONLY = "the encoder (MiniLM) reads its [CLS] pooling with absolute positions and no causal mask"


@pytest.fixture(scope="module", params=["tiny_llama", "minilm"])
def model_kind(request, tiny_llama):
    if request.param == "tiny_llama":
        return request.param, str(tiny_llama)
    return request.param, "minilm-l6"


def _load(src: str, **kw) -> RewardModel:
    extra = {"attributes": ["reward"]} if src == "minilm-l6" else {}
    torch.manual_seed(0)  # MiniLM ships no classifier: its new head is drawn at load, the same one each time
    return RewardModel.from_pretrained(src, **extra, **kw).eval()


@pytest.fixture(scope="module")
def reference(model_kind):
    kind, src = model_kind
    rm = _load(src)
    return kind, src, rm, rm.score(PROMPTS, RESPONSES, batch_size=16)


def _close(a, b, tol=FP32_TOL):
    scale = max(1.0, float(b.abs().max()))
    torch.testing.assert_close(a, b, atol=tol * scale, rtol=0)


def test_batch_of_one_equals_batch_of_n(reference):
    _, _, rm, ref = reference
    alone = torch.stack([rm.score([p], [r])[0] for p, r in zip(PROMPTS, RESPONSES)])
    _close(alone, ref)
    _close(rm.score(PROMPTS, RESPONSES, batch_size=2), ref)


def test_left_padding_equals_right_padding(reference):
    kind, _, rm, ref = reference
    if kind == "minilm":
        pytest.skip(f"left padding does not apply: {ENCODER_ONLY}; encoder tokenizers pad on the right")
    feat = rm.featurizer()
    seqs = [feat.encode([{"role": "user", "content": p}], r) for p, r in zip(PROMPTS, RESPONSES)]
    pad = rm.tokenizer.pad_token_id
    right = collate_sequences(seqs, pad)
    width = right.input_ids.shape[1]
    ids = torch.full((len(seqs), width), pad)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s.ids):] = torch.tensor(s.ids)
        mask[i, width - len(s.ids):] = 1
    left = Batch(ids, torch.arange(1, len(seqs) + 1) * width - 1, mask, (mask.cumsum(1) - 1).clamp(min=0))
    with torch.no_grad():
        _close(rm(left)[:, 0], rm(right)[:, 0])
        _close(rm(right)[:, 0], ref)
        # transformers' own pooling (last non-pad token) on the left-padded batch, as servers run it
        hf = rm._hf(input_ids=ids, attention_mask=mask, position_ids=left.position_ids).logits[:, 0]
    _close(hf, ref)


def test_packed_and_shared_prompt_equal_padded(reference):
    kind, _, rm, ref = reference
    if kind == "minilm":
        with pytest.raises(ValueError, match="decoder"):
            rm.score(PROMPTS, RESPONSES, packing=True)
        pytest.skip(f"packing and shared-prompt batches do not apply: {ENCODER_ONLY} (both are refused, above)")
    _close(rm.score(PROMPTS, RESPONSES, packing=True), ref)
    _close(rm.score(PROMPTS, RESPONSES, shared_prompt=True), ref)


def test_eager_attention_equals_sdpa(reference):
    _, src, _, ref = reference
    sdpa = _load(src, attn_implementation="sdpa").score(PROMPTS, RESPONSES)
    eager = _load(src, attn_implementation="eager").score(PROMPTS, RESPONSES)
    _close(sdpa, ref)
    _close(eager, sdpa)


def test_bf16_autocast_within_tolerance(reference):
    _, _, rm, ref = reference
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = rm.score(PROMPTS, RESPONSES)
    assert bf16.dtype == torch.float32
    _close(bf16, ref, BF16_TOL)


# -- golden token ids per chat-template family -------------------------------------------------

FAMILIES = {
    # rmlib's tiny template: BOS from the template, <|end|> closes each turn (eos)
    "rmlib": dict(specials=[], template=None, bos=None, eos=None, add_bos=False),
    # ChatML (Qwen 2/2.5/3): no BOS, "<|im_end|>\n" closes a turn
    "chatml": dict(specials=["<|im_start|>", "<|im_end|>"], bos=None, eos="<|im_end|>", add_bos=False,
                   template="{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
    # Llama 3: the template writes BOS *and* the tokenizer's post-processor adds one (the double-BOS trap)
    "llama3": dict(specials=["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                   bos="<|begin_of_text|>", eos="<|eot_id|>", add_bos=True,
                   template="{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
                            "\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
                            "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"),
    # Gemma: BOS from the template, the assistant is "model", "<end_of_turn>\n" closes a turn
    "gemma": dict(specials=["<bos>", "<start_of_turn>", "<end_of_turn>"], bos="<bos>", eos="<end_of_turn>",
                  add_bos=False,
                  template="{{ bos_token }}{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' "
                           "else m['role'] %}<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n"
                           "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"),
}


def _family_model(root, name: str):
    """The tiny Llama with the family's tokenizer (special tokens, template, BOS rule)."""
    from tokenizers import processors
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    spec = FAMILIES[name]
    d = build_tiny_llama(root / name)
    tok = AutoTokenizer.from_pretrained(d)
    if spec["specials"]:
        tok.add_special_tokens({"additional_special_tokens": spec["specials"]})
        tok.chat_template = spec["template"]
        if spec["bos"]:
            tok.bos_token = spec["bos"]
        tok.eos_token = spec["eos"]
    if spec["add_bos"]:
        tok._tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{tok.bos_token} $A", pair=f"{tok.bos_token} $A $B", special_tokens=[(tok.bos_token,
                                                                                          tok.bos_token_id)])
        assert tok("hi")["input_ids"][0] == tok.bos_token_id  # the trap is armed
    hf = AutoModelForSequenceClassification.from_pretrained(d)
    hf.resize_token_embeddings(len(tok))
    hf.save_pretrained(d)
    tok.save_pretrained(d)
    return RewardModel.from_pretrained(d, max_length=256).eval()


def _ids(out) -> list[int]:
    ids = out["input_ids"] if isinstance(out, Mapping) else out
    return list(ids[0]) if ids and isinstance(ids[0], list) else list(ids)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_golden_tokens_training_scoring_server_and_export_agree(family, tmp_path):
    from fastapi.testclient import TestClient
    from transformers import AutoTokenizer

    from rmlib.serve import QueryEncoder, create_app
    from rmlib.serve.protocol import encode_plain

    rm = _family_model(tmp_path, family)
    tok = rm.tokenizer
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]
    chosen, rejected = "4", "It is 5."
    feat = rm.featurizer()
    # training: the feature path
    (pf,) = encode_examples(feat, [PreferencePair(tuple(prompt), chosen, rejected)], ValidationReport("test"))
    golden = pf.chosen.ids
    # the end of the response: the template's end-of-turn token, and the reward read at the last token
    end_id = tok.convert_tokens_to_ids(FAMILIES[family]["eos"] or "<|end|>")
    assert end_id in golden[pf.chosen.prompt_len:]
    assert golden[-1] == end_id or tok.decode(golden[golden.index(end_id, pf.chosen.prompt_len) + 1:]).strip() == ""
    bos = tok.bos_token_id
    assert golden.count(bos) == (0 if family == "chatml" else 1) and golden[:2].count(bos) <= 1
    # scoring: the ids RewardModel.score feeds the model
    seen = []
    real_forward = type(rm).forward

    def spy(self, batch):
        seen.extend(batch.input_ids[i][batch.attention_mask[i].bool()].tolist() for i in range(len(batch.input_ids)))
        return real_forward(self, batch)

    type(rm).forward = spy
    try:
        reward = rm.score([prompt], [chosen])
        assert seen == [golden]
        # the server: plain and OpenRLHF requests tokenize to the same ids, and score the same
        rendered = tok.apply_chat_template(prompt + [{"role": "assistant", "content": chosen}], tokenize=False)
        assert encode_plain(feat, [(prompt, chosen)])[0].ids == golden
        assert QueryEncoder(feat).encode(rendered).ids == golden
        assert QueryEncoder(feat).encode(rendered.rstrip().removesuffix(tok.eos_token)).ids == golden
        with TestClient(create_app(rm)) as client:
            seen.clear()
            plain = client.post("/score", json={"prompt": prompt, "response": chosen}).json()["reward"]
            remote = client.post("/get_reward", json={"query": [rendered]}).json()["rewards"][0]
        assert seen == [golden, golden]
    finally:
        type(rm).forward = real_forward
    assert plain == pytest.approx(reward.item(), abs=FP32_TOL) and remote == pytest.approx(reward.item(), abs=FP32_TOL)
    # the exported model: its own tokenizer, applying its chat template as the model card says
    rm.save_pretrained(tmp_path / "export")
    exported = AutoTokenizer.from_pretrained(tmp_path / "export")
    assert _ids(exported.apply_chat_template(prompt + [{"role": "assistant", "content": chosen}],
                                             tokenize=True)) == golden


def test_golden_tokens_encoder_pair_template():
    """Encoders have no chat template: [CLS] prompt [SEP] response [SEP], the tokenizer's own pair encoding."""
    from fastapi.testclient import TestClient

    from rmlib.serve import create_app

    rm = _load("minilm-l6")
    tok, feat = rm.tokenizer, rm.featurizer()
    prompt = [{"role": "user", "content": "What is 2 + 2?"}]
    (pf,) = encode_examples(feat, [PreferencePair(tuple(prompt), "4", "5")], ValidationReport("test"))
    golden = pf.chosen.ids
    assert golden == tok(feat.render_prompt_text(prompt), "4")["input_ids"]  # what a transformers user writes
    assert golden.count(tok.cls_token_id) == 1 and golden[-1] == tok.sep_token_id
    with TestClient(create_app(rm)) as client:
        served = client.post("/score", json={"prompt": prompt, "response": "4"}).json()["reward"]
    assert served == pytest.approx(rm.score([prompt], ["4"]).item(), abs=FP32_TOL)
