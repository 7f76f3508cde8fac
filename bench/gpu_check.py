"""Every GPU check of rmlib in one command, for a single-GPU machine, in under 9 minutes.

Why one script: GPU time is rare and short for this project, so the checks that need a GPU are
prepared here, each with its own time limit (a slow step is stopped and reported, the others still
run), and the results land in one JSON and one Markdown table under ``bench/results/gpu/``:

1. ``env``: the device, torch/CUDA versions, flash-attn and bitsandbytes availability;
2. ``gpu_tests``: every test marked ``gpu`` (``pytest -m gpu``); tests that need what one GPU
   machine does not have (two GPUs for FSDP, flash-attn, libaio for NVMe offload) skip themselves
   and are listed with their reasons;
3. ``train_mfu``: ``bench/train_throughput.py --device cuda`` at a ~0.7B Llama config (hidden 2048,
   16 layers, bf16 autocast), reporting MFU for rmlib and TRL;
4. ``score``: ``bench/score_throughput.py --device cuda --dtype bfloat16`` (length-sorted scoring
   and shared-prompt best-of-N against fixed unsorted batches);
5. ``serve``: ``bench/serve_throughput.py --device cuda --quick``: the reward server at 1, 8 and 64
   concurrent clients against a one-request-at-a-time server (the 4x target needs a GPU);
6. ``memory_8b``: ``bench/memory_shapes.py --device cuda``: LoRA/QLoRA peak memory at the
   Llama-3.1-8B layer shape and 4k tokens per sequence, 1/2/4 layers extrapolated to 32, against
   the ``rmlib plan`` estimator (``torch.cuda.max_memory_allocated`` instead of CPU profiler events);
7. ``serve_parity``: ``bench/serve_parity.py --device cuda``: the same conversations scored by
   transformers (the reference), by ``rmlib serve`` (``/score`` and ``/get_reward``) and, when
   ``import vllm`` works, by vLLM's pooling runner; the rewards must match (1e-4 in float32, vLLM in
   bfloat16 within 5e-2 of the reward scale). Without vLLM that scorer is skipped and the step says so.

    python bench/gpu_check.py --dry-run     # any machine: checks the plan, the commands and the time limits
    python bench/gpu_check.py               # on the GPU machine (after pip install -e ".[dev]")
    bash bench/gpu_check.sh                 # the same

The dry run checks, without a GPU, that every step's script exists and accepts the options the
plan passes (from its ``--help``), that every step has a positive time limit and that the limits
add up to at most the total budget (``--budget``, 540 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "results" / "gpu"
BUDGET_S = 540  # 9 minutes for everything
PY = sys.executable


@dataclass
class Step:
    """One check: a command, the time it may take, and what it produced."""

    name: str
    what: str
    cmd: list[str]
    limit_s: int
    needs: list[str] = field(default_factory=list)  # "cuda", "flash_attn", "2gpu", ... (plan-time skips)
    status: str = "planned"  # passed | failed | timeout | skipped
    seconds: float = 0.0
    reason: str = ""
    summary: dict = field(default_factory=dict)


def plan(out_dir: Path, work: Path) -> list[Step]:
    """The steps and their time limits (seconds). The limits sum to less than ``BUDGET_S`` with
    room for process starts; ``check_plan`` enforces it."""
    gpu_tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                       if "mark.gpu" in p.read_text())
    return [
        Step("env", "device and library versions", [PY, __file__, "--env"], 20),
        Step("gpu_tests", "every test marked gpu (pytest -m gpu)",
             [PY, "-m", "pytest", "-q", "-m", "gpu", "-rs", "-p", "no:cacheprovider",
              f"--junitxml={out_dir / 'gpu_tests.xml'}", *gpu_tests], 90, ["cuda"]),
        Step("train_mfu", "training throughput and MFU, ~0.7B Llama, bf16, rmlib vs TRL",
             [PY, "bench/train_throughput.py", "--device", "cuda", "--hidden", "2048", "--layers", "16",
              "--pairs", "256", "--batch", "16", "--scale", "1.0", "--repeats", "1", "--rounds", "2",
              "--gradient-checkpointing", "off", "--out", str(out_dir / "train_throughput.json")], 130, ["cuda"]),
        Step("score", "scoring throughput (RewardModel.score vs fixed batches)",
             [PY, "bench/score_throughput.py", "--quick", "--device", "cuda", "--dtype", "bfloat16",
              "--out", str(out_dir / "score_throughput.json")], 40, ["cuda"]),
        Step("serve", "reward server at 1/8/64 clients vs one request at a time (the 4x target)",
             [PY, "bench/serve_throughput.py", "--device", "cuda", "--quick",
              "--out", str(out_dir / "serve_throughput.json")], 50, ["cuda"]),
        Step("memory_8b", "LoRA/QLoRA peak memory, Llama-3.1-8B layer shape, 4k tokens, 1/2/4 layers",
             [PY, "bench/memory_shapes.py", "--device", "cuda", "--archs", "llama8b", "--layers", "1", "2", "4",
              "--modes", "qlora", "lora", "--gc", "on", "off", "--seq-len", "4096",
              "--workdir", str(work / "memory_shapes"), "--out", str(out_dir / "memory_shapes.json")],
             140, ["cuda", "bitsandbytes"]),
        Step("serve_parity", "the same inputs through transformers, rmlib serve and vLLM's pooling runner: "
                             "matching rewards (vLLM skipped when not installed)",
             [PY, "bench/serve_parity.py", "--device", "cuda", "--workdir", str(work / "serve_parity"),
              "--out", str(out_dir / "serve_parity.json")], 60, ["cuda"]),
    ]


def _help(cmd: list[str]) -> str | None:
    """The ``--help`` text of a step's script (None for pytest and this script)."""
    if len(cmd) < 2 or not cmd[1].endswith(".py") or Path(cmd[1]).resolve() == Path(__file__).resolve():
        return None
    r = subprocess.run([cmd[0], cmd[1], "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": os.environ.get(
                           "CUDA_VISIBLE_DEVICES", "")})
    return r.stdout if r.returncode == 0 else None


