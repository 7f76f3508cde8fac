"""ExPO extrapolation on real tiny models: numerics against a direct in-memory computation,
checkpoint layouts (sharded, tied, LoRA), the mismatch rules, atomic output, bounded memory and
the α search.

What is compared bitwise and what with a tolerance: extrapolation is elementwise
(``(1 + α)·s − α·w``, each op correctly rounded by IEEE 754, whatever the memory layout or thread
count), and copies are copies, so those are compared with ``torch.equal``. Anything that went
through a matmul (model logits, a LoRA delta ``B @ A``) may round differently with another
kernel, blocking or thread split, so it is compared with ``torch.testing.assert_close``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rmlib import expo
from rmlib.expo.search import rank_key
from rmlib.models import safetensors_io
from rmlib.models.safetensors_io import parse_size
from rmlib.testing import build_tiny_llama

HELPSTEER = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]


# -- helpers ------------------------------------------------------------------------------------

def weights(d: Path) -> dict[str, torch.Tensor]:
    """All tensors of a model directory, single-file or sharded."""
    out: dict[str, torch.Tensor] = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        out.update(load_file(f))
    return out


def direct(weak: dict[str, torch.Tensor], strong: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """The reference: whole tensors in memory, ``(1 + α)·s − α·w`` in fp32, stored in strong's dtype."""
    return {k: ((1 + alpha) * s.float() - alpha * weak[k].float()).to(s.dtype) for k, s in strong.items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k


def assert_close_all(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Like :func:`assert_same` for values computed through a matmul (see the module docstring):
    fp32 rounding of a few ulps, amplified at most (1 + |α|)-fold by the extrapolation."""
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def assert_same_logits(a: torch.Tensor, b: torch.Tensor) -> None:
    """Logits of two models holding the same weights, loaded differently: a forward pass is matmuls,
    so allow fp32 kernel rounding (relative 1e-5, absolute 1e-6 on logits of order 1)."""
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def logits(model_dir: Path, state: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Logits of the saved model (or of ``model_dir``'s architecture with ``state`` loaded) on fixed ids."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    if state is not None:
        model.load_state_dict(state, strict=False)
    ids = torch.arange(3, 40).reshape(1, -1)
    with torch.no_grad():
        return model(input_ids=ids).logits


def save_as(src: Path, dst: Path, *, dtype: torch.dtype | None = None, max_shard_size: str | None = None) -> Path:
    """Re-save a model directory (another dtype or another shard layout), keeping its tokenizer files."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(src, dtype=dtype or torch.float32)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(dst, **kwargs)
    for f in src.iterdir():
        if f.is_file() and not f.name.startswith(("model", "config")):
            shutil.copy2(f, dst / f.name)
    return dst


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """Two random inits of the same architecture: weak (seed 1) and strong (seed 2)."""
    root = tmp_path_factory.mktemp("expo_pair")
    return build_tiny_llama(root / "weak", seed=1), build_tiny_llama(root / "strong", seed=2)


@pytest.fixture(scope="module")
def weak5(tmp_path_factory) -> Path:
    """A 5-attribute regression-style model (HelpSteer2 labels) with strong's architecture."""
    return build_tiny_llama(tmp_path_factory.mktemp("expo_w5") / "weak5", num_labels=5,
                            id2label=dict(enumerate(HELPSTEER)), seed=1)


# -- numerics -----------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.3, 1.5, -0.5])
def test_matches_direct_computation(pair, tmp_path, alpha):
    weak, strong = pair
    out = expo.extrapolate(weak, strong, alpha, tmp_path / "out")
    assert_same(weights(out), direct(weights(weak), weights(strong), alpha))
    # a normal HF directory: strong's config, tokenizer and chat template, plus the sidecar
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (out / name).read_bytes() == (strong / name).read_bytes(), name
    meta = json.loads((out / "expo.json").read_text())
    assert meta["alpha"] == alpha and meta["factor"] == 1 + alpha and meta["weak"] == str(weak)


def test_alpha_zero_is_strong_bit_for_bit(pair, tmp_path):
    weak, strong = pair
    out = expo.extrapolate(weak, strong, 0.0, tmp_path / "out")
    got, want = weights(out), weights(strong)
    assert sorted(got) == sorted(want)
    for k in want:
        assert torch.equal(got[k].view(torch.int32), want[k].view(torch.int32)), k


def test_alpha_minus_one_is_weak(pair, tmp_path):
    weak, strong = pair
    out = expo.extrapolate(weak, strong, -1.0, tmp_path / "out")
    assert_same(weights(out), weights(weak))


def test_factor_is_one_plus_alpha(pair, tmp_path):
    weak, strong = pair
    a = expo.extrapolate(weak, strong, 0.52, tmp_path / "a")
    f = expo.extrapolate(weak, strong, factor=1.52, output_dir=tmp_path / "f")
    assert_same(weights(f), direct(weights(weak), weights(strong), 1.52 - 1))
    assert json.loads((f / "expo.json").read_text())["factor"] == 1.52
    assert weights(a).keys() == weights(f).keys()
    with pytest.raises(ValueError, match="exactly one"):
        expo.extrapolate(weak, strong, 0.5, tmp_path / "x", factor=1.5)
    with pytest.raises(ValueError, match="exactly one"):
        expo.extrapolate(weak, strong, output_dir=tmp_path / "x")


def test_bf16_computes_in_fp32_and_stores_bf16(pair, tmp_path):
    weak = save_as(pair[0], tmp_path / "weak_bf16", dtype=torch.bfloat16)
    strong = save_as(pair[1], tmp_path / "strong_bf16", dtype=torch.bfloat16)
    out = expo.extrapolate(weak, strong, 0.4, tmp_path / "out")
    got = weights(out)
    assert all(t.dtype == torch.bfloat16 for t in got.values())
    assert_same(got, direct(weights(weak), weights(strong), 0.4))
    assert_same(weights(expo.extrapolate(weak, strong, -1, tmp_path / "back")), weights(weak))


def test_sharded_inputs_with_different_layouts(pair, tmp_path):
    weak = save_as(pair[0], tmp_path / "weak_sharded", max_shard_size="100KB")
    strong = pair[1]  # single file
    assert len(list(weak.glob("*.safetensors"))) > 3 and (weak / expo.INDEX_NAME).exists()
    out = expo.extrapolate(weak, strong, 0.3, tmp_path / "out", max_shard_size="150KB")
    shards = sorted(out.glob("*.safetensors"))
    index = json.loads((out / expo.INDEX_NAME).read_text())
    assert len(shards) > 1 and set(index["weight_map"].values()) == {p.name for p in shards}
    assert all(p.stat().st_size <= 150_000 + 4096 or len(load_file(p)) == 1 for p in shards)
    want = direct(weights(weak), weights(strong), 0.3)
    assert_same(weights(out), want)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in want.values())
    # loads with plain transformers and scores like the directly computed weights (a computed forward pass)
    assert_same_logits(logits(out), logits(strong, want))


def test_tied_embeddings_computed_once(tmp_path):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    torch.manual_seed(1)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "strong_src")
    torch.manual_seed(2)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "strong")
    strong = tmp_path / "strong"
    assert "lm_head.weight" not in weights(strong)  # save_pretrained wrote the tied weight once
    # weak: the same tied model written with both names (two byte-identical copies)
    weak = tmp_path / "weak"
    weak.mkdir()
    shutil.copy2(tmp_path / "strong_src" / "config.json", weak / "config.json")
    w = weights(tmp_path / "strong_src")
    w["lm_head.weight"] = w["model.embed_tokens.weight"].clone()
    save_file(w, weak / "model.safetensors", metadata={"format": "pt"})

    out = expo.extrapolate(weak, strong, 0.3, tmp_path / "out")
    got = weights(out)
    want = direct(weights(weak), weights(strong), 0.3)
    assert_same(got, want)  # only strong's names: lm_head stays implicit
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert torch.equal(model.lm_head.weight, want["model.embed_tokens.weight"])
    meta = json.loads((out / "expo.json").read_text())
    assert meta["special_tensors"] == {}


