"""Annotated pairs per second of `rmlib data annotate` at 1, 8 and 64 in-flight requests, against a loopback server.

The server is a fake LLM (a FastAPI app under uvicorn, in its own process on a free 127.0.0.1 port) that
answers every chat completion with a valid annotation JSON after a fixed latency (default 20 ms), so the
figures measure the client: request concurrency, retries bookkeeping, the journal (a flushed line per
answer, fsync'd every 64), parsing and writing the outputs, not an LLM. With a latency L and c requests in
flight the ceiling is c / L pairs/s (50/s at c = 1 and 20 ms); the ratio to c = 1, measured in the same run,
shows how much of that the client reaches. Two rates per level: over the whole step (reading the input into
Arrow, asking, parsing, writing the outputs) and over the asking phase alone.

    python bench/annotate_throughput.py                       # 2,000 pairs per level, 20 ms
    python bench/annotate_throughput.py --pairs 2000 --latency 0.05
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "annotate_throughput.json"
ANSWER = json.dumps({"task_category": "factual question", "objectivity": "objective", "controversiality": "low",
                     "desired_attributes": ["correct"], "annotation_guideline": "The right fact wins.",
                     "preferred": 1, "strength": 2})


def serve(port: int, latency: float) -> None:
    import asyncio

    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        await asyncio.sleep(latency)
        return {"id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", backlog=4096)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the fake LLM server exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the fake LLM server did not start")


def write_pairs(path: Path, n: int) -> None:
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"prompt": [{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}],
                                 "chosen": f"It is {2 * i}.", "rejected": f"It is {2 * i + 1}.", "strength": None,
                                 "votes": None, "meta": {"id": i}}) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=0.02, help="the fake server's seconds per answer")
    ap.add_argument("--concurrency", default="1,8,64")
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        serve(args.serve, args.latency)
        return
    from rmlib.curation.annotate import annotate_pairs

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--latency", str(args.latency)])
    rows = []
    try:
        wait_for(port, server)
        with tempfile.TemporaryDirectory(prefix="rmlib-annotate-bench-") as tmp:
            src = Path(tmp) / "pairs.jsonl"
            write_pairs(src, args.pairs)
            for c in (int(x) for x in args.concurrency.split(",")):
                start = time.perf_counter()
                rep = annotate_pairs(src, Path(tmp) / f"out_{c}", endpoint=f"http://127.0.0.1:{port}/v1", model="bench",
                                     concurrency=c, max_consecutive_failures=0)
                wall = time.perf_counter() - start
                req = rep.extra["requests"]
                assert rep.n_out == args.pairs and req["answered"] == args.pairs and not req["retried"], rep.to_dict()
                rows.append({"concurrency": c, "pairs": args.pairs, "seconds": round(wall, 3),
                             "pairs_per_s": round(args.pairs / wall, 2), "asking_seconds": req["seconds"],
                             "asking_pairs_per_s": req["answered_per_second"],
                             "ceiling_pairs_per_s": round(c / args.latency, 1)})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        server.terminate()
        server.wait(10)
    base = rows[0]
    for r in rows:
        r["vs_first"] = round(r["pairs_per_s"] / base["pairs_per_s"], 2)
        r["asking_vs_first"] = round(r["asking_pairs_per_s"] / base["asking_pairs_per_s"], 2)
    out = {"benchmark": "annotate_throughput", "server": f"fake LLM, FastAPI/uvicorn in its own process, "
                                                         f"{args.latency * 1000:g} ms per answer",
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "load_avg_1m": round(os.getloadavg()[0], 2)}, "rows": rows}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(out, indent=2) + "\n")
    print(f"{'in flight':>9} {'pairs/s':>8} {'vs 1':>5} {'asking/s':>9} {'vs 1':>5} {'ceiling':>8}")
    for r in rows:
        print(f"{r['concurrency']:>9} {r['pairs_per_s']:>8} {r['vs_first']:>5} {r['asking_pairs_per_s']:>9} "
              f"{r['asking_vs_first']:>5} {r['ceiling_pairs_per_s']:>8}")


if __name__ == "__main__":
    main()