def check_plan(steps: list[Step], budget_s: int = BUDGET_S, *, check_options: bool = True) -> list[str]:
    """Problems with the plan (empty when it is runnable): missing scripts, options a script does
    not accept, non-positive limits, limits over the budget."""
    problems = []
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        problems.append(f"duplicate step names: {names}")
    for s in steps:
        if s.limit_s <= 0:
            problems.append(f"{s.name}: time limit {s.limit_s} s is not positive")
        if len(s.cmd) > 1 and s.cmd[1].endswith(".py") and not (ROOT / s.cmd[1]).exists() \
                and not Path(s.cmd[1]).exists():
            problems.append(f"{s.name}: {s.cmd[1]} does not exist")
        if check_options:
            text = _help(s.cmd)
            if text is not None:
                missing = [o for o in s.cmd[2:] if o.startswith("--") and "=" not in o and o not in text]
                if missing:
                    problems.append(f"{s.name}: {s.cmd[1]} does not accept {missing}")
    total = sum(s.limit_s for s in steps)
    if total > budget_s:
        problems.append(f"time limits add up to {total} s, over the {budget_s} s budget")
    return problems


def environment() -> dict:
    """What the machine offers; each missing piece explains a skip."""
    import importlib.util

    info: dict = {"python": platform.python_version(), "machine": platform.machine()}
    try:
        import torch

        info.update(torch=torch.__version__, cuda_available=torch.cuda.is_available(),
                    gpus=torch.cuda.device_count(), cuda=torch.version.cuda)
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported())
    except ImportError:
        info.update(torch=None, cuda_available=False, gpus=0)
    info["flash_attn"] = importlib.util.find_spec("flash_attn") is not None
    info["bitsandbytes"] = importlib.util.find_spec("bitsandbytes") is not None
    info["vllm"] = importlib.util.find_spec("vllm") is not None
    info["libaio"] = bool(shutil.which("ldconfig") and "libaio" in subprocess.run(
        ["ldconfig", "-p"], capture_output=True, text=True).stdout)
    return info


def plan_skips(steps: list[Step], env: dict) -> None:
    """Mark the steps the machine cannot run, with why (before anything runs)."""
    for s in steps:
        if "cuda" in s.needs and not env.get("cuda_available"):
            s.status, s.reason = "skipped", "no CUDA device"
        elif "bitsandbytes" in s.needs and not env.get("bitsandbytes"):
            s.status, s.reason = "skipped", "bitsandbytes not installed (QLoRA points need it)"


def expected_test_skips(env: dict) -> list[str]:
    """Why some gpu tests will skip on this machine (they skip themselves; this is the preview)."""
    out = []
    if env.get("gpus", 0) < 2:
        out.append(f"FSDP test: needs 2 GPUs (this machine has {env.get('gpus', 0)})")
    if not env.get("flash_attn"):
        out.append("flash-attention varlen test: flash-attn is not installed")
    if not env.get("libaio"):
        out.append("ZeRO-3 NVMe offload test: libaio not found (DeepSpeed async_io)")
    if not env.get("vllm"):
        out.append("serve_parity: vLLM's scorer is skipped, vllm is not installed (transformers and rmlib serve run)")
    return out


