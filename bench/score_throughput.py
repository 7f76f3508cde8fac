"""Scoring throughput: ``RewardModel.score`` vs a fixed-batch, unsorted scorer on mixed lengths.

The baseline is what a scoring script usually does: take the (prompt, response) list in its given
order, cut it into batches of ``--batch`` sequences, right-pad each batch to its longest member and
read the reward at each sequence's last real token. ``RewardModel.score`` sorts by length and
batches by a token budget (same ``batch_size``), so short sequences are not padded to long ones.
A best-of-N set (``--n`` responses per prompt) also times ``score(..., shared_prompt=True)``, which
computes each prompt once. Same model, same sequences, same process, alternating, ``--repeats``
rounds; the median is reported. Tokens are the real (non-pad) tokens of the scored sequences;
padding is the pad share of the positions each scorer's model calls compute (one extra, untimed run).

    python bench/score_throughput.py --quick
    python bench/score_throughput.py --quick --device cuda --dtype bfloat16   # on a GPU (bench/gpu_check.py)

On CUDA each timed call ends with ``torch.cuda.synchronize()``, so queued kernels are not left out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import WORDS, _lognormal, _text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "score_throughput.json"


@torch.no_grad()
def fixed_batch_scores(model, prompts, responses, batch: int) -> torch.Tensor:
    """The baseline: input order, fixed batch size, right padding, reward at the last real token."""
    from rmlib.data.collate import collate_sequences
    from rmlib.models.reward_model import as_messages

    feat = model.featurizer()
    seqs = [feat.encode(as_messages(p), r) for p, r in zip(prompts, responses)]
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(seqs), batch):
        out.append(model(collate_sequences(seqs[i:i + batch], model.tokenizer.pad_token_id).to(device))[:, 0]
                   .float().cpu())
    return torch.cat(out)


def padding_fraction(model, fn) -> float:
    """Pad share of the positions ``fn``'s model calls compute, counted in one extra, untimed run."""
    seen = {"tokens": 0, "positions": 0}
    forward = model.forward

    def counting(batch):
        seen["tokens"] += batch.n_tokens
        seen["positions"] += batch.n_positions
        return forward(batch)

    model.forward = counting
    try:
        fn()
    finally:
        del model.forward
    return 1 - seen["tokens"] / seen["positions"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n-seqs", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--n", type=int, default=4, help="responses per prompt in the best-of-N set")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="weights' dtype (bfloat16 is what a GPU serves)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    if args.quick:
        args.n_seqs, args.repeats, args.scale = 192, 2, 0.5
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rmlib.models import RewardModel
    from rmlib.testing import build_tiny_llama

    work = Path(tempfile.mkdtemp(prefix="rmlib_score_bench_"))
    model_dir = build_tiny_llama(work / "model", hidden_size=args.hidden, layers=args.layers, heads=4, kv_heads=2,
                                 intermediate_size=int(args.hidden * 8 / 3))
    model = RewardModel.from_pretrained(model_dir, max_length=2048, dtype=args.dtype).to(args.device)

    def synced(fn):
        def call():
            out = fn()
            if args.device == "cuda":
                torch.cuda.synchronize()
            return out.float().cpu()
        return call
    rng = random.Random(0)
    mixed_p, mixed_r = [], []
    for _ in range(args.n_seqs):
        mixed_p.append(_text(rng, _lognormal(rng, 90 * args.scale, 0.9, 8, int(1200 * args.scale))))
        mixed_r.append(_text(rng, _lognormal(rng, 140 * args.scale, 0.7, 4, int(700 * args.scale))))
    bon_p, bon_r = [], []
    for _ in range(args.n_seqs // args.n):
        p = _text(rng, _lognormal(rng, 200 * args.scale, 0.6, 8, int(1500 * args.scale)))
        for _ in range(args.n):
            bon_p.append(p)
            bon_r.append(_text(rng, _lognormal(rng, 120 * args.scale, 0.6, 4, int(600 * args.scale))))
    feat = model.featurizer()
    from rmlib.models.reward_model import as_messages

    def n_tokens(ps, rs):
        return sum(len(feat.encode(as_messages(p), r).ids) for p, r in zip(ps, rs))

    systems = {
        "mixed": (mixed_p, mixed_r, {
            "fixed_batch_unsorted": lambda: fixed_batch_scores(model, mixed_p, mixed_r, args.batch),
            "rmlib_score": lambda: model.score(mixed_p, mixed_r, batch_size=args.batch)}),
        "best_of_n": (bon_p, bon_r, {
            "fixed_batch_unsorted": lambda: fixed_batch_scores(model, bon_p, bon_r, args.batch),
            "rmlib_score": lambda: model.score(bon_p, bon_r, batch_size=args.batch),
            "rmlib_score_shared_prompt": lambda: model.score(bon_p, bon_r, batch_size=args.batch // args.n,
                                                              shared_prompt=True)}),
    }
    report: dict = {}
    for name, (ps, rs, fns) in systems.items():
        tokens = n_tokens(ps, rs)
        times: dict[str, list[float]] = {k: [] for k in fns}
        results = {}
        if args.device == "cuda":  # CUDA context, cuBLAS handles and kernel choice stay out of the timing
            for fn in fns.values():
                synced(fn)()
        for rep in range(args.repeats):
            for key in (list(fns) if rep % 2 == 0 else list(fns)[::-1]):
                t0 = time.perf_counter()
                results[key] = synced(fns[key])()
                times[key].append(time.perf_counter() - t0)
        ref = results["fixed_batch_unsorted"]
        row = {k: {"tokens_per_s": tokens / statistics.median(v), "seconds_all": v,
                   "padding_fraction": padding_fraction(model, fns[k]),
                   "max_abs_diff_vs_baseline": float((results[k] - ref).abs().max())} for k, v in times.items()}
        base = row["fixed_batch_unsorted"]["tokens_per_s"]
        for k in row:
            row[k]["ratio_vs_fixed_batch"] = row[k]["tokens_per_s"] / base
        report[name] = {"sequences": len(ps), "tokens": tokens, **row}
        print(name, {k: f"{v['tokens_per_s']:.0f} tok/s ({v['ratio_vs_fixed_batch']:.2f}x), "
                        f"padding {v['padding_fraction']:.3f}" for k, v in row.items()})
    import transformers

    report["meta"] = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "batch": args.batch,
                      "repeats": args.repeats, "length_scale": args.scale, "words": len(WORDS),
                      "model": {"hidden": args.hidden, "layers": args.layers,
                                "type": f"Llama, random init, {args.dtype}"},
                      "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                      "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                      "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
