"""Listwise training throughput: the same k = 4 lists trained three ways, responses per second.

The data: UltraFeedback-like prompts, each with 4 rated responses (lengths drawn like
``bench/train_throughput.py``'s ``mixed`` set: log-normal prompts and responses; a quarter of the lists
have two responses tied, as UltraFeedback's fine-grained scores often do). Trained for one epoch by

* (a) ``listwise``: rmlib, ``plackett_luce`` on the lists, ``data.shared_prompt=true``: one packed row
  per list, the prompt computed once for its 4 responses;
* (b) ``pairs``: rmlib, ``bt`` on the expanded pairs (every strictly ordered pair of a list:
  ``rmlib.data.lists.pairs_from_lists``, 6 per untied list of 4, 5 with a tie), shared-prompt pairs (the
  prompt once per pair);
* (c) ``trl``: TRL's ``RewardTrainer`` on the same expanded pairs (its defaults: padded, random order;
  ``bench/train_throughput.py``'s ``run_trl``, which also holds the clock and the worker setup).

Every step covers the same prompts in all three (``--batch`` lists, or the pairs of those lists), so an
epoch has the same number of optimizer steps. Gradient checkpointing is the same for all (off by
default; ``--gradient-checkpointing on`` is TRL's default).

Measured, over the training steps only (first step start to last step end, each system in its own
fresh worker process, one intra-op thread, alternating order over ``--repeats``):

* responses/s and responses per CPU-second: the data's responses (4 per list) over the epoch's time.
  Each system trains on every response of the data once per epoch, whatever it makes of them (a list,
  or the pairs a response is in);
* positions computed per response: what the model computed (real tokens plus padding) over the epoch,
  per data response;
* the token limit of (a) against (c) (and against (b)): the ratio of positions per response,
  (c)/(a). If time were proportional to positions, (a)'s speed-up over (c) would be exactly that;
  (a) "within 15 % of its token limit" means its measured speed-up reaches at least 0.85 of it.

    nice -n 10 python bench/listwise_throughput.py --quick    # ~2 minutes on 2 CPU cores: smoke sizes
    nice -n 10 python bench/listwise_throughput.py            # the docs/performance.md table
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as tt  # noqa: E402  (the clock, the TRL run and the worker environment)

RESULTS = Path(__file__).resolve().parent / "results" / "listwise_throughput.json"
SYSTEMS = ("listwise", "pairs", "trl")
K = 4


def make_lists(n: int, scale: float, seed: int = 0) -> list[dict]:
    """Canonical rmlib_lists rows: a prompt and K responses with scores (a quarter with a tie)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        p = tt._lognormal(rng, 90 * scale, 0.9, 8, int(1200 * scale))
        responses = [tt._text(rng, tt._lognormal(rng, 140 * scale, 0.7, 4, int(700 * scale))) + f" r{j}"
                     for j in range(K)]
        scores = [float(s) for s in rng.sample(range(1, 11), K)]
        if i % 4 == 0:
            scores[1] = scores[0]
        rows.append({"prompt": [{"role": "user", "content": f"{i} " + tt._text(rng, p)}], "responses": responses,
                     "scores": scores, "meta": {}})
    return rows


def expand(rows: list[dict]) -> list[dict]:
    """The pairs of every list (higher score chosen, ties skipped) in TRL's conversational format."""
    from rmlib.data.lists import pairs_from_lists
    from rmlib.data.schema import RankedList

    lists = [RankedList(tuple(r["prompt"]), tuple(r["responses"]), tuple(r["scores"])) for r in rows]
    return [tt._record(list(p.prompt), p.chosen, p.rejected) for p in pairs_from_lists(lists)]


# -- one run (in a worker process) --------------------------------------------------------------


