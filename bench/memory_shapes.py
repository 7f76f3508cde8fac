"""Peak training memory of LoRA / QLoRA reward models at real 7-8B layer shapes, measured on CPU,
against the estimator behind ``rmlib plan`` (``rmlib/plan.py``).

Why on CPU and with few layers: the estimator claims an 8B QLoRA reward model trains at 4k tokens in
~11 GiB, but until now it was checked on tiny shapes only. The bytes a training step keeps alive
(weights, LoRA parameters, gradients, AdamW moments, saved activations, backward transients) do
not depend on the device, so they can be measured on CPU at the real hidden/MLP/head/vocab sizes.
Every term is either fixed (embeddings, head) or proportional to the number of decoder layers, so
models of the real width with 1, 2 and 4 layers give a straight line ``peak = fixed + per_layer·L``
that is extrapolated to the full depth (32 layers for Llama-3.1-8B, 28 for Qwen2.5-7B).

Each point is a fresh subprocess: a random-init model of the architecture's exact shapes (the
``rmlib.plan.PRESETS`` config with fewer layers) is loaded the way the trainer loads it
(``rmlib.models.lora.build_lora_model``: bf16 base, or nf4 + double quantization with bf16 compute,
``prepare_model_for_kbit_training``, fp32 LoRA on every projection and the full fp32 score head),
then one training step runs on one preference pair of 2 × ``--seq-len`` tokens (forward,
Bradley-Terry loss, backward, the trainer's fused AdamW step) under bf16 autocast, as
``train.mixed_precision: bf16`` does.

Peak live tensor bytes = the model's tensor storage after loading (parameters, buffers and the
4-bit quantization states, counted exactly) + AdamW's moments (created before the measured step,
as they are from the second step of a run on) + the running maximum of the torch profiler's CPU
allocation events over the step: the method of ``bench/train_throughput.py`` (the CPU
counterpart of ``torch.cuda.max_memory_allocated``). The weights are counted from storage rather
than from load-time events because safetensors loading may map tensors from the file without an
allocation event. GPU allocator overhead (CUDA context, cuBLAS workspace, fragmentation) is not
included; compare with the estimator's ``peak_allocated``.

    nice -n 10 python bench/memory_shapes.py                  # every point (hours on 2 cores), resumable
    nice -n 10 python bench/memory_shapes.py --archs llama8b --layers 1 2 --modes qlora --gc on
    python bench/memory_shapes.py --fit-only                  # refit and rewrite the table from saved points
    nice -n 10 python bench/memory_shapes.py --archs llama8b --block-coefficients 128 \
        --out bench/results/memory_shapes_blocks.json         # per-token block activations only (minutes)
    python bench/memory_shapes.py --device cuda ...           # on a GPU: max_memory_allocated instead

Results: ``bench/results/memory_shapes.json`` (points, fits, estimator comparison), written after
every point so an interrupted run keeps what it measured (``--resume`` is the default: points
already in the file are not measured again).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "memory_shapes.json"
ARCHS = {"llama8b": "meta-llama/Llama-3.1-8B", "qwen7b": "Qwen/Qwen2.5-7B", "tiny": None}
# a small Llama of the same structure, to try the whole pipeline in seconds (and for the tests)
TINY = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 8,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000, "tie_word_embeddings": False}
GIB = 1024 ** 3


# -- fitting (pure arithmetic; tests/test_bench_memory_shapes.py checks it) ----------------------


def fit_line(layers: list[int], peaks: list[float]) -> dict[str, float]:
    """Least-squares ``peak = fixed + per_layer * layers`` and the largest relative residual.

    Two distinct layer counts give the exact line through them; three or more a least-squares
    line whose residuals say whether the per-layer model holds (the third point is the check).
    """
    if len(set(layers)) < 2:
        raise ValueError(f"a line needs at least two distinct layer counts, got {layers}")
    n = len(layers)
    mx, my = sum(layers) / n, sum(peaks) / n
    sxx = sum((x - mx) ** 2 for x in layers)
    per_layer = sum((x - mx) * (y - my) for x, y in zip(layers, peaks)) / sxx
    fixed = my - per_layer * mx
    resid = max(abs(fixed + per_layer * x - y) / y for x, y in zip(layers, peaks))
    return {"fixed": fixed, "per_layer": per_layer, "max_rel_residual": resid}


def extrapolate(fit: dict[str, float], layers: int) -> float:
    return fit["fixed"] + fit["per_layer"] * layers


def relative_error(estimate: float, measured: float) -> float:
    """(estimate - measured) / measured: positive means the estimator over-predicts."""
    return (estimate - measured) / measured


# -- one point (in a subprocess) -----------------------------------------------------------------


def arch_config(arch: str, layers: int) -> dict:
    from rmlib.plan import PRESETS

    cfg = dict(PRESETS[ARCHS[arch]] if ARCHS[arch] else TINY)
    if layers:
        cfg["num_hidden_layers"] = layers
    return cfg


def _write_model(arch: str, max_layers: int, out: Path) -> Path:
    """A random-init bf16 checkpoint of the architecture's shapes with ``max_layers`` layers, plus
    a small tokenizer (its ids are all < the model's vocabulary). Points with fewer layers load it
    with ``num_hidden_layers`` lowered (the extra layers' tensors are left in the file)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from rmlib.testing import build_tokenizer

    if (out / "config.json").exists():
        return out
    tok = build_tokenizer(1000)
    d = arch_config(arch, max_layers)
    cfg = AutoConfig.for_model(d.pop("model_type"), **d, num_labels=1, id2label={0: "reward"},
                               label2id={"reward": 0}, pad_token_id=tok.pad_token_id, max_position_embeddings=32768)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(cfg, dtype=torch.bfloat16)
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    del model
    tmp.rename(out)
    return out


def _view(full: Path, layers: int) -> Path:
    """The checkpoint with its first ``layers`` layers: links to the same weight files and a config
    with ``num_hidden_layers`` lowered (transformers leaves the other layers' tensors unread)."""
    view = full.with_name(f"{full.name}_view{layers}")
    if not (view / "config.json").exists():
        tmp = view.with_name(view.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        for f in full.iterdir():
            if f.name != "config.json" and not (tmp / f.name).exists():
                (tmp / f.name).symlink_to(f.resolve())
        cfg = json.loads((full / "config.json").read_text())
        cfg["num_hidden_layers"] = layers
        if isinstance(cfg.get("layer_types"), list):  # Qwen2: one entry per layer, checked against the count
            cfg["layer_types"] = cfg["layer_types"][:layers]
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
        tmp.rename(view)
    return view


def _tensor_bytes(module) -> int:
    """Bytes of every distinct storage the model holds: parameters, buffers and the tensors inside
    bitsandbytes' 4-bit quantization states (absmax, nested absmax, code tables)."""
    import torch

    seen: dict[int, int] = {}

    def add(t):
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            s = t.untyped_storage()
            seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())

    def walk_state(st, depth=0):
        if st is None or depth > 3:
            return
        for v in vars(st).values():
            if isinstance(v, torch.Tensor):
                add(v)
            elif hasattr(v, "absmax"):  # nested QuantState
                walk_state(v, depth + 1)

    for p in module.parameters():
        add(p)
        walk_state(getattr(p, "quant_state", None))
    for b in module.buffers():
        add(b)
    return sum(seen.values())


class _StepPeak:
    """Running maximum of live tensor bytes allocated inside the window (CPU: profiler allocation
    events, as in bench/train_throughput.py; CUDA: the allocator's peak counter)."""

    def __init__(self, device: str):
        self.device = device

    def __enter__(self):
        import torch

        gc.collect()
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            from torch.profiler import ProfilerActivity, profile

            self.prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
            self.prof.__enter__()
        return self

    def __exit__(self, *exc):
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
            return False
        self.prof.__exit__(*exc)
        events = sorted((e.start_ns(), e.nbytes()) for e in self.prof.profiler.kineto_results.events()
                        if e.name() == "[memory]" and e.device_type().name == "CPU")
        live = peak = 0
        for _, nbytes in events:
            live += nbytes
            peak = max(peak, live)
        self.peak, self.events = peak, len(events)
        return False


def measure_point(model_dir: str, layers: int, mode: str, grad_ckpt: bool, seq_len: int, rank: int,
                  device: str, sequences: int = 2) -> dict:
    """Load like the trainer, run one training step on one pair (``sequences=2``, Bradley-Terry) or
    one rated sequence (``sequences=1``, squared error), return the byte counts."""
    import torch

    from rmlib.config import LoraSettings, ModelConfig
    from rmlib.data.collate import Batch
    from rmlib.losses import get_loss
    from rmlib.models.lora import build_lora_model

    dev = torch.device(device)
    lo = LoraSettings(enabled=True, r=rank, alpha=2 * rank, dropout=0.0,
                      quantization="4bit" if mode == "qlora" else "none", double_quant=True,
                      compute_dtype="bfloat16")
    mc = ModelConfig(name_or_path=model_dir, dtype="bfloat16", attn_implementation="sdpa",
                     gradient_checkpointing=grad_ckpt, lora=lo)
    t0 = time.perf_counter()
    rm = build_lora_model(model_dir, ["reward"], mc, device=dev, dtype="bfloat16", attn_implementation="sdpa",
                          max_length=seq_len)
    assert rm.config.num_hidden_layers == layers, (rm.config.num_hidden_layers, layers)
    if mode == "lora":
        rm.to(dev)
    rm.train()
    load_s = time.perf_counter() - t0
    gc.collect()
    model_bytes = _tensor_bytes(rm)
    trainable = [p for p in rm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for p in trainable if p.dim() > 1], "weight_decay": 0.0},
                             {"params": [p for p in trainable if p.dim() <= 1], "weight_decay": 0.0}],
                            lr=1e-4, fused=True)
    # Steady state: from the second step on, AdamW's moments are live through forward and backward.
    # A first step creates them only at opt.step(), after the activations are gone, and would
    # under-count the peak. So they are created here, by one step on zero gradients (with weight
    # decay 0 it leaves every weight unchanged), and counted exactly.
    for p in trainable:
        p.grad = torch.zeros_like(p)
    opt.step()
    opt.zero_grad(set_to_none=True)
    gc.collect()
    state_bytes = sum(t.numel() * t.element_size() for st in opt.state.values() for t in st.values()
                      if isinstance(t, torch.Tensor))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (sequences, seq_len), generator=g).to(dev)
    ends = torch.arange(1, sequences + 1, device=dev) * seq_len - 1
    batch = Batch(input_ids=ids, end_index=ends, attention_mask=torch.ones_like(ids),
                  num_pairs=1 if sequences == 2 else 0)
    loss_fn = get_loss("bt") if sequences == 2 else (lambda r: r.float().square().mean())
    t0 = time.perf_counter()
    with _StepPeak(device) as w:
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            rewards = rm(batch)[:, 0]
        loss = loss_fn(rewards[:1], rewards[1:]) if sequences == 2 else loss_fn(rewards)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    step_s = time.perf_counter() - t0
    trainable_bytes = sum(p.numel() * p.element_size() for p in trainable)
    return {"model_bytes": model_bytes, "optimizer_state_bytes": state_bytes, "step_peak_bytes": w.peak,
            "peak_bytes": model_bytes + state_bytes + w.peak,
            "trainable_params": sum(p.numel() for p in trainable), "trainable_bytes": trainable_bytes,
            "loss": float(loss), "load_s": round(load_s, 1), "step_s": round(step_s, 1),
            "profiler_events": getattr(w, "events", None)}


