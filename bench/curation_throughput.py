"""Curation throughput and memory on a synthetic pair set, each step in a fresh process (its own peak RSS).

Data: N synthetic pairs (prompts 30-80 words, responses 20-60 words) with 2 % exact duplicates, 1 % swapped
(label conflicts) and 1 % whose prompt carries a 13-word window of a benchmark prompt; a RewardBench-format
file of 2,000 benchmark prompts. Steps timed (wall seconds, pairs/s, peak RSS):

* ``copy`` (the baseline): read the JSONL into Arrow and write every pair back out, what any step costs
  before it decides anything; the steps below are reported as a ratio to it;
* ``dedup``, ``decontaminate`` (13-gram, index built in the run and timed apart), ``filter`` (two score
  files, rules ``agrees`` + ``max_confidence``);
* ``search``: exact top-8 search of 1,000 queries in a pool of N random 384-d unit vectors, numpy vs faiss;
* ``embed``: MiniLM-L6 embeddings of 256 pairs (pairs/s), the cost that dominates retrieval.

    python bench/curation_throughput.py --pairs 100000          # the figures in docs/curation.md
    python bench/curation_throughput.py --pairs 20000 --quick   # a check in about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "curation_throughput.json"
WORDS = ("the a of to and is in that it for on with as you what how answer question number sum list sorted "
         "convert meters feet celsius yes no please write reply capital city model reward response data "
         "training evaluation policy language learning human preference helpful honest harmless explain "
         "because therefore example step first second finally code function return value river mountain "
         "history science music garden travel recipe budget health sport weather planet").split()


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def write_data(root: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    bench = [f"bench {i} " + _text(rng, 30, 60) for i in range(2000)]
    with open(root / "bench.jsonl", "w") as f:
        for i, p in enumerate(bench):
            f.write(json.dumps({"prompt": p, "chosen": "a", "rejected": "b", "subset": "chat", "id": i}) + "\n")
    rows = []
    with open(root / "pairs.jsonl", "w") as f, open(root / "gold.jsonl", "w") as g, open(root / "best.jsonl", "w") as b:
        for i in range(n):
            u = rng.random()
            if u < 0.02 and rows:
                row = rng.choice(rows)  # exact duplicate
            elif u < 0.03 and rows:
                src = rng.choice(rows)
                row = {**src, "chosen": src["rejected"], "rejected": src["chosen"]}  # swapped: a conflict
            else:
                prompt = f"{i} " + _text(rng, 30, 80)
                if u < 0.04:
                    words = rng.choice(bench).split()
                    s = rng.randint(0, len(words) - 13)
                    prompt += " " + " ".join(words[s:s + 13])
                row = {"prompt": [{"role": "user", "content": prompt}], "chosen": _text(rng, 20, 60),
                       "rejected": _text(rng, 20, 60), "strength": None, "votes": None, "meta": {}}
                if len(rows) < 5000:
                    rows.append(row)
            f.write(json.dumps(row) + "\n")
            g.write(json.dumps({"index": i, "chosen": rng.gauss(0.5, 1), "rejected": rng.gauss(0, 1)}) + "\n")
            b.write(json.dumps({"index": i, "chosen": rng.gauss(1, 1), "rejected": rng.gauss(0, 1)}) + "\n")


def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _anon_mb() -> float | None:
    """Anonymous (heap) resident memory now, without the pages of memory-mapped Arrow files that peak RSS
    also counts (those are page cache the kernel can drop)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def run_step(step: str, root: Path, num_proc: int | None) -> dict:
    """One measurement (runs in a child process)."""
    import numpy as np

    from rmlib.curation.rules import decontaminate, dedup_pairs, filter_on_scores, search
    from rmlib.curation.rules.table import read_pairs, write_rows

    out = root / f"out_{step}"
    t0 = time.perf_counter()
    extra: dict = {}
    if step == "copy":
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            table = read_pairs(root / "pairs.jsonl", tmp)
            n = write_rows(table, out.with_suffix(".jsonl"), np.ones(len(table), dtype=bool))
    elif step == "dedup":
        rep = dedup_pairs(root / "pairs.jsonl", out, num_proc=num_proc)
        n, extra = rep.n_in, {"removed": dict(rep.removed)}
    elif step == "decontaminate":
        from rmlib.curation import benchmark_index

        index = benchmark_index([f"rewardbench={root / 'bench.jsonl'}"], 13)
        extra["index_seconds"] = round(time.perf_counter() - t0, 3)
        rep = decontaminate(root / "pairs.jsonl", out, index, num_proc=num_proc)
        n, extra["removed"] = rep.n_in, dict(rep.removed)
    elif step == "filter":
        rep = filter_on_scores(root / "pairs.jsonl", out, {"gold": root / "gold.jsonl", "best": root / "best.jsonl"},
                               rules=["agrees:model=gold", "max_confidence:model=best,threshold=0.9"])
        n, extra = rep.n_in, {"removed": dict(rep.removed)}
    elif step.startswith("search_"):
        m = sum(1 for _ in open(root / "pairs.jsonl"))
        rng = np.random.default_rng(0)
        pool = rng.standard_normal((m, 384), dtype=np.float32)
        pool /= np.linalg.norm(pool, axis=1, keepdims=True)
        q = pool[rng.choice(m, 1000, replace=False)] + 0.1 * rng.standard_normal((1000, 384), dtype=np.float32)
        t0 = time.perf_counter()
        sims, idx = search(q, pool, 8, backend=step.removeprefix("search_"))
        n, extra = 1000, {"pool": m, "top1": idx[:, 0][:5].tolist()}
    elif step == "embed":
        from rmlib.curation.embed import Embedder, pair_text

        rows = [json.loads(line) for _, line in zip(range(256), open(root / "pairs.jsonl"))]
        e = Embedder("minilm-l6")
        t0 = time.perf_counter()
        e([pair_text(r["prompt"], r["chosen"], r["rejected"]) for r in rows])
        n = len(rows)
    else:
        raise ValueError(step)
    sec = time.perf_counter() - t0
    return {"step": step, "n": n, "seconds": round(sec, 3), "per_second": round(n / sec, 1),
            "peak_rss_mb": round(_rss(), 1), "anon_rss_mb_at_end": _anon_mb(), **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--num-proc", type=int, default=None, help="map workers (default: the library's choice)")
    ap.add_argument("--quick", action="store_true", help="skip the MiniLM embedding measurement")
    ap.add_argument("--steps", default=None, help="comma-separated subset (e.g. search_numpy,search_faiss); "
                                                  "their rows replace those of the last run with the same --pairs")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the JSON record goes")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_step(args.child[0], Path(args.child[1]), args.num_proc)))
        return
    steps = ["copy", "dedup", "decontaminate", "filter", "search_numpy", "search_faiss"] + ([] if args.quick
                                                                                             else ["embed"])
    if args.steps:
        steps = args.steps.split(",")
    with tempfile.TemporaryDirectory(prefix="rmlib-curation-bench-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        write_data(root, args.pairs)
        print(f"wrote {args.pairs} synthetic pairs in {time.perf_counter() - t:.1f} s", flush=True)
        results = []
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        for step in steps:
            cmd = [sys.executable, __file__, "--child", step, str(root)]
            if args.num_proc:
                cmd += ["--num-proc", str(args.num_proc)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode:
                print(f"{step}: failed\n{proc.stderr[-2000:]}", flush=True)
                continue
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(res)
            print(json.dumps(res), flush=True)
    if args.steps and args.results.exists():
        last = json.loads(args.results.read_text())
        if last.get("pairs") == args.pairs:
            mine = {r["step"] for r in results}
            results = [r for r in last["results"] if r["step"] not in mine] + results
    base = next((r for r in results if r["step"] == "copy"), None)
    for r in results:
        if base and r["step"] in ("dedup", "decontaminate", "filter"):
            r["ratio_to_copy"] = round(r["seconds"] / base["seconds"], 2)
    s = {r["step"]: r for r in results}
    if "search_numpy" in s and "search_faiss" in s:
        s["search_faiss"]["speedup_vs_numpy"] = round(s["search_numpy"]["seconds"] / s["search_faiss"]["seconds"], 2)
    record = {"pairs": args.pairs, "num_proc": args.num_proc, "cpus": os.cpu_count(),
              "load_average_at_end": os.getloadavg(), "results": results}
    args.results.parent.mkdir(exist_ok=True)
    args.results.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\n{'step':<16}{'n':>9}{'seconds':>10}{'per s':>11}{'RSS MB':>9}{'vs copy':>9}")
    for r in results:
        print(f"{r['step']:<16}{r['n']:>9}{r['seconds']:>10}{r['per_second']:>11}{r['peak_rss_mb']:>9}"
              f"{r.get('ratio_to_copy', ''):>9}")
    print(f"written to {args.results}")


if __name__ == "__main__":
    main()
