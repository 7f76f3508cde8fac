"""Reward-server throughput: dynamic batching vs one request at a time, at 1, 8 and 64 clients.

Two ``rmlib serve`` processes on loopback serve the same model: the batching server (default
options: a request waits at most ``--max-wait-ms`` for others to share its model call) and the
baseline, the same server with ``--max-batch-sequences 1 --max-wait-ms 0``, which runs one
request per model call. Each client sends ``POST /score`` requests of one (prompt, response) of
mixed length, one after the other; ``--requests`` requests in all per measurement, split between
the clients. Requests/s is requests over wall time; latencies are per request (p50, p99); the
share of wall time the server spent in the model (its ``/health`` gauge) shows how much of a
request is model work that batching can share and how much is HTTP, JSON and tokenizing, which it
cannot. The servers alternate for ``--repeats`` rounds and the median is reported with the min-max
spread of the ratio.

    python bench/serve_throughput.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "serve_throughput.json"
WORDS = "the a of to and is in that it for on with as you what how answer question number sum list".split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_requests(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)

    def text(lo, hi):
        return " ".join(rng.choice(WORDS) for _ in range(int(min(hi, max(lo, rng.lognormvariate(3.0, 0.7))))))

    return [{"prompt": text(4, 120), "response": text(2, 160)} for _ in range(n)]


def start_server(model: str, extra: list[str], device: str, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = tempfile.TemporaryFile()  # the server's log, shown if it fails (a pipe nobody reads would fill up)
    proc = subprocess.Popen([sys.executable, "-m", "rmlib", "serve", model, "--port", str(port), "--device", device,
                             *extra], stdout=subprocess.DEVNULL, stderr=log,
                            env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.time() + 180
    while True:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited: {log.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError("server did not start in 180 s")
        time.sleep(0.3)


def model_seconds(url: str) -> float:
    """Seconds the server has spent in the model since it started (its /health gauge)."""
    import httpx

    return httpx.get(f"{url}/health", timeout=30).json()["model_seconds"]


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, body: bytes) -> bytes:
    """One HTTP/1.1 keep-alive POST /score on an open connection; returns the response body."""
    writer.write(b"POST /score HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    data = await reader.readexactly(length)
    if status != b"200":
        raise RuntimeError(f"HTTP {status.decode()}: {data[:300]!r}")
    return data


async def load(url: str, requests: list[dict], clients: int) -> dict:
    """``clients`` concurrent clients sending ``requests`` between them; bounded, loopback only.

    Each client holds one keep-alive connection and writes HTTP/1.1 by hand: httpx's async pool
    tops out near 80 requests/s at 64 connections on 2 cores (measured on ``/health``), which
    would measure the client instead of the server.
    """
    host = url.removeprefix("http://")
    name, port = host.rsplit(":", 1)
    latencies: list[float] = []
    queue = [json.dumps(r).encode() for r in reversed(requests)]

    async def client() -> None:
        reader, writer = await asyncio.open_connection(name, int(port))
        try:
            while queue:
                body = queue.pop()
                t0 = time.perf_counter()
                json.loads(await _post(reader, writer, host, body))
                latencies.append(time.perf_counter() - t0)
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    latencies.sort()
    return {"requests_per_s": len(requests) / wall, "wall_s": wall,
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model to serve (default: a random-init Llama built here)")
    p.add_argument("--hidden", type=int, default=64, help="hidden size of the built model")
    p.add_argument("--layers", type=int, default=2, help="layers of the built model")
    p.add_argument("--server-threads", type=int, default=1,
                   help="torch threads per server (OMP_NUM_THREADS); the clients share the same cores")
    p.add_argument("--clients", default="1,8,64")
    p.add_argument("--requests", type=int, default=384, help="requests per measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="fewer requests and rounds (about two minutes on 2 cores)")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args()
    if a.quick:
        a.requests, a.repeats = 192, 2
    clients = [int(c) for c in a.clients.split(",")]
    tmp = tempfile.TemporaryDirectory()
    model = a.model
    if model is None:
        from rmlib.testing import build_tiny_llama

        model = str(build_tiny_llama(Path(tmp.name) / "model", hidden_size=a.hidden, layers=a.layers, heads=4,
                                     kv_heads=2, intermediate_size=a.hidden * 4))
    requests = make_requests(a.requests)
    servers = {"batched": ["--max-wait-ms", str(a.max_wait_ms)],
               "one_at_a_time": ["--max-batch-sequences", "1", "--max-wait-ms", "0"]}
    procs = {}
    try:
        for name, extra in servers.items():
            procs[name] = start_server(model, extra, a.device, a.server_threads)
        runs: dict[str, dict[int, list[dict]]] = {n: {c: [] for c in clients} for n in servers}
        for c in clients:
            for name in servers:  # warm-up: first calls allocate and compile kernels
                asyncio.run(load(procs[name][1], requests[:min(32, len(requests))], c))
            for _ in range(a.repeats):
                for name in servers:
                    url = procs[name][1]
                    before = model_seconds(url)
                    run = asyncio.run(load(url, requests, c))
                    run["model_share"] = (model_seconds(url) - before) / run["wall_s"]
                    runs[name][c].append(run)
    finally:
        for proc, _ in procs.values():
            stop(proc)
    rows = []
    for c in clients:
        row = {"clients": c}
        for name in servers:
            rps = [r["requests_per_s"] for r in runs[name][c]]
            row[name] = {"requests_per_s": statistics.median(rps), "requests_per_s_range": [min(rps), max(rps)],
                         "p50_ms": statistics.median(r["p50_ms"] for r in runs[name][c]),
                         "p99_ms": statistics.median(r["p99_ms"] for r in runs[name][c]),
                         "model_share": statistics.median(r["model_share"] for r in runs[name][c])}
        ratios = [b["requests_per_s"] / o["requests_per_s"] for b, o in zip(runs["batched"][c], runs["one_at_a_time"][c])]
        row["speedup"] = statistics.median(ratios)
        row["speedup_range"] = [min(ratios), max(ratios)]
        rows.append(row)
        b, o = row["batched"], row["one_at_a_time"]
        print(f"{c:>3} clients: batched {b['requests_per_s']:7.1f} req/s (p50 {b['p50_ms']:6.1f} ms, p99 "
              f"{b['p99_ms']:6.1f} ms) | one at a time {o['requests_per_s']:7.1f} req/s (p50 {o['p50_ms']:6.1f} ms, "
              f"p99 {o['p99_ms']:6.1f} ms) | {row['speedup']:.2f}x ({row['speedup_range'][0]:.2f}-"
              f"{row['speedup_range'][1]:.2f}) | time in the model {b['model_share']:.0%} vs {o['model_share']:.0%}")
    import torch

    result = {"rows": rows, "requests": a.requests, "repeats": a.repeats, "model": a.model or
              f"random-init Llama hidden={a.hidden} layers={a.layers}", "device": a.device,
              "max_wait_ms": a.max_wait_ms, "server_threads": a.server_threads,
              "load_average": os.getloadavg(), "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                        "torch": torch.__version__}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
