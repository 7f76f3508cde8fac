"""Reward-server throughput: dynamic batching vs one request at a time, at 1, 8 and 64 clients.

Two ``rmlib serve`` processes on loopback serve the same model: the batching server (default
options: a request waits at most ``--max-wait-ms`` for others to share its model call) and the
baseline, the same server with ``--max-batch-sequences 1 --max-wait-ms 0``, which tokenizes and
scores one request per call. Each client sends ``POST /score`` requests of one (prompt, response)
of mixed length, one after the other on a keep-alive connection; ``--requests`` requests in all per
measurement, split between the clients, the same requests for both servers. Requests/s is
requests over wall time; latencies are per request (p50, p99). The servers alternate for
``--repeats`` rounds; the median is reported with the min-max spread of the ratio.

The model is the bundled MiniLM-L6 (``minilm-l6``, 22.7M parameters, 6 layers) by default: a
reward model's cost is its forward pass, and a model too small for that measures HTTP instead.
``--model tiny`` serves a random-init Llama (hidden 64, 2 layers) for the overhead-bound case.
Prompts and responses are chat turns of a few dozen words (lognormal, median about 33 and 67
words, about 128 MiniLM tokens together): realistic RLHF responses are longer, but on 2 CPU cores each
of those costs seconds, and longer sequences only make the forward a larger share.

Where the time goes, per request, from the servers' ``/health`` gauges and this process's CPU
clock: ``model_ms`` (forward passes: batch 1 for the baseline), ``encode_ms`` (tokenizing),
``other_ms`` (the rest of the wall time per request: HTTP, JSON, routing, and the CPU the
clients take on the same cores) and ``client_cpu_ms`` (the clients' own CPU time). ``ceiling`` at
each client count is the baseline's wall time per request over the batched server's non-model
time per request: the ratio batching could reach if its forward passes cost nothing.

    python bench/serve_throughput.py --quick
    python bench/serve_throughput.py --model tiny --requests 384
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
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

    def text(median, lo, hi):
        return " ".join(rng.choice(WORDS) for _ in range(int(min(hi, max(lo, rng.lognormvariate(math.log(median),
                                                                                               0.6))))))

    return [{"prompt": text(33, 6, 200), "response": text(67, 4, 300)} for _ in range(n)]


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


def gauges(url: str) -> dict:
    """Seconds the server has spent in the model and tokenizing since it started (/health)."""
    import httpx

    health = httpx.get(f"{url}/health", timeout=30).json()
    return {"model": health["model_seconds"], "encode": health["encode_seconds"], "batches": health["batches"]}


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

    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    latencies.sort()
    return {"requests_per_s": len(requests) / wall, "wall_s": wall, "client_cpu_ms": 1000 * cpu / len(requests),
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm-l6",
                   help="model to serve; `tiny`: a random-init Llama built here (--hidden, --layers)")
    p.add_argument("--hidden", type=int, default=64, help="hidden size of the tiny model")
    p.add_argument("--layers", type=int, default=2, help="layers of the tiny model")
    p.add_argument("--server-threads", type=int, default=1,
                   help="torch threads per server (OMP_NUM_THREADS); the clients share the same cores")
    p.add_argument("--clients", default="1,8,64")
    p.add_argument("--requests", type=int, default=128, help="requests per measurement")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="64 requests, 1 round (a few minutes on 2 cores)")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args()
    if a.quick:
        a.requests, a.repeats = 64, 1
    clients = [int(c) for c in a.clients.split(",")]
    tmp = tempfile.TemporaryDirectory()
    model = a.model
    if model == "tiny":
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
            # warm-up: the first calls allocate and pick kernels
            asyncio.run(load(procs[name][1], make_requests(16, seed=1), 8))
        runs: dict[str, dict[int, list[dict]]] = {n: {c: [] for c in clients} for n in servers}
        for c in clients:
            for _ in range(a.repeats):
                for name in servers:
                    url = procs[name][1]
                    before = gauges(url)
                    run = asyncio.run(load(url, requests, c))
                    after = gauges(url)
                    n = len(requests)
                    run["model_ms"] = 1000 * (after["model"] - before["model"]) / n
                    run["encode_ms"] = 1000 * (after["encode"] - before["encode"]) / n
                    run["other_ms"] = 1000 * run["wall_s"] / n - run["model_ms"] - run["encode_ms"]
                    run["sequences_per_batch"] = n / max(1, after["batches"] - before["batches"])
                    runs[name][c].append(run)
    finally:
        for proc, _ in procs.values():
            stop(proc)
    rows = []
    keys = ("p50_ms", "p99_ms", "model_ms", "encode_ms", "other_ms", "client_cpu_ms", "sequences_per_batch")
    for c in clients:
        row: dict = {"clients": c}
        for name in servers:
            rps = [r["requests_per_s"] for r in runs[name][c]]
            row[name] = {"requests_per_s": statistics.median(rps), "requests_per_s_range": [min(rps), max(rps)],
                         **{k: statistics.median(r[k] for r in runs[name][c]) for k in keys}}
        ratios = [b["requests_per_s"] / o["requests_per_s"] for b, o in zip(runs["batched"][c], runs["one_at_a_time"][c])]
        row["speedup"] = statistics.median(ratios)
        row["speedup_range"] = [min(ratios), max(ratios)]
        b, o = row["batched"], row["one_at_a_time"]
        row["ceiling"] = (1000 / o["requests_per_s"]) / (b["encode_ms"] + b["other_ms"])
        rows.append(row)
        print(f"{c:>3} clients: batched {b['requests_per_s']:7.1f} req/s (p50 {b['p50_ms']:6.1f} ms, p99 "
              f"{b['p99_ms']:6.1f} ms) | one at a time {o['requests_per_s']:7.1f} req/s (p50 {o['p50_ms']:6.1f} ms, "
              f"p99 {o['p99_ms']:6.1f} ms) | {row['speedup']:.2f}x ({row['speedup_range'][0]:.2f}-"
              f"{row['speedup_range'][1]:.2f}), ceiling {row['ceiling']:.2f}x")
        for name, r in (("batched", b), ("one at a time", o)):
            print(f"      {name:>13} ms/request: model {r['model_ms']:6.2f}, tokenize {r['encode_ms']:5.2f}, other "
                  f"{r['other_ms']:5.2f} (clients' CPU {r['client_cpu_ms']:4.2f}); {r['sequences_per_batch']:.1f} "
                  f"sequences per batch")
    import torch

    result = {"rows": rows, "requests": a.requests, "repeats": a.repeats,
              "model": a.model if a.model != "tiny" else f"random-init Llama hidden={a.hidden} layers={a.layers}",
              "request_words": {"prompt_median": 33, "response_median": 67}, "device": a.device,
              "max_wait_ms": a.max_wait_ms, "server_threads": a.server_threads,
              "load_average": os.getloadavg(), "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                        "torch": torch.__version__},
              "command": "python " + " ".join(sys.argv)}
    from rmlib.io import write_text

    write_text(json.dumps(result, indent=2) + "\n", a.out)
    print(f"wrote {a.out}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