def summarise(step: Step, out_dir: Path, stdout: str) -> dict:
    """The few numbers each step is for, read from the files it wrote."""
    try:
        if step.name == "env":
            return json.loads(stdout.strip().splitlines()[-1])
        if step.name == "gpu_tests":
            root = ET.parse(out_dir / "gpu_tests.xml").getroot()
            cases = root.iter("testcase")
            res: dict = {"passed": [], "failed": [], "skipped": []}
            for c in cases:
                name = f"{c.get('classname', '').split('.')[-1]}::{c.get('name')}"
                sk, fl = c.find("skipped"), c.find("failure") if c.find("failure") is not None else c.find("error")
                if sk is not None:
                    res["skipped"].append(f"{name}: {sk.get('message', '')}")
                elif fl is not None:
                    res["failed"].append(name)
                else:
                    res["passed"].append(name)
            return res
        if step.name == "train_mfu":
            d = json.loads((out_dir / "train_throughput_detail.json").read_text())
            key = d["meta"]["headline"]
            return {n: {"rmlib_pairs_per_s": r["rmlib"]["pairs_per_s"], "trl_pairs_per_s": r["trl"]["pairs_per_s"],
                        "rmlib_mfu": r["rmlib"].get("mfu"), "trl_mfu": r["trl"].get("mfu"),
                        "peak_memory_ratio": r["peak_memory_ratio"]} for n, r in d[key].items()} | {
                "params": d["meta"]["model"]["params"]}
        if step.name == "score":
            return json.loads((out_dir / "score_throughput.json").read_text())
        if step.name == "serve":
            return json.loads((out_dir / "serve_throughput.json").read_text())
        if step.name == "serve_parity":
            d = json.loads((out_dir / "serve_parity.json").read_text())
            return {k: {f: v[f] for f in ("status", "max_abs_diff", "allowed", "reason") if f in v}
                    for k, v in d.items() if isinstance(v, dict) and k not in ("meta", "transformers")}
        if step.name == "memory_8b":
            d = json.loads((out_dir / "memory_shapes.json").read_text())
            return {"max_abs_error_measured": d["analysis"]["max_abs_error_measured"],
                    "groups": [{k: g.get(k) for k in ("arch", "mode", "gradient_checkpointing", "extrapolated_gib",
                                                      "estimate_full_gib", "error_full")}
                               for g in d["analysis"]["groups"]]}
    except (OSError, ValueError, KeyError, ET.ParseError, IndexError) as e:
        return {"unreadable": f"{type(e).__name__}: {e}"}
    return {}


def run_step(step: Step, out_dir: Path) -> None:
    """Run one step under its own time limit; a timeout kills its whole process group."""
    if step.status == "skipped":
        return
    t0 = time.perf_counter()
    log = out_dir / f"{step.name}.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(step.cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=f, text=True,
                                start_new_session=True, env={**os.environ, "HF_HUB_OFFLINE": "1",
                                                             "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"})
        try:
            stdout, _ = proc.communicate(timeout=step.limit_s)
            step.status = "passed" if proc.returncode == 0 else "failed"
            if proc.returncode != 0:
                step.reason = f"exit code {proc.returncode} (see {log.name})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            stdout, _ = proc.communicate()
            step.status, step.reason = "timeout", f"stopped after its {step.limit_s} s limit (partial output kept)"
        f.write("\n--- stdout ---\n" + (stdout or ""))
    step.seconds = round(time.perf_counter() - t0, 1)
    step.summary = summarise(step, out_dir, stdout or "")
    if step.name == "gpu_tests" and step.summary.get("failed"):
        step.status = "failed"
    skipped = [f"{k}: {v['reason']}" for k, v in step.summary.items() if isinstance(v, dict)
               and v.get("status") == "skipped"] if step.name == "serve_parity" else []
    if skipped:  # a scorer the machine lacks is reported, not hidden inside a passed step
        step.reason = "; ".join([step.reason, *skipped] if step.reason else skipped)