def run_rmlib(model_dir: str, data: Path, eval_data: Path, loss: str, batch: int, args: argparse.Namespace,
              out: Path) -> dict:
    from rmlib.training import trainer as tr

    clock = tt._Clock("cpu")
    original = tr.Trainer._train_step
    counts = {"tokens": 0.0, "positions": 0}

    def timed(self, run, micro, *rest):
        clock.begin(run.model)
        before = run.positions
        stats = original(self, run, micro, *rest)
        clock.done()
        counts["tokens"] += stats["tokens"]
        counts["positions"] += run.positions - before  # one process: every position computed
        return stats

    tr.Trainer._train_step = timed
    cfg = {"model": {"name_or_path": model_dir, "gradient_checkpointing": args.gc},
           "data": {"train": str(data), "eval": str(eval_data), "max_length": tt.MAX_LENGTH, "shared_prompt": True,
                    "cache_dir": str(out / "cache")},
           "loss": {"name": loss},
           "train": {"output_dir": str(out / "run"), "per_device_batch_size": batch, "epochs": 1, "lr": 1e-5,
                     "progress": False, "seed": 0, "eval_at_start": False, "sanity_checks": False}}
    try:
        summary = tr.Trainer(cfg).fit()
    finally:
        tr.Trainer._train_step = original
    return {"seconds": clock.seconds, "cpu_seconds": clock.cpu_seconds, "steps": clock.steps,
            "tokens": counts["tokens"], "positions": counts["positions"],
            "padding_fraction": summary["padding_fraction"], "device": clock.device,
            "dropped": summary["dropped_incomplete_batch_items"]}


def worker(args: argparse.Namespace) -> None:
    work = Path(args.workdir)
    tt._preimport("trl" if args.worker == "trl" else "rmlib")
    out = Path(tempfile.mkdtemp(dir=work))
    if args.worker == "listwise":
        res = run_rmlib(args.model, work / "lists.jsonl", work / "eval_lists.jsonl", "plackett_luce", args.batch,
                        args, out)
    elif args.worker == "pairs":
        res = run_rmlib(args.model, work / "pairs.jsonl", work / "eval_pairs.jsonl", "bt", args.pair_batch, args, out)
    else:
        ns = argparse.Namespace(device="cpu", batch=args.pair_batch, gc=args.gc)
        r = tt.run_trl(args.model, work / "pairs.jsonl", ns, out, "time")
        r["tokens"] = r["computed_tokens"]
        r["positions"] = r["computed_tokens"] / (1 - r["padding_fraction"])
        res = {k: r[k] for k in ("seconds", "cpu_seconds", "steps", "tokens", "positions", "padding_fraction",
                                 "device")}
    print("RESULT " + json.dumps(res), flush=True)


# -- driver -------------------------------------------------------------------------------------