# -- mismatch rules -----------------------------------------------------------------------------

def test_shape_mismatch_names_the_tensor(pair, weak5, tmp_path):
    with pytest.raises(ValueError, match=r"`score\.weight` has shape \[5, 64\] in weak but \[1, 64\]"):
        expo.extrapolate(weak5, pair[1], 0.3, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tensor_only_in_one_model_is_named(pair, tmp_path):
    weak = tmp_path / "weak_extra"
    shutil.copytree(pair[0], weak)
    w = weights(weak)
    w["model.extra.weight"] = torch.ones(3)
    save_file(w, weak / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"`model\.extra\.weight` is only in weak"):
        expo.extrapolate(weak, pair[1], 0.3, tmp_path / "out")
    with pytest.raises(ValueError, match=r"`model\.extra\.weight` is only in strong"):
        expo.extrapolate(pair[1], weak, 0.3, tmp_path / "out")
    # copy_strong: strong's extra tensor is copied, weak's extra tensor is dropped
    out = expo.extrapolate(pair[1], weak, 0.3, tmp_path / "out", on_mismatch="copy_strong")
    assert torch.equal(weights(out)["model.extra.weight"], torch.ones(3))
    out2 = expo.extrapolate(weak, pair[1], 0.3, tmp_path / "out2", on_mismatch="copy_strong")
    assert "model.extra.weight" not in weights(out2)


def test_architecture_mismatch_names_the_config_key(pair, tmp_path):
    strong = tmp_path / "strong_other"
    shutil.copytree(pair[1], strong)
    cfg = json.loads((strong / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (strong / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="config `num_hidden_layers` is 2 in weak"):
        expo.extrapolate(pair[0], strong, 0.3, tmp_path / "out")


def test_select_rows_extrapolates_against_the_attribute_row(pair, weak5, tmp_path):
    strong = pair[1]
    out = expo.extrapolate(weak5, strong, 0.5, tmp_path / "out", on_mismatch="select_rows",
                           head_attribute="correctness")
    w = weights(weak5)
    w["score.weight"] = w["score.weight"][1:2]  # correctness is row 1
    assert_same(weights(out), direct(w, weights(strong), 0.5))
    assert "select_rows" in json.loads((out / "expo.json").read_text())["special_tensors"]["score.weight"]
    with pytest.raises(ValueError, match="needs head_attribute"):
        expo.extrapolate(weak5, strong, 0.5, tmp_path / "x", on_mismatch="select_rows")
    with pytest.raises(ValueError, match="'honesty' is not a label of weak"):
        expo.extrapolate(weak5, strong, 0.5, tmp_path / "x", on_mismatch="select_rows", head_attribute="honesty")
    with pytest.raises(ValueError, match="only used with on_mismatch='select_rows'"):
        expo.extrapolate(weak5, strong, 0.5, tmp_path / "x", head_attribute="correctness")
    copied = expo.extrapolate(weak5, strong, 0.5, tmp_path / "copied", on_mismatch="copy_strong")
    assert torch.equal(weights(copied)["score.weight"], weights(strong)["score.weight"])


def test_refuses_pickled_weights(pair, tmp_path):
    weak = tmp_path / "weak_bin"
    weak.mkdir()
    shutil.copy2(pair[0] / "config.json", weak / "config.json")
    torch.save(weights(pair[0]), weak / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickled weights"):
        expo.extrapolate(weak, pair[1], 0.3, tmp_path / "out")


# -- output safety ------------------------------------------------------------------------------

def test_interrupted_run_leaves_no_output(pair, tmp_path, monkeypatch):
    real, calls = safetensors_io.write_tensor, []

    def flaky(f, spec, chunks):
        calls.append(spec.name)
        if len(calls) == 5:
            raise KeyboardInterrupt("simulated interruption")
        real(f, spec, chunks)

    monkeypatch.setattr(safetensors_io, "write_tensor", flaky)
    with pytest.raises(KeyboardInterrupt):
        expo.extrapolate(*pair, 0.3, tmp_path / "out", max_shard_size="100KB")
    assert len(calls) == 5
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary directory


def test_refuses_to_overwrite_inputs(pair, tmp_path):
    weak, strong = pair
    for target in (strong, weak, strong.parent):  # an input, or a directory holding one
        with pytest.raises(ValueError, match="would overwrite an input"):
            expo.extrapolate(weak, strong, 0.3, target, overwrite=True)
    assert sorted(p.name for p in weak.iterdir()) == sorted(p.name for p in strong.iterdir())
    out = expo.extrapolate(weak, strong, 0.3, tmp_path / "out")
    with pytest.raises(FileExistsError):
        expo.extrapolate(weak, strong, 0.0, out)
    expo.extrapolate(weak, strong, 0.0, out, overwrite=True)
    assert_same(weights(out), weights(strong))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# -- LoRA ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("rslora", [False, True])
def test_lora_adapter_equals_merged_model(pair, tmp_path, rslora):
    """Strong = a LoRA adapter on weak (the usual ExPO setup); result = extrapolating the merged model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    weak = pair[0]
    model = AutoModelForSequenceClassification.from_pretrained(weak)
    peft_model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, use_rslora=rslora,
                                                  target_modules=["q_proj", "v_proj"], modules_to_save=["score"]))
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.1)
    peft_model.save_pretrained(tmp_path / "adapter")
    shutil.copy2(weak / "tokenizer.json", tmp_path / "adapter" / "tokenizer.json")
    merged = tmp_path / "merged"
    peft_model.merge_and_unload().save_pretrained(merged)

    out = expo.extrapolate(weak, tmp_path / "adapter", 0.4, tmp_path / "out")
    want = direct(weights(weak), weights(merged), 0.4)
    assert_close_all(weights(out), want)  # both merges computed B @ A
    assert_same_logits(logits(out), logits(weak, want))
    # the adapter's head replaced the base one, and LoRA really changed q_proj
    assert not torch.equal(want["score.weight"], weights(weak)["score.weight"])
    assert not torch.equal(weights(merged)["model.layers.0.self_attn.q_proj.weight"],
                           weights(weak)["model.layers.0.self_attn.q_proj.weight"])
    meta = json.loads((out / "expo.json").read_text())
    assert meta["strong_base"] == str(weak)
    # weak as the adapter too (explicit base=), and α = 0 with an adapter strong is the merged model
    back = expo.extrapolate(tmp_path / "adapter", weak, -1.0, tmp_path / "back", base=weak)
    assert_close_all(weights(back), weights(merged))
    with pytest.raises(ValueError, match="would overwrite an input"):
        expo.extrapolate(tmp_path / "adapter", pair[1], 0.3, weak, overwrite=True)  # the adapter's base


# -- bounded memory -----------------------------------------------------------------------------

def _write_synthetic(d: Path, tensors: dict[str, torch.Tensor], shard_bytes: int) -> None:
    """A model directory with a minimal config, sharded every ``shard_bytes`` (save_pretrained's layout)."""
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model_type": "synthetic"}))
    shards: list[dict[str, torch.Tensor]] = [{}]
    for k, t in tensors.items():
        if shards[-1] and sum(x.nbytes for x in shards[-1].values()) + t.nbytes > shard_bytes:
            shards.append({})
        shards[-1][k] = t
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, d / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
    (d / expo.INDEX_NAME).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


PEAK_RSS_CHILD = """
import json, resource, sys
from safetensors.torch import load_file
from pathlib import Path
from rmlib import expo
from rmlib.models.safetensors_io import weight_entries

def reset_peak():
    # Linux >= 4.0: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS
    open("/proc/self/clear_refs", "w").write("5")
    return peak()

def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

weak, strong, out = sys.argv[1:4]
before = reset_peak()
expo.extrapolate(weak, strong, 0.5, out, max_shard_size="20MB")
streamed = peak() - before
before = reset_peak()
models = [weight_entries(Path(d)) for d in (weak, strong)]
held = [t.clone() for m in models for f in sorted({e.file for e in m.values()}) for t in load_file(str(f)).values()]
naive = peak() - before  # control: the same measurement on both models held whole
print(json.dumps({"streamed": streamed, "naive": naive}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset")
def test_peak_memory_is_bounded_by_the_largest_tensor(tmp_path):
    """RSS growth of a subprocess extrapolating 2 × 130 MB in many shards stays ≈ 2 × the largest tensor.

    Per chunk the streamed path holds the strong and weak reads (fp32, combined in place), so the
    expected peak is 2 × the largest tensor (12 MiB) = 24 MiB. The 40 MiB allowance covers the
    allocator keeping freed blocks, shard headers and Python objects; the bound (64 MiB) is far
    below the 260 MB of both models, which the same measurement does see when they are loaded whole.
    """
    g = torch.Generator()
    shapes = {f"layers.{i}.w": (512, 1024) for i in range(60)}  # 2 MiB each
    shapes["embed.weight"] = (3072, 1024)  # the largest: 12 MiB
    largest = 3072 * 1024 * 4
    for name, shard_bytes, seed in (("weak", 7_000_000, 1), ("strong", 16_000_000, 2)):
        g.manual_seed(seed)
        _write_synthetic(tmp_path / name, {k: torch.randn(s, generator=g) for k, s in shapes.items()}, shard_bytes)
    total = 2 * sum(4 * a * b for a, b in shapes.values())
    res = subprocess.run([sys.executable, "-c", PEAK_RSS_CHILD, str(tmp_path / "weak"), str(tmp_path / "strong"),
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=120, check=True)
    rss = json.loads(res.stdout.strip().splitlines()[-1])
    bound = 2 * largest + 40 * 2**20
    assert rss["streamed"] <= bound, f"peak RSS grew {rss['streamed'] / 2**20:.1f} MiB"
    assert rss["naive"] >= 0.9 * total > bound  # the measurement does catch whole-model loads
    out = weights(tmp_path / "out")
    w, s = weights(tmp_path / "weak"), weights(tmp_path / "strong")
    assert torch.equal(out["layers.0.w"], 1.5 * s["layers.0.w"] - 0.5 * w["layers.0.w"])  # elementwise: exact
    assert len(out) == len(shapes) and len(list((tmp_path / "out").glob("*.safetensors"))) > 5


# -- α search -----------------------------------------------------------------------------------

def test_search_finds_the_known_best_alpha_and_writes_it(pair, tmp_path):
    """Accuracy peaks where the head's first weight hits the value it has at α* = 0.37."""
    weak, strong = pair
    s0, w0 = weights(strong)["score.weight"][0, 0].item(), weights(weak)["score.weight"][0, 0].item()
    target = (1 + 0.37) * s0 - 0.37 * w0
    reported: list[dict] = []

    def evaluate(model):
        v = model.score.weight[0, 0].item()
        return {"accuracy": -round(abs(v - target), 5), "loss": 0.0}

    res = expo.search_alpha(weak, strong, expo.COARSE_ALPHAS, evaluate, progress=reported.append)
    assert res.best_alpha == 0.37 and res.best_factor == pytest.approx(1.37)
    coarse = [r["alpha"] for r in res.rows if r["stage"] == "coarse"]
    fine = [r["alpha"] for r in res.rows if r["stage"] == "fine"]
    assert coarse == list(expo.COARSE_ALPHAS) == [round(0.1 * i, 1) for i in range(1, 11)]  # factors 1.1–2.0
    assert res.rows[0]["stage"] == "baseline" and res.rows[0]["alpha"] == 0.0 == res.baseline_row["alpha"]
    assert fine == [round(0.31 + 0.01 * i, 2) for i in range(9)] + [round(0.41 + 0.01 * i, 2) for i in range(9)]
    assert reported == res.rows
    out = res.write_best(tmp_path / "best")
    assert_same(weights(out), direct(weights(weak), weights(strong), 0.37))
    assert "(strong alone, not a grid point)" in res.to_markdown()
    assert "| 0.37 |" in res.to_markdown() and json.loads(res.to_json())["best_alpha"] == 0.37
    png = expo.plot_search(res, tmp_path / "search.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_search_candidates_equal_extrapolate_output(pair, tmp_path):
    """The model evaluated at α is bit-identical to what extrapolate writes for α."""
    weak, strong = pair
    snap: dict[float, dict[str, torch.Tensor]] = {}

    def evaluate(model):
        snap[len(snap)] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"accuracy": 0.5}

    expo.search_alpha(weak, strong, [0.0, 0.7], evaluate, refine=False)
    assert_same({k: snap[1][k] for k in weights(strong)}, weights(expo.extrapolate(weak, strong, 0.7, tmp_path / "o")))
    assert_same({k: snap[0][k] for k in weights(strong)}, weights(strong))


def test_search_tie_breaks(pair):
    weak, strong = pair
    flat = expo.search_alpha(weak, strong, [0.4, 0.0, 0.2], lambda m: {"accuracy": 0.8}, refine=False)
    assert flat.best_alpha == 0.0  # no loss: the least extrapolation wins
    same = expo.search_alpha(weak, strong, [0.4, 0.2, -0.2], lambda m: {"accuracy": 0.8, "loss": 1.0},
                             refine=False)
    assert same.best_alpha == -0.2  # equal |α|: the smaller α
    losses = iter([3.0, 2.0, 1.0, 5.0])
    by_loss = expo.search_alpha(weak, strong, [0.0, 0.1, 0.2, 0.3],
                                lambda m: {"accuracy": 0.8, "loss": next(losses)}, refine=False)
    assert by_loss.best_alpha == 0.2  # equal accuracy: the lowest loss
    accs = iter([0.5, 0.9, 0.7, 0.9])
    by_acc = expo.search_alpha(weak, strong, [0.0, 0.1, 0.2, 0.3],
                               lambda m: {"accuracy": next(accs), "loss": 1.0}, refine=False)
    assert by_acc.best_alpha == 0.1  # best accuracy first, then smaller |α|
    with pytest.raises(ValueError, match="must return 'accuracy'"):
        expo.search_alpha(weak, strong, [0.1], lambda m: {"loss": 1.0})


def test_max_shard_size_parsing():
    assert parse_size("2GB") == 2_000_000_000 and parse_size("1GiB") == 2**30
    assert parse_size("100KB") == 100_000 and parse_size(123) == 123
    with pytest.raises(ValueError, match="cannot parse size"):
        parse_size("two gigs")


def test_pairwise_evaluator_accuracy_and_loss():
    evaluate = expo.pairwise_evaluator(lambda m: (torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 1.0])))
    got = evaluate(torch.nn.Linear(1, 1))
    assert got["accuracy"] == pytest.approx(2 / 3)  # the tie counts wrong
    assert got["loss"] == pytest.approx((2 * torch.log1p(torch.exp(torch.tensor(-1.0))).item() + 0.6931471805599453) / 3)
    assert got["n"] == 3


def test_search_with_real_scores(pair):
    """pairwise_evaluator on real forward passes; accuracy changes with α and the best is reported."""
    weak, strong = pair
    ids = torch.arange(3, 60).reshape(3, 19)

    def score_fn(model):
        out = model(input_ids=ids).logits[:, 0]
        return out[:2], out[1:]

    res = expo.search_alpha(weak, strong, [0.0, 0.5, 1.0], expo.pairwise_evaluator(score_fn), refine=False)
    assert len(res.rows) == 3 and all(0.0 <= r["accuracy"] <= 1.0 and r["loss"] > 0 for r in res.rows)
    assert res.best_row == min(res.rows, key=rank_key)


def test_cli_hook(pair, tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    expo.add_cli_arguments(parser)
    args = parser.parse_args(["--weak", str(pair[0]), "--strong", str(pair[1]), "--factor", "1.5",
                              "--out", str(tmp_path / "out")])
    assert expo.cli(args) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out")
    assert_same(weights(tmp_path / "out"), direct(weights(pair[0]), weights(pair[1]), 0.5))
    with pytest.raises(SystemExit):
        parser.parse_args(["--weak", "w", "--strong", "s", "--alpha", "1", "--factor", "2", "--out", "o"])


def test_the_strong_baseline_is_reported_but_never_chosen(pair):
    """The strong model alone scores best here, yet the search returns the best extrapolated α."""
    weak, strong = pair
    s0 = weights(strong)["score.weight"][0, 0].item()

    def evaluate(model):
        return {"accuracy": -abs(model.score.weight[0, 0].item() - s0), "loss": 0.0}

    res = expo.search_alpha(weak, strong, [0.3, 0.6], evaluate, refine=False)
    assert [r["stage"] for r in res.rows] == ["baseline", "coarse", "coarse"]
    assert res.baseline_row["accuracy"] == 0.0 > res.best_row["accuracy"]  # strong alone wins the metric...
    assert res.best_alpha == 0.3  # ...but is not a grid point
    with_zero = expo.search_alpha(weak, strong, [0.0, 0.3], evaluate, refine=False)
    assert with_zero.best_alpha == 0.0 and with_zero.baseline_row is None  # 0 asked for: a grid point, once
    assert len(with_zero.rows) == 2