def saved_tensor_bytes(model_dir: str, mode: str, tokens: int, rank: int) -> int:
    """Bytes autograd saves for backward in one forward of ``tokens`` tokens (no checkpointing),
    parameters excluded: ``torch.autograd.graph.saved_tensors_hooks``, as the estimator's
    coefficients were first measured, but in the trainer's real setting (bf16 autocast, fp32
    adapters and head, QLoRA's fp32 embeddings and norms) and at the real width. Saved bytes are
    linear in tokens, so a short sequence gives the per-token coefficient cheaply."""
    import torch

    from rmlib.config import LoraSettings, ModelConfig
    from rmlib.data.collate import Batch
    from rmlib.models.lora import build_lora_model

    lo = LoraSettings(enabled=True, r=rank, alpha=2 * rank, dropout=0.0,
                      quantization="4bit" if mode == "qlora" else "none", compute_dtype="bfloat16")
    mc = ModelConfig(name_or_path=model_dir, dtype="bfloat16", attn_implementation="sdpa", lora=lo)
    rm = build_lora_model(model_dir, ["reward"], mc, device=torch.device("cpu"), dtype="bfloat16",
                          attn_implementation="sdpa", max_length=max(tokens, 128))
    rm.train()
    ids = torch.randint(10, 1000, (1, tokens), generator=torch.Generator().manual_seed(0))
    batch = Batch(input_ids=ids, end_index=torch.tensor([tokens - 1]), attention_mask=torch.ones_like(ids))
    params = {p.untyped_storage().data_ptr() for p in rm.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rm(batch)
    return sum(seen.values())


def block_coefficients(arch: str, work: Path, tokens: int, rank: int) -> dict:
    """Per-token, per-block saved bytes (2 layers minus 1 layer) for LoRA and QLoRA, beside the
    estimator's ``block_activation_bytes`` for the same setting and the plain-bf16 formula."""
    from rmlib.plan import block_activation_bytes

    d = arch_config(arch, 1)
    full = work / f"{arch}_L4"  # the grid's checkpoint if it exists, else a 2-layer one
    full = full if (full / "config.json").exists() else _write_model(arch, 2, work / f"{arch}_L2")
    kv = d["num_key_value_heads"] * (d["hidden_size"] // d["num_attention_heads"])
    out = {}
    for mode in ("lora", "qlora"):
        one, two = (saved_tensor_bytes(str(_view(full, n)), mode, tokens, rank) for n in (1, 2))
        measured = (two - one) / tokens
        est = block_activation_bytes(d["hidden_size"], d["intermediate_size"], kv, rank, 2,
                                     autocast="4bit" if mode == "qlora" else "none")
        plain = block_activation_bytes(d["hidden_size"], d["intermediate_size"], kv, rank, 2)
        out[mode] = {"measured": measured, "estimate": est, "plain_bf16_formula": plain,
                     "error": relative_error(est, measured), "plain_error": relative_error(plain, measured)}
        print(f"{arch} {mode}: {measured:,.0f} B per token per block; estimate {est:,.0f} ({out[mode]['error']:+.1%}); "
              f"plain bf16 formula {plain:,.0f} ({out[mode]['plain_error']:+.1%})", flush=True)
    return out


# -- driver --------------------------------------------------------------------------------------


def point_key(arch: str, layers: int, mode: str, grad_ckpt: bool) -> str:
    return f"{arch}/L{layers}/{mode}/{'gc' if grad_ckpt else 'nogc'}"


def estimator(arch: str, layers: int, mode: str, grad_ckpt: bool, seq_len: int, rank: int, sequences: int = 2):
    from rmlib.plan import estimate_memory

    return estimate_memory(arch_config(arch, layers), lora_rank=rank, quantization="4bit" if mode == "qlora" else "none",
                           seq_len=seq_len, micro_batch=1, gradient_checkpointing=grad_ckpt, dtype="bfloat16",
                           sequences_per_item=sequences, lora_dropout=False, double_quant=True)


def analyse(points: dict[str, dict], seq_len: int, rank: int, sequences: int = 2) -> dict:
    """Per (arch, mode, checkpointing): the line through the measured points, its extrapolation to
    the full depth, and the estimator's prediction at every measured and extrapolated depth."""
    groups: dict[tuple, list[dict]] = {}
    for p in points.values():
        groups.setdefault((p["arch"], p["mode"], p["gradient_checkpointing"]), []).append(p)
    out = []
    for (arch, mode, gck), ps in sorted(groups.items()):
        ps.sort(key=lambda p: p["layers"])
        rows = []
        for p in ps:
            e = estimator(arch, p["layers"], mode, gck, seq_len, rank, sequences)
            rows.append({"layers": p["layers"], "measured_gib": p["peak_bytes"] / GIB,
                         "estimate_gib": e.peak_allocated / GIB,
                         "error": relative_error(e.peak_allocated, p["peak_bytes"])})
        g = {"arch": arch, "mode": mode, "gradient_checkpointing": gck, "points": rows}
        full = arch_config(arch, 0)["num_hidden_layers"]
        if len({p["layers"] for p in ps}) >= 2:
            fit = fit_line([p["layers"] for p in ps], [p["peak_bytes"] for p in ps])
            e_full = estimator(arch, full, mode, gck, seq_len, rank, sequences)
            extra = extrapolate(fit, full)
            g.update(fixed_gib=fit["fixed"] / GIB, per_layer_gib=fit["per_layer"] / GIB,
                     max_rel_residual=fit["max_rel_residual"], full_layers=full, extrapolated_gib=extra / GIB,
                     estimate_full_gib=e_full.peak_allocated / GIB,
                     estimate_full_total_gib=e_full.total / GIB,
                     error_full=relative_error(e_full.peak_allocated, extra),
                     estimate_terms_full_gib=e_full.gib())
        out.append(g)
    worst = max((abs(r["error"]) for g in out for r in g["points"]), default=None)
    return {"groups": out, "max_abs_error_measured": worst}


def markdown(analysis: dict, seq_len: int) -> str:
    lines = ["| model | method | checkpointing | measured peak at 1 / 2 / 4 layers (GiB) | estimate (GiB) | "
             "max error | per layer (GiB) | fixed (GiB) | extrapolated full depth (GiB) | estimate full depth (GiB) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for g in analysis["groups"]:
        meas = " / ".join(f"{r['measured_gib']:.2f}" for r in g["points"])
        est = " / ".join(f"{r['estimate_gib']:.2f}" for r in g["points"])
        err = max((r["error"] for r in g["points"]), key=abs)
        full = (f"{g['per_layer_gib']:.3f} | {g['fixed_gib']:.2f} | {g['extrapolated_gib']:.2f} "
                f"({g['full_layers']} layers) | {g['estimate_full_gib']:.2f} ({g['error_full']:+.1%})"
                if "fixed_gib" in g else "- | - | - | -")
        lines.append(f"| {g['arch']} | {g['mode']} | {'on' if g['gradient_checkpointing'] else 'off'} | "
                     f"{meas} ({', '.join(str(r['layers']) for r in g['points'])}) | {est} | {err:+.1%} | {full} |")
    return "\n".join(lines)


def _save(path: Path, report: dict) -> None:
    from rmlib.io import write_text

    write_text(json.dumps(report, indent=2) + "\n", path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", nargs="+", choices=sorted(ARCHS), default=["llama8b", "qwen7b"])
    ap.add_argument("--layers", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--modes", nargs="+", choices=["lora", "qlora"], default=["qlora", "lora"])
    ap.add_argument("--gc", nargs="+", choices=["on", "off"], default=["on", "off"])
    ap.add_argument("--seq-len", type=int, default=4096, help="tokens per sequence (one pair = 2 sequences)")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--sequences", type=int, choices=[1, 2], default=2,
                    help="sequences per step: 2 = one preference pair (BT loss), 1 = one rated sequence (half the "
                         "compute; the estimator is then asked with sequences_per_item=1)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "rmlib_memory_shapes"),
                    help="where the random-init checkpoints are written (kept for later runs)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--fit-only", action="store_true", help="refit the saved points, measure nothing")
    ap.add_argument("--fresh", action="store_true", help="measure again the points already in --out")
    ap.add_argument("--block-coefficients", type=int, metavar="TOKENS", default=None,
                    help="instead of training steps: per-token saved bytes of one block (saved-tensor hooks, "
                         "1 and 2 layers, TOKENS tokens) for LoRA and QLoRA, stored under 'block_coefficients'")
    ap.add_argument("--point", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.point:  # worker: arch,layers,mode,gc,model_dir
        arch, layers, mode, gck, model_dir = args.point.split(",")
        res = measure_point(model_dir, int(layers), mode, gck == "on", args.seq_len, args.rank, args.device,
                            args.sequences)
        print("RESULT " + json.dumps(res), flush=True)
        return
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    if args.block_coefficients:
        coeffs = report.setdefault("block_coefficients", {})
        for arch in args.archs:
            coeffs[arch] = {"tokens": args.block_coefficients, "rank": args.rank,
                            **block_coefficients(arch, Path(args.workdir), args.block_coefficients, args.rank)}
        _save(out, report)
        return
    points: dict[str, dict] = report.get("points", {})
    old = report.get("meta", {})
    if (old.get("seq_len", args.seq_len), old.get("rank", args.rank), old.get("sequences", args.sequences)) != (
            args.seq_len, args.rank, args.sequences):
        raise SystemExit(f"{out} holds points at another --seq-len/--rank/--sequences; use another --out")
    meta = {"seq_len": args.seq_len, "rank": args.rank, "sequences": args.sequences, "device": args.device,
            "command": " ".join(["python", *sys.argv]),
            "method": ("peak live tensor bytes = model tensor storage after loading + running maximum of the "
                       "torch profiler's CPU allocation events over one training step (forward, BT loss, "
                       "backward, fused AdamW); GPU allocator overhead not included"),
            "setting": ("random init at the preset's shapes, bf16 base or nf4 + double quant (bf16 compute), "
                        "LoRA r on every projection, dropout 0, fp32 LoRA and score head, bf16 autocast, sdpa, "
                        "one pair of 2 x seq_len tokens (--sequences 2) or one sequence of seq_len tokens (1)")}
    if not args.fit_only:
        import torch

        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
        for arch in args.archs:
            model_dir = None
            # checkpointing setting, then method, then depth: the first complete line (two depths) comes
            # as early as possible, in the order given (the headline configuration first)
            for gck, mode, layers in ((g, m, n) for g in args.gc for m in args.modes for n in sorted(args.layers)):
                key = point_key(arch, layers, mode, gck == "on")
                if key in points and not args.fresh:
                    print(f"{key}: already measured, skipped", flush=True)
                    continue
                if model_dir is None:
                    t0 = time.perf_counter()
                    n_ckpt = max(4, *args.layers)  # one checkpoint serves every smaller depth
                    model_dir = _write_model(arch, n_ckpt, work / f"{arch}_L{n_ckpt}")
                    print(f"{arch}: checkpoint {model_dir} ({time.perf_counter() - t0:.0f} s)", flush=True)
                t0 = time.perf_counter()
                view = _view(model_dir, layers)
                cmd = [sys.executable, __file__, "--point", f"{arch},{layers},{mode},{gck},{view}",
                       "--seq-len", str(args.seq_len), "--rank", str(args.rank), "--device", args.device,
                       "--sequences", str(args.sequences)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    print(f"{key}: FAILED (rc {proc.returncode})\n{proc.stderr[-3000:]}", flush=True)
                    continue
                res = json.loads(lines[-1][7:])
                if "optimizer_state_bytes" not in res:  # measured by the first version of this script
                    res["optimizer_state_bytes"] = 8 * res["trainable_params"]  # fused AdamW: 2 fp32 moments
                    res["peak_bytes"] += res["optimizer_state_bytes"]
                    res["note"] = "first step only: AdamW moments (8 B/trainable parameter) added afterwards"
                points[key] = {"arch": arch, "layers": layers, "mode": mode,
                               "gradient_checkpointing": gck == "on", **res,
                               "wall_s": round(time.perf_counter() - t0, 1)}
                e = estimator(arch, layers, mode, gck == "on", args.seq_len, args.rank, args.sequences)
                print(f"{key}: peak {res['peak_bytes'] / GIB:.3f} GiB (model {res['model_bytes'] / GIB:.3f}, "
                      f"step {res['step_peak_bytes'] / GIB:.3f}); estimate {e.peak_allocated / GIB:.3f} GiB "
                      f"({relative_error(e.peak_allocated, res['peak_bytes']):+.1%}); "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
                report.update(meta={**meta, "machine_torch": torch.__version__}, points=points,
                              analysis=analyse(points, args.seq_len, args.rank, args.sequences))
                report["table_markdown"] = markdown(report["analysis"], args.seq_len)
                _save(out, report)  # after every point: a run stopped by a time limit keeps them
        meta["machine_torch"] = torch.__version__
    report["meta"] = {**report.get("meta", {}), **meta} if not args.fit_only else report.get("meta", meta)
    report["points"] = points
    report["analysis"] = analyse(points, args.seq_len, args.rank, args.sequences)
    report["table_markdown"] = markdown(report["analysis"], args.seq_len)
    _save(out, report)
    print(report["table_markdown"])
    worst = report["analysis"]["max_abs_error_measured"]
    if worst is not None:
        print(f"largest estimator error over the measured points: {worst:.1%}")


if __name__ == "__main__":
    main()