def markdown(steps: list[Step], env: dict, wall: float) -> str:
    lines = [f"# GPU check ({env.get('gpu', 'no GPU')}, torch {env.get('torch')}, {wall:.0f} s)", "",
             "| step | what | status | seconds / limit | result or reason |", "|---|---|---|---|---|"]
    for s in steps:
        detail = s.reason
        if s.name == "gpu_tests" and s.summary:
            detail = (f"{len(s.summary.get('passed', []))} passed, {len(s.summary.get('failed', []))} failed, "
                      f"{len(s.summary.get('skipped', []))} skipped; " + "; ".join(s.summary.get("skipped", [])))
        elif s.name == "train_mfu" and s.summary and "unreadable" not in s.summary:
            detail = "; ".join(f"{n}: MFU rmlib {v['rmlib_mfu']:.1%} / TRL {v['trl_mfu']:.1%}"
                               for n, v in s.summary.items() if isinstance(v, dict) and v.get("rmlib_mfu"))
        elif s.name == "serve_parity" and s.summary and "unreadable" not in s.summary:
            detail = "; ".join(f"{k} {v['status']}" + (f" (max diff {v['max_abs_diff']:.2g})" if "max_abs_diff" in v
                                                       else f" ({v['reason']})" if v.get("reason") else "")
                               for k, v in s.summary.items())
        elif s.name == "memory_8b" and s.summary.get("groups"):
            detail = "; ".join(f"{g['mode']} gc {'on' if g['gradient_checkpointing'] else 'off'}: "
                               f"{g['extrapolated_gib']:.2f} GiB at 32 layers (estimate {g['error_full']:+.1%})"
                               for g in s.summary["groups"] if g.get("extrapolated_gib") is not None)
        lines.append(f"| {s.name} | {s.what} | {s.status} | {s.seconds:.0f} / {s.limit_s} | {detail} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="check the plan and time limits, run nothing")
    ap.add_argument("--out-dir", default=str(OUT_DIR))
    ap.add_argument("--work", default="/tmp/rmlib_gpu_check", help="scratch space (random-init 8B-shaped checkpoints)")
    ap.add_argument("--budget", type=int, default=BUDGET_S, help="total seconds the step limits may add up to")
    ap.add_argument("--only", nargs="*", help="run only these steps")
    ap.add_argument("--env", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.env:
        print(json.dumps(environment()))
        return 0
    out_dir, work = Path(args.out_dir), Path(args.work)
    steps = plan(out_dir, work)
    if args.only:
        unknown = set(args.only) - {s.name for s in steps}
        if unknown:
            raise SystemExit(f"--only: unknown steps {sorted(unknown)}; steps: {[s.name for s in steps]}")
        steps = [s for s in steps if s.name in args.only]
    problems = check_plan(steps, args.budget)
    env = environment()
    plan_skips(steps, env)
    print(f"GPU check plan: {len(steps)} steps, limits {sum(s.limit_s for s in steps)} s of {args.budget} s")
    for s in steps:
        print(f"  {s.name:<10} {s.limit_s:>4} s  {s.what}" + (f"  [SKIP: {s.reason}]" if s.status == "skipped" else ""))
        print(f"             {' '.join(x if ' ' not in x else repr(x) for x in s.cmd[1:])}")
    for why in expected_test_skips(env):
        print(f"  expected test skip: {why}")
    if problems:
        print("PLAN PROBLEMS:\n  " + "\n  ".join(problems))
        return 2
    if args.dry_run:
        print("dry run: plan OK (scripts exist, options accepted, limits within budget)")
        return 0
    if not env.get("cuda_available"):
        print("no CUDA device here: nothing to run (use --dry-run to check the plan)")
        return 3
    out_dir.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for s in steps:
        print(f"[{s.name}] {s.what} (limit {s.limit_s} s)", flush=True)
        run_step(s, out_dir)
        print(f"[{s.name}] {s.status} in {s.seconds:.0f} s {s.reason}", flush=True)
    wall = time.perf_counter() - t0
    report = {"env": env, "budget_s": args.budget, "wall_s": round(wall, 1), "steps": [asdict(s) for s in steps],
              "expected_test_skips": expected_test_skips(env)}
    from rmlib.io import write_text  # atomic: an interrupted write never leaves half a report

    write_text(json.dumps(report, indent=2) + "\n", out_dir / "gpu_check.json")
    write_text(markdown(steps, env, wall), out_dir / "gpu_check.md")
    print(markdown(steps, env, wall))
    print("skipped: " + ("; ".join(f"{s.name} ({s.reason})" for s in steps if s.status == "skipped") or "none"))
    return 0 if all(s.status in ("passed", "skipped") for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