def _run(system: str, args: argparse.Namespace, work: Path, model_dir: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", system, "--workdir", str(work), "--model", model_dir,
           "--batch", str(args.batch), "--pair-batch", str(args.pair_batch),
           "--gradient-checkpointing", args.gradient_checkpointing]
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        proc = subprocess.run(cmd, stdout=so, stderr=se, text=True, env=tt._worker_env("cpu", threads=args.threads))
        so.seek(0)
        se.seek(0)
        stdout, stderr = so.read(), se.read()
    if proc.returncode != 0:
        raise SystemExit(f"{system} run failed:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    (res,) = [json.loads(line[7:]) for line in stdout.splitlines() if line.startswith("RESULT ")]
    return res


def summarise(runs: dict[str, list[dict]], responses: int) -> dict:
    """Per system: medians over the repeats; ratios are medians of each repeat's ratio, with their spread."""
    row: dict = {}
    for system, rs in runs.items():
        row[system] = {
            "responses_per_s": statistics.median(responses / r["seconds"] for r in rs),
            "responses_per_cpu_s": statistics.median(responses / r["cpu_seconds"] for r in rs),
            "responses_per_cpu_s_all": [responses / r["cpu_seconds"] for r in rs],
            "responses_per_s_all": [responses / r["seconds"] for r in rs],
            "positions_per_response": statistics.median(r["positions"] / responses for r in rs),
            "tokens_per_response": statistics.median(r["tokens"] / responses for r in rs),
            "padding_fraction": statistics.median(r["padding_fraction"] for r in rs),
            "steps": rs[0]["steps"],
        }
    out: dict = {"systems": row}
    a = row["listwise"]
    for base in ("trl", "pairs"):
        b = row[base]
        cpu = tt.repeat_ratios(a["responses_per_cpu_s_all"], b["responses_per_cpu_s_all"])
        wall = tt.repeat_ratios(a["responses_per_s_all"], b["responses_per_s_all"])
        limit = b["positions_per_response"] / a["positions_per_response"]
        out[f"vs_{base}"] = {"responses_per_cpu_s_ratio": statistics.median(cpu), "cpu_spread": tt.spread(cpu),
                             "responses_per_s_ratio": statistics.median(wall), "wall_spread": tt.spread(wall),
                             "token_limit": limit, "share_of_token_limit": statistics.median(cpu) / limit}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke sizes (8 lists, one repeat): checks the script runs")
    ap.add_argument("--lists", type=int, default=96, help="prompts, each with 4 responses")
    ap.add_argument("--batch", type=int, default=4, help="lists per optimizer step (pairs runs: their pairs)")
    ap.add_argument("--repeats", type=int, default=3, help="worker processes per system, alternating order")
    ap.add_argument("--scale", type=float, default=0.3, help="multiplies every length")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per worker (see train_throughput)")
    ap.add_argument("--gradient-checkpointing", choices=["on", "off"], default="off")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--pair-batch", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.gc = args.gradient_checkpointing == "on"
    if args.worker:
        worker(args)
        return
    if args.quick:
        args.lists, args.repeats, args.scale, args.hidden, args.layers = 8, 1, 0.1, 64, 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from rmlib.testing import build_tiny_llama

    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="rmlib_listwise_bench_"))
    model_dir = str(build_tiny_llama(work / "model", hidden_size=args.hidden, layers=args.layers,
                                     heads=max(4, args.hidden // 128), kv_heads=max(2, args.hidden // 512),
                                     intermediate_size=int(args.hidden * 8 / 3)))
    # every system trains on all the rows; rmlib's end-of-run evaluation (outside the clock) reads two other lists
    rows, held = make_lists(args.lists, args.scale), make_lists(2, args.scale, seed=1)
    pairs = expand(rows)
    for name, data in (("lists", rows), ("pairs", pairs), ("eval_lists", held), ("eval_pairs", expand(held))):
        (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    args.pair_batch = round(args.batch * len(pairs) / len(rows))  # the pairs of `batch` lists, on average
    runs: dict[str, list[dict]] = {s: [] for s in SYSTEMS}
    for rep in range(args.repeats):
        order = SYSTEMS if rep % 2 == 0 else SYSTEMS[::-1]
        for system in order:
            res = _run(system, args, work, model_dir)
            runs[system].append(res)
            print(f"repeat {rep + 1}/{args.repeats} {system}: {res['steps']} steps, {res['seconds']:.1f} s, "
                  f"{res['cpu_seconds']:.1f} CPU-s, {res['positions'] / (len(rows) * K):.0f} positions/response",
                  flush=True)
    responses = len(rows) * K
    report = summarise(runs, responses)
    import torch
    import transformers
    import trl

    report["meta"] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "lists": args.lists, "k": K,
        "pairs": len(pairs), "batch_lists": args.batch, "batch_pairs": args.pair_batch, "repeats": args.repeats,
        "length_scale": args.scale, "threads": args.threads, "gradient_checkpointing": args.gc,
        "model": {"hidden": args.hidden, "layers": args.layers, "type": "Llama, random init, fp32, CPU"},
        "steps": {s: runs[s][0]["steps"] for s in SYSTEMS},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load": tt._loadavg(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'system':<10} {'responses/s':>12} {'per CPU-s':>10} {'positions/response':>19} {'padding':>8}")
    for s in SYSTEMS:
        r = report["systems"][s]
        print(f"{s:<10} {r['responses_per_s']:>12.1f} {r['responses_per_cpu_s']:>10.1f} "
              f"{r['positions_per_response']:>19.1f} {r['padding_fraction']:>8.3f}")
    for base in ("trl", "pairs"):
        v = report[f"vs_{base}"]
        c = v["cpu_spread"]
        print(f"listwise / {base}: {v['responses_per_cpu_s_ratio']:.2f}x per CPU-s ({c['min']:.2f}-{c['max']:.2f}), "
              f"{v['responses_per_s_ratio']:.2f}x wall; token limit {v['token_limit']:.2f}x; "
              f"{v['share_of_token_limit']:.0%} of it")
    print(f"wrote {out} ({report['meta']['wall_seconds']} s)")


if __name__ == "__main__":
    main()
