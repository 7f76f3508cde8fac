"""The same inputs scored by transformers, by ``rmlib serve`` and by vLLM's pooling runner: matching rewards.

Why: an RL loop reads its reward from a server, and the model card promises that transformers, vLLM
and ``rmlib serve`` give the reward rmlib trained. This script checks the promise end to end on one
model directory (default: a random-init one-output Llama, hidden 256, built here):

1. ``transformers``: ``AutoModelForSequenceClassification`` on the ids of
   ``tokenizer.apply_chat_template(conversation)``, one conversation at a time (the card's recipe):
   the reference;
2. ``serve_score`` and ``serve_get_reward``: ``python -m rmlib serve DIR`` as a subprocess on a free
   loopback port, the pairs as one ``POST /score`` list and as OpenRLHF's rendered queries through
   ``POST /get_reward``;
3. ``vllm``: ``vllm.LLM(DIR, runner="pooling", convert="classify")`` on the same token ids, raw
   outputs (activation off); skipped, and reported as skipped, when ``import vllm`` fails.

Each scorer passes when ``max |reward - reference| <= tol · max(1, max |reference|)``, ``tol`` being
1e-4 in float32 and 5e-2 in bfloat16/float16 (the tolerance of the score invariance tests). Writes
``--out`` (JSON) and exits 1 when a scorer that ran does not match.

    python bench/serve_parity.py                          # CPU: transformers and rmlib serve
    python bench/serve_parity.py --device cuda            # the GPU check's step (vLLM if installed)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2, "float16": 5e-2}


def conversations(n: int) -> list[list[dict[str, str]]]:
    """``n`` deterministic conversations of varied lengths, some with a system message or two turns."""
    import random

    rng = random.Random(0)
    words = "the sea sky blue answer question seven prime paris list sort kind word river stone light".split()
    out = []
    for i in range(n):
        def text(lo, hi):
            return " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))
        conv = [{"role": "system", "content": text(3, 12)}] if i % 3 == 0 else []
        if i % 4 == 1:
            conv += [{"role": "user", "content": text(2, 10)}, {"role": "assistant", "content": text(2, 10)}]
        conv += [{"role": "user", "content": text(3, 40)}, {"role": "assistant", "content": text(1, 80)}]
        out.append(conv)
    return out


def check(name: str, got, ref, dtype: str) -> dict:
    import numpy as np

    got, ref = np.asarray(got, dtype=float), np.asarray(ref, dtype=float)
    diff = float(np.abs(got - ref).max()) if len(ref) else 0.0
    allowed = TOLERANCE[dtype] * max(1.0, float(np.abs(ref).max()) if len(ref) else 1.0)
    return {"status": "passed" if diff <= allowed else "failed", "max_abs_diff": diff, "allowed": allowed,
            "dtype": dtype, "rewards": [round(float(x), 6) for x in got[:4]]}


def spread_head(model_dir: Path, scale: float = 30.0) -> Path:
    """Scale a random-init head so rewards spread over a few units: a reward read at the wrong token then
    misses by far more than the bfloat16 tolerance (a random head's rewards all lie within about 0.1)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():
        model.score.weight.mul_(scale)
    model.save_pretrained(model_dir)
    return model_dir


def transformers_rewards(model_dir: Path, convs, device: str, dtype: str) -> tuple[list[float], list[list[int]]]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rmlib.io import torch_dtype

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch_dtype(dtype)).to(device).eval()
    ids = [tok.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"] for c in convs]
    with torch.no_grad():
        rewards = [model(input_ids=torch.tensor([x], device=device)).logits[0, 0].float().item() for x in ids]
    return rewards, ids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body) -> object:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def serve_rewards(model_dir: Path, convs, device: str, dtype: str, timeout: float) -> tuple[list, list, dict]:
    """Rewards from a real ``rmlib serve`` subprocess: ``/score`` and ``/get_reward``, then its ``/health``."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rmlib", "serve", str(model_dir), "--port", str(port),
                             "--device", device, "--dtype", dtype],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"rmlib serve exited with {proc.returncode}: {proc.stdout.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if time.time() > deadline:
                    raise TimeoutError(f"rmlib serve did not answer /health within {timeout:.0f} s") from None
                time.sleep(0.3)
        items = [{"prompt": c[:-1], "response": c[-1]["content"]} for c in convs]
        score = [row["reward"] for row in _post(f"{url}/score", items)]
        queries = [tok.apply_chat_template(c, tokenize=False) for c in convs]
        prompts = [tok.apply_chat_template(c[:-1], tokenize=False, add_generation_prompt=True) for c in convs]
        rl = _post(f"{url}/get_reward", {"query": queries, "prompts": prompts})["rewards"]
        with urllib.request.urlopen(f"{url}/health", timeout=10) as r:
            health = json.loads(r.read())
        return score, rl, health
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def vllm_rewards(model_dir: Path, ids: list[list[int]], dtype: str) -> list[float]:
    """vLLM's pooling runner on the reference's token ids, raw classifier outputs (no activation)."""
    from vllm import LLM, PoolingParams

    llm = LLM(model=str(model_dir), runner="pooling", convert="classify", dtype=dtype, enforce_eager=True,
              gpu_memory_utilization=0.3, max_model_len=2048)
    try:
        params = PoolingParams(use_activation=False)  # vLLM >= 0.11.2
    except TypeError:
        params = PoolingParams(activation=False)
    outs = llm.classify([{"prompt_token_ids": x} for x in ids], pooling_params=params, use_tqdm=False)
    return [float(o.outputs.probs[0]) for o in outs]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (vLLM runs only with cuda)")
    ap.add_argument("--model", default=None, help="a one-output reward model directory (default: build a tiny Llama)")
    ap.add_argument("--workdir", default="/tmp/rmlib_serve_parity", help="where the default model is built")
    ap.add_argument("--hidden", type=int, default=256, help="hidden size of the built model")
    ap.add_argument("--layers", type=int, default=2, help="layers of the built model")
    ap.add_argument("--n", type=int, default=24, help="conversations scored")
    ap.add_argument("--dtype", default="float32", choices=sorted(TOLERANCE),
                    help="dtype of transformers and rmlib serve")
    ap.add_argument("--vllm-dtype", default="bfloat16", choices=sorted(TOLERANCE), help="dtype vLLM runs in")
    ap.add_argument("--serve-timeout", type=float, default=90.0, help="seconds rmlib serve may take to start")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_parity.json"))
    args = ap.parse_args(argv)

    if args.model:
        model_dir = Path(args.model)
    else:
        from rmlib.testing import build_tiny_llama

        model_dir = spread_head(build_tiny_llama(Path(args.workdir) / "model", hidden_size=args.hidden,
                                                 layers=args.layers, heads=4, kv_heads=2,
                                                 intermediate_size=2 * args.hidden))
    convs = conversations(args.n)
    t0 = time.perf_counter()
    ref, ids = transformers_rewards(model_dir, convs, args.device, args.dtype)
    import statistics

    report: dict = {"meta": {"model": str(model_dir), "device": args.device, "n": len(convs),
                             "tokens": [min(map(len, ids)), max(map(len, ids))],
                             "reference_std": round(statistics.pstdev(ref), 4)},
                    "transformers": {"status": "reference", "dtype": args.dtype, "rewards": [round(x, 6) for x in ref[:4]],
                                     "seconds": round(time.perf_counter() - t0, 1)}}
    t0 = time.perf_counter()
    try:
        score, rl, health = serve_rewards(model_dir, convs, args.device, args.dtype, args.serve_timeout)
        report["serve_score"] = check("serve_score", score, ref, args.dtype)
        report["serve_get_reward"] = check("serve_get_reward", rl, ref, args.dtype)
        report["serve_score"]["truncated"] = health.get("truncated")
    except Exception as e:  # noqa: BLE001 - reported, and the step fails
        report["serve_score"] = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
    report["serve_score"]["seconds"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        report["vllm"] = {"status": "skipped", "reason": f"vllm is not installed ({e})"}
    else:
        if args.device != "cuda":
            report["vllm"] = {"status": "skipped", "reason": "vLLM's pooling runner runs on --device cuda here"}
        else:
            try:
                report["vllm"] = check("vllm", vllm_rewards(model_dir, ids, args.vllm_dtype), ref, args.vllm_dtype)
            except Exception as e:  # noqa: BLE001 - an API or engine failure is a failed check, with its reason
                report["vllm"] = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
        report["vllm"]["seconds"] = round(time.perf_counter() - t0, 1)
    scorers = {k: v for k, v in report.items() if k not in ("meta", "transformers")}
    report["passed"] = all(v["status"] in ("passed", "skipped") for v in scorers.values())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for name, v in scorers.items():
        detail = v.get("reason") or f"max |diff| {v['max_abs_diff']:.2g} (allowed {v['allowed']:.2g}, {v['dtype']})"
        print(f"{name:<17} {v['status']:<8} {detail}")
    print(f"wrote {out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
