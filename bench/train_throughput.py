"""Training throughput: rmlib's trainer vs TRL's ``RewardTrainer``, same model, data and global batch.

Both trainers run in the same invocation, alternating (rmlib, TRL, TRL, rmlib, ...) so drift of a
shared machine hits both, for ``--repeats`` worker processes each. Each worker is a fresh subprocess
that trains ``--rounds`` epochs (default 1) over every data set in turn (a fresh trainer and model
each time), giving ``repeats x rounds`` measurements per trainer and set; nothing of one worker leaks
into another. A round costs a whole ``fit()`` (model load, final save and its probe check) outside
the measured window, so more workers rather than more rounds is the cheaper way to more repeats. Within a run, the
previous set's trainer, model and optimizer (kept alive by reference cycles after ``fit()`` /
``train()`` return) are garbage-collected before the next set's measured window opens (on CUDA the
cached blocks are released and the peak counter reset too), so they are neither in its baseline
nor freed inside it. With ``--device cpu`` every worker is CPU-only (``CUDA_VISIBLE_DEVICES=""``,
``ACCELERATE_USE_CPU=true``), so both trainers run on the CPU even on a GPU host; each run reports
the device its model trained on and the driver refuses a mismatch.

Data (synthetic text with realistic *lengths*; speed does not depend on the words):

* ``mixed``: prompt and response lengths drawn from long-tailed (log-normal) distributions shaped
  like HelpSteer2's: most prompts short, a few very long; responses a few hundred tokens.
* ``long_prompt``: multi-turn prompts (3-6 turns) about 3x as long as each response.

Model: a small random-init Llama-style reward model on CPU (``--hidden`` etc.; a ~0.5-1B config on
GPU with ``--device cuda``, bf16 autocast for both). rmlib runs with its defaults for speed:
length-grouped batches and shared-prompt packing (``data.shared_prompt=true``: prompt, chosen and
rejected in one packed sequence, the prompt computed once, a block mask on CPU). TRL runs with its
defaults (padded, random order), except gradient checkpointing, which is set the same for both:
TRL's ``RewardConfig`` turns it on by default and rmlib's config leaves it off, and comparing the
two defaults would credit rmlib with TRL's recomputation (about a third more compute) and charge it
for the activations TRL does not keep. ``--gradient-checkpointing on`` (``--quick``'s setting,
TRL's default) and ``off`` give the two fair comparisons; the full run does both.

Measured per run:

* pairs/s (wall clock) and pairs per CPU-second of the worker process (``time.process_time``:
  user + system time of the process and all its threads, over the same window). On a machine shared
  with other jobs the wall clock stretches with their load while the CPU time our threads use barely
  moves, so the CPU-second figure is the stable one there. Ratios rmlib/TRL are the median over the
  repeats of each repeat's ratio (the i-th rmlib measurement against the i-th TRL one), reported with
  their min / median / max spread;
* non-pad tokens/s, both over the training steps only (first step start to last step end;
  model loading, tokenization and evaluation are outside the window for both; on CUDA the device
  is synchronised at both ends of every step for both trainers, so queued kernels are inside the
  step that launched them). Pairs are those in the batches the steps actually trained (a last
  partial batch counts what it holds; pairs a trainer drops are not counted). Tokens are the
  logical tokens of the pairs (``len(prompt+chosen) + len(prompt+rejected)``), the same numerator
  for both trainers, so tokens/s credits the shared prompt's saving as real speed;
* padding fraction: pad positions / positions computed by the model;
* peak memory: the peak of live tensor bytes from model load to the end of training — weights,
  gradients, optimizer states, activations, masks: what a GPU would have to hold. On CUDA this is
  ``torch.cuda.max_memory_allocated``; on CPU, where torch keeps no such counter, the torch
  profiler's allocation events are summed in extra runs apart from the timed ones;
* RSS (context): the process's RSS high-water mark over the same window minus the RSS at its
  start, with both libraries' whole stacks imported before the window opens (the modules first
  imported inside the window are counted in the detail file). On a tiny CPU model this is
  dominated by allocator arenas, tokenizer state and data structures, not by training tensors.

MFU (CUDA): 6 · parameters · computed non-pad tokens / time / dense bf16 peak, attention FLOPs
not counted; each trainer is credited only with the tokens it computes.

    python bench/train_throughput.py --quick        # ~3-4 minutes on 2 CPU cores; writes the results JSON
    python bench/train_throughput.py                # more pairs and repeats, both checkpointing settings
    python bench/train_throughput.py --device cuda --hidden 2048 --layers 16 --pairs 1024 --batch 32
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "train_throughput.json"
# tokens per sequence for both trainers: the tiny model's position limit (rmlib refuses more); the
# longest synthetic pair at --scale 1 is ~1,950 tokens, so neither trainer truncates or drops a pair
MAX_LENGTH = 2048
WORDS = ("the a of to and is in that it for on with as you what how answer question number sum list sorted "
         "convert meters feet celsius yes no please write reply capital city").split()


# -- data ----------------------------------------------------------------------------------------


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(max(1, n_words)))


def _lognormal(rng: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, rng.lognormvariate(math.log(median), sigma))))


def _record(prompt: list[dict], chosen: str, rejected: str) -> dict:
    """TRL's conversational preference format, read as-is by both trainers."""
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def make_sets(n_pairs: int, scale: float, seed: int = 0) -> dict[str, list[dict]]:
    """Canonical pair records; one word of this vocabulary is one token of the tiny tokenizer."""
    rng = random.Random(seed)
    mixed = []
    for _ in range(n_pairs):
        p = _lognormal(rng, 90 * scale, 0.9, 8, int(1200 * scale))
        c, r = (_lognormal(rng, 140 * scale, 0.7, 4, int(700 * scale)) for _ in range(2))
        mixed.append(_record([{"role": "user", "content": _text(rng, p)}], _text(rng, c), _text(rng, r)))
    long_prompt = []
    for _ in range(n_pairs):
        turns = rng.randint(3, 6)
        resp = _lognormal(rng, 90 * scale, 0.5, 8, int(400 * scale))
        per_turn = max(4, int(3 * resp / turns))  # prompt ≈ 3 × response
        msgs = []
        for t in range(turns):
            msgs.append({"role": "user" if t % 2 == 0 else "assistant",
                         "content": _text(rng, _lognormal(rng, per_turn, 0.3, 2, 4 * per_turn))})
        if msgs[-1]["role"] != "user":
            msgs.append({"role": "user", "content": _text(rng, per_turn)})
        long_prompt.append(_record(msgs, _text(rng, resp), _text(rng, _lognormal(rng, resp, 0.2, 4, 2 * resp))))
    return {"mixed": mixed, "long_prompt": long_prompt}


# -- one run (in a subprocess) ------------------------------------------------------------------


def _rss() -> tuple[int, int]:
    cur = peak = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    return cur, peak


def _reset_peak() -> int:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    return _rss()[0]


class _Clock:
    """First step's start and last step's end, plus the step and pair counts and the model's device.

    On CUDA the clock synchronises before reading the time, at the first step's start (work queued
    before training is not charged to it) and at every step's end (the last step's kernels are
    inside the window; rmlib's ``.tolist()`` would sync anyway, TRL's last backward/optimizer step
    would not).
    """

    def __init__(self, device: str):
        self.cuda = device == "cuda"
        self.start: float | None = None
        self.end = 0.0
        self.cpu_start = self.cpu_end = 0.0  # time.process_time(): user + system time of all threads
        self.steps = 0
        self.pairs = 0
        self.device: str | None = None  # where the model's parameters actually are

    def _sync(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def begin(self, model=None):
        if self.start is None:
            if model is not None:
                self.device = next(model.parameters()).device.type
            self._sync()
            self.start = time.perf_counter()
            self.cpu_start = time.process_time()

    def done(self):
        self._sync()
        self.end = time.perf_counter()
        self.cpu_end = time.process_time()
        self.steps += 1

    @property
    def seconds(self) -> float:
        return self.end - (self.start or self.end)

    @property
    def cpu_seconds(self) -> float:
        """CPU time the training process (every thread: torch's intra-op pool included) spent over
        the same window. Another job on a shared machine stretches the wall clock (our threads wait
        for a core) but hardly the CPU time our threads use, so pairs per CPU-second is the steady
        figure there; wall-clock pairs/s is the one that matters on a dedicated machine."""
        return self.cpu_end - self.cpu_start


class _Window:
    """The measured window of one run: from just before the model is loaded to the end of training.

    ``mode="time"``: RSS high-water mark over the window (``VmHWM`` after a ``clear_refs`` reset,
    minus the RSS at the start), and the modules first imported inside the window (both workers
    import their whole stack first, so that import memory is not counted as training memory; the
    count is reported so the claim can be checked).

    ``mode="memory"``: peak bytes of live tensors, the CPU counterpart of
    ``torch.cuda.max_memory_allocated`` (what a GPU would have to hold: weights, gradients,
    optimizer states, activations, masks). On CPU torch keeps no such counter, so the torch
    profiler records every allocation and free and the running sum's maximum is taken; the
    profiler slows ops down, so these runs are separate from the timed ones. On CUDA the
    allocator's own peak counter is read.

    Both modes first run ``gc.collect()`` (and on CUDA ``empty_cache`` and a peak reset): the
    previous set's trainer in the same worker survives ``fit()``/``train()`` in reference cycles,
    and its tensors would otherwise sit in this window's CUDA baseline, or be freed inside the
    CPU profiler's window and count negative in its running sum (under-reporting the peak).
    """

    def __init__(self, mode: str, device: str):
        self.mode, self.device = mode, device

    def __enter__(self):
        import torch

        gc.collect()  # the previous set's trainer: cycles that only the collector frees
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        self.modules = set(sys.modules)
        self.base = _reset_peak()
        self.prof = None
        if self.mode == "memory":
            if self.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
                self.cuda_base = torch.cuda.memory_allocated()
            else:
                from torch.profiler import ProfilerActivity, profile

                self.prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
                self.prof.__enter__()
        return self

    def __exit__(self, *exc):
        import torch

        self.result: dict = {}
        if self.prof is not None:
            self.prof.__exit__(*exc)
            events = sorted((e.start_ns(), e.nbytes()) for e in self.prof.profiler.kineto_results.events()
                            if e.name() == "[memory]" and e.device_type().name == "CPU")
            live = peak = 0
            for _, nbytes in events:
                live += nbytes
                peak = max(peak, live)
            self.result["peak_tensor_bytes"] = peak
        elif self.mode == "memory":
            self.result["peak_tensor_bytes"] = torch.cuda.max_memory_allocated() - self.cuda_base
        cur, peak = _rss()
        self.result.update(peak_rss=peak, peak_rss_delta=peak - self.base,
                           modules_imported_in_window=sorted(set(sys.modules) - self.modules))
        return False


def _preimport(system: str) -> None:
    """Everything either trainer imports lazily, imported before the window opens."""
    # Neither trainer uses bitsandbytes or DeepSpeed in these one-process runs, yet both would import
    # them whenever installed (peft, which transformers' scheduler module and TRL import, loads
    # bitsandbytes; accelerate's unwrap_model loads deepspeed): several seconds per worker, outside
    # every measured window. Hiding them from both workers alike only shortens the wall clock.
    for unused in ("bitsandbytes", "deepspeed"):
        sys.modules.setdefault(unused, None)  # find_spec() then reports "not installed"
    import accelerate  # noqa: F401
    import datasets  # noqa: F401
    import transformers  # noqa: F401
    import transformers.optimization  # noqa: F401  (rmlib's scheduler; it pulls in peft)
    if system == "rmlib":
        import rmlib.eval  # noqa: F401
        import rmlib.losses  # noqa: F401
        import rmlib.models  # noqa: F401
        import rmlib.training.trainer  # noqa: F401
    else:
        import trl  # noqa: F401


def run_rmlib(model_dir: str, data: Path, eval_data: Path, args: argparse.Namespace, out: Path, mode: str) -> dict:
    from rmlib.training import trainer as tr

    clock = _Clock(args.device)
    original = tr.Trainer._train_step

    computed = [0.0]

    def timed(self, run, micro, *rest):
        clock.begin(run.model)
        stats = original(self, run, micro, *rest)
        clock.done()
        clock.pairs += sum(len(mb) for mb in micro)  # the pairs this step trained (every process's)
        computed[0] += stats["tokens"]  # tokens the model computed (shared prompts once, no pads)
        return stats

    tr.Trainer._train_step = timed
    cfg = {"model": {"name_or_path": model_dir, "gradient_checkpointing": args.gc},
           "data": {"train": str(data), "eval": str(eval_data), "max_length": MAX_LENGTH, "shared_prompt": True,
                    "group_by_length": True},
           "loss": {"name": "bt"},
           "train": {"output_dir": str(out), "per_device_batch_size": args.batch, "epochs": 1, "lr": 1e-5,
                     "progress": False, "seed": 0, "eval_batch_size": args.batch, "eval_at_start": False,
                     "mixed_precision": "bf16" if args.device == "cuda" else "no"}}
    try:
        with _Window(mode, args.device) as w:
            summary = tr.Trainer(cfg).fit()
    finally:  # the next set's run wraps the original, not this wrapper
        tr.Trainer._train_step = original
    return {"seconds": clock.seconds, "cpu_seconds": clock.cpu_seconds, "steps": clock.steps, "pairs": clock.pairs,
            "device": clock.device,
            "padding_fraction": summary["padding_fraction"], "computed_tokens": computed[0], **w.result}


def run_trl(model_dir: str, data: Path, args: argparse.Namespace, out: Path, mode: str) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    rows = [json.loads(line) for line in data.read_text().splitlines()]
    ds = Dataset.from_dict({k: [r[k] for r in rows] for k in ("prompt", "chosen", "rejected")})
    clock = _Clock(args.device)
    counts = {"positions": 0, "tokens": 0}

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kw):
            clock.begin(model)

        def on_step_end(self, args, state, control, **kw):
            clock.done()

    with _Window(mode, args.device) as w:  # like rmlib's window: model loading, tokenization and training
        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32)
        model.config.pad_token_id = tok.pad_token_id
        # gradient checkpointing is set explicitly: TRL's RewardConfig turns it on by default
        config = RewardConfig(output_dir=str(out), per_device_train_batch_size=args.batch, num_train_epochs=1,
                              learning_rate=1e-5, logging_steps=10_000, save_strategy="no", report_to="none",
                              max_length=MAX_LENGTH, use_cpu=args.device == "cpu", seed=0,
                              bf16=args.device == "cuda", fp16=False, gradient_checkpointing=args.gc,
                              dataloader_drop_last=False, disable_tqdm=True)
        trainer = RewardTrainer(model=model, args=config, train_dataset=ds, processing_class=tok,
                                callbacks=[Timer()])
        collate = trainer.data_collator

        def counting(examples):
            b = collate(examples)
            counts["positions"] += b["attention_mask"].numel()
            counts["tokens"] += int(b["attention_mask"].sum())
            return b

        trainer.data_collator = counting
        training_step = trainer.training_step

        def counting_step(model, inputs, *a, **kw):  # one per optimizer step (no accumulation)
            clock.pairs += inputs["input_ids"].shape[0] // 2  # chosen rows, then rejected rows
            return training_step(model, inputs, *a, **kw)

        trainer.training_step = counting_step
        trainer.train()
    return {"seconds": clock.seconds, "cpu_seconds": clock.cpu_seconds, "steps": clock.steps, "pairs": clock.pairs,
            "device": clock.device,
            "padding_fraction": 1 - counts["tokens"] / counts["positions"], "computed_tokens": counts["tokens"],
            **w.result}


def worker(args: argparse.Namespace) -> None:
    """Train one system on every data set, ``--rounds`` times over (a fresh trainer and model each
    time), printing one JSON line per set and round. Several short rounds per worker give more
    repeats for the same number of process starts (each pays ~15 s of imports)."""
    work = Path(args.workdir)
    _preimport(args.system)
    for rnd in range(args.rounds):
        for name in args.sets:
            data, eval_data = work / f"{name}.jsonl", work / "eval.jsonl"
            out = Path(tempfile.mkdtemp(dir=work))
            if args.system == "rmlib":
                res = run_rmlib(args.model, data, eval_data, args, out, args.mode)
            else:
                res = run_trl(args.model, data, args, out, args.mode)
            print("RESULT " + json.dumps({"set": name, "round": rnd, **res}), flush=True)


# -- driver --------------------------------------------------------------------------------------


def _pair_tokens(model_dir: str, rows: list[dict]) -> int:
    """Logical tokens of the pairs as rmlib tokenizes them (prompt counted for both responses)."""
    from transformers import AutoTokenizer

    from rmlib.data.features import encode_examples
    from rmlib.data.schema import PreferencePair, ValidationReport
    from rmlib.data.tokenize import Featurizer

    feat = Featurizer(AutoTokenizer.from_pretrained(model_dir), MAX_LENGTH)
    pairs = [PreferencePair(prompt=r["prompt"], chosen=r["chosen"][0]["content"],
                            rejected=r["rejected"][0]["content"]) for r in rows]
    return sum(f.n_tokens for f in encode_examples(feat, pairs, ValidationReport("bench")))


def _count_params(model_dir: str) -> int:
    from safetensors import safe_open

    n = 0
    for f in Path(model_dir).glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            for k in st.keys():
                n += math.prod(st.get_slice(k).get_shape())
    return n


def _loadavg() -> list[float] | None:
    """1/5/15-minute load averages at the end of the run: how busy the machine was."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# dense bf16 tensor-core peak (FLOP/s) by device name, for MFU; --peak-tflops overrides
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "4090": 165e12}


def _peak_flops(args: argparse.Namespace) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops * 1e12
    if args.device != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def _worker_env(device: str, base: dict[str, str] | None = None, threads: int | None = None) -> dict[str, str]:
    """A worker's environment: CPU-only for ``--device cpu``, so both trainers use the same device.

    TRL gets ``use_cpu=True``, but rmlib's Accelerator has no CPU flag and would take a visible
    GPU; hiding the GPUs and setting accelerate's own flag puts both on the CPU (and keeps
    CUDA allocations out of the CPU memory measure).

    ``threads`` sets torch's intra-op threads for both trainers (OMP/MKL). On a machine shared with
    other jobs, two OpenMP threads wait for each other at the end of every op and spin while they
    wait: a descheduled partner then costs wall time *and* CPU time, so neither measure holds (a
    --quick run measured 0.2 pairs/s and 0.7 pairs per CPU-second for rmlib on a 2-core VM at load
    13, against 14 and ~7 on the idle VM). With one thread there is no barrier: the CPU time is the
    work, and other jobs only stretch the wall clock.
    """
    env = {**(os.environ if base is None else base), "WANDB_MODE": "disabled"}
    if device == "cpu":
        env.update(CUDA_VISIBLE_DEVICES="", ACCELERATE_USE_CPU="true")
        if threads:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    else:
        env.pop("ACCELERATE_USE_CPU", None)  # a stray flag would put rmlib on the CPU
    return env


def _start(args: argparse.Namespace, system: str, mode: str, grad_ckpt: bool, work: Path, model_dir: str,
           sets: list[str]) -> tuple:
    cmd = [sys.executable, __file__, "--worker", system, "--mode", mode, "--workdir", str(work), "--model", model_dir,
           "--batch", str(args.batch), "--device", args.device, "--gradient-checkpointing", "on" if grad_ckpt else "off",
           "--rounds", str(args.rounds if mode == "time" else 1), "--sets", *sets]
    # output goes to files, not pipes: two workers side by side must never block on a full pipe
    log = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    return system, subprocess.Popen(cmd, stdout=log[0], stderr=log[1], text=True,
                                     env=_worker_env(args.device, threads=args.threads)), log


def _results(args: argparse.Namespace, started: tuple) -> list[dict]:
    system, proc, log = started
    proc.wait()
    stdout, stderr = (f.seek(0) or f.read() for f in log)
    for f in log:
        f.close()
    if proc.returncode != 0:
        raise SystemExit(f"{system} run failed:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    results = [json.loads(line[7:]) for line in stdout.splitlines() if line.startswith("RESULT ")]
    for r in results:
        if r["device"] != args.device:
            raise SystemExit(f"{system} trained {r['set']} on {r['device']}, not --device {args.device}")
    return results


def spread(values: list[float]) -> dict[str, float]:
    """min / median / max, and the half-range relative to the median (how far a single repeat
    can be from the reported median)."""
    med = statistics.median(values)
    return {"min": min(values), "median": med, "max": max(values),
            "half_range_rel": (max(values) - min(values)) / 2 / med}


def repeat_ratios(a: list[float], b: list[float]) -> list[float]:
    """rmlib/TRL ratio of each repeat: the i-th measurement of one with the i-th of the other
    (same worker slot and round, run back to back)."""
    return [x / y for x, y in zip(a, b)]


def _summarise(runs: dict, mem: dict, tokens: int, n_pairs: int, params: int,
               peak_flops: float | None) -> dict:
    row: dict = {}
    for system in ("rmlib", "trl"):
        rs = runs[system]
        pps = [r["pairs"] / r["seconds"] for r in rs]
        ppc = [r["pairs"] / r["cpu_seconds"] for r in rs]
        secs = statistics.median(r["seconds"] for r in rs)
        computed = statistics.median(r["computed_tokens"] for r in rs)
        row[system] = {
            "pairs_per_s": statistics.median(pps), "pairs_per_s_all": pps,
            "pairs_per_cpu_s": statistics.median(ppc), "pairs_per_cpu_s_all": ppc,
            "cpu_per_wall": statistics.median(r["cpu_seconds"] / r["seconds"] for r in rs),
            "tokens_per_s": statistics.median(pps) * tokens / n_pairs,
            "computed_tokens_per_epoch": computed,
            "padding_fraction": statistics.median(r["padding_fraction"] for r in rs),
            "peak_memory_mb": mem[system]["peak_tensor_bytes"] / 2**20,
            "peak_rss_delta_mb": statistics.median(r["peak_rss_delta"] for r in rs) / 2**20,
            "peak_rss_mb": statistics.median(r["peak_rss"] for r in rs) / 2**20,
            "modules_imported_in_window": max(len(r["modules_imported_in_window"]) for r in rs),
        }
        if peak_flops:
            row[system]["mfu"] = 6 * params * computed / secs / peak_flops
    a, b = row["rmlib"], row["trl"]
    wall = repeat_ratios(a["pairs_per_s_all"], b["pairs_per_s_all"])
    cpu = repeat_ratios(a["pairs_per_cpu_s_all"], b["pairs_per_cpu_s_all"])
    return {"pairs_per_s_ratio": statistics.median(wall),
            "pairs_per_cpu_s_ratio": statistics.median(cpu),
            "pairs_per_s_ratio_spread": spread(wall), "pairs_per_cpu_s_ratio_spread": spread(cpu),
            "ratio_of_medians": {"pairs_per_s": a["pairs_per_s"] / b["pairs_per_s"],
                                 "pairs_per_cpu_s": a["pairs_per_cpu_s"] / b["pairs_per_cpu_s"]},
            "peak_memory_ratio": a["peak_memory_mb"] / b["peak_memory_mb"],
            "padding_fraction": a["padding_fraction"],
            "tokens_per_s_ratio": a["tokens_per_s"] / b["tokens_per_s"],
            "peak_rss_delta_ratio": a["peak_rss_delta_mb"] / b["peak_rss_delta_mb"], **row}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="32 pairs per set, 3 alternating workers per trainer: ~3 min on 2 idle CPU cores")
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8, help="pairs per optimizer step (the global batch)")
    ap.add_argument("--repeats", type=int, default=3, help="worker processes per trainer, alternating")
    ap.add_argument("--rounds", type=int, default=1,
                    help="epochs per worker, each with a fresh trainer and model (repeats x rounds measurements)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every length")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cuda: bf16 autocast for both trainers, CUDA allocator peak, MFU")
    ap.add_argument("--gradient-checkpointing", choices=["on", "off", "both"], default=None,
                    help="the same setting for both trainers (default: both; --quick: on, TRL's default)")
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU: intra-op threads per worker, the same for both trainers (default 1: steady on a "
                         "shared machine, see _worker_env; 0 = torch's default)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak for MFU (default: by GPU name)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--worker", choices=["rmlib", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=["time", "memory"], default="time", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--sets", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.system, args.gc = args.worker, args.gradient_checkpointing == "on"
        worker(args)
        return
    if args.quick:
        # more, shorter repeats than before (3 x 32 pairs instead of 2 x 48): ratios are medians of 3
        args.pairs, args.repeats, args.rounds, args.scale = 32, 3, 1, 0.3
        args.gradient_checkpointing = args.gradient_checkpointing or "on"
    gc_settings = {"on": [True], "off": [False], "both": [True, False], None: [True, False]}[args.gradient_checkpointing]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from rmlib.testing import build_tiny_llama

    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="rmlib_bench_"))
    model_dir = str(build_tiny_llama(work / "model", hidden_size=args.hidden, layers=args.layers,
                                     heads=max(4, args.hidden // 128), kv_heads=max(2, args.hidden // 512),
                                     intermediate_size=int(args.hidden * 8 / 3)))
    params = _count_params(model_dir)
    sets = make_sets(args.pairs, args.scale)
    for name, rows in sets.items():
        (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (work / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sets["mixed"][:2]))
    tokens = {name: _pair_tokens(model_dir, rows) for name, rows in sets.items()}
    peak_flops = _peak_flops(args)

    report: dict = {}
    for grad_ckpt in gc_settings:
        key = "gradient_checkpointing" if grad_ckpt else "no_gradient_checkpointing"
        runs: dict[str, dict[str, list[dict]]] = {n: {"rmlib": [], "trl": []} for n in sets}
        for rep in range(args.repeats):
            for system in ("rmlib", "trl") if rep % 2 == 0 else ("trl", "rmlib"):
                t0 = time.perf_counter()
                for r in _results(args, _start(args, system, "time", grad_ckpt, work, model_dir, list(sets))):
                    runs[r["set"]][system].append(r)
                last = {n: runs[n][system][-args.rounds:] for n in sets}
                print(f"[{key}] repeat {rep + 1}/{args.repeats} {system}: "
                      + "; ".join(f"{n} " + ", ".join(f"{r['pairs'] / r['seconds']:.1f}" for r in last[n]) + " pairs/s, "
                                  + ", ".join(f"{r['pairs'] / r['cpu_seconds']:.1f}" for r in last[n]) + " per CPU-s"
                                  for n in sets) + f" (run {time.perf_counter() - t0:.0f} s)", flush=True)
        mem: dict[str, dict[str, dict]] = {n: {} for n in sets}
        # one memory run each, apart from the timed runs and side by side: what they measure (the
        # allocations of one process) does not depend on the time they take
        t0 = time.perf_counter()
        started = [_start(args, system, "memory", grad_ckpt, work, model_dir, list(sets)) for system in ("rmlib", "trl")]
        for run in started:
            for r in _results(args, run):
                mem[r["set"]][run[0]] = r
        print(f"[{key}] memory runs ({time.perf_counter() - t0:.0f} s)", flush=True)
        report[key] = {n: _summarise(runs[n], mem[n], tokens[n], len(sets[n]), params, peak_flops) for n in sets}

    import torch
    import transformers
    import trl

    head_key = "gradient_checkpointing" if "gradient_checkpointing" in report else "no_gradient_checkpointing"
    report["meta"] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "pairs": args.pairs, "batch": args.batch,
        "repeats": args.repeats, "rounds": args.rounds, "threads": args.threads if args.device == "cpu" else None,
        "load": _loadavg(), "length_scale": args.scale, "device": args.device,
        "headline": head_key,
        "model": {"hidden": args.hidden, "layers": args.layers, "params": params,
                  "type": f"Llama, random init, fp32 weights{', bf16 autocast' if args.device == 'cuda' else ''}"},
        "mean_pair_tokens": {n: tokens[n] / len(sets[n]) for n in sets},
        "machine": (torch.cuda.get_device_name() if args.device == "cuda" else
                    f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}"),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "trl": trl.__version__},
        "memory_method": ("peak live tensor bytes from model load to end of training (CPU: torch profiler "
                          "allocation events in separate runs; CUDA: max_memory_allocated)"),
        "rss_method": "VmHWM - VmRSS at the window start (clear_refs reset), after both stacks are imported",
        "wall_seconds": round(time.perf_counter() - t_start, 1),
    }
    if peak_flops:
        report["meta"]["peak_flops"] = peak_flops
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    headline = {n: {k: report[head_key][n][k] for k in ("pairs_per_s_ratio", "pairs_per_cpu_s_ratio",
                                                         "peak_memory_ratio", "padding_fraction")}
                for n in sets}
    out.write_text(json.dumps(headline, indent=2) + "\n")  # the exact shape (ratios rmlib/TRL)
    detail = out.with_name(out.stem + "_detail.json")
    detail.write_text(json.dumps(report, indent=2) + "\n")
    for key in (k for k in report if k != "meta"):
        print(f"\n{key} (both trainers)")
        print(f"{'set':<12} {'rmlib pairs/s':>14} {'TRL pairs/s':>12} {'ratio (min-max)':>17} "
              f"{'per CPU-s rmlib/TRL':>20} {'ratio (min-max)':>17} {'mem MB rmlib/TRL':>17} "
              f"{'ratio':>6} {'RSS ratio':>9} {'rmlib pad':>9} {'TRL pad':>8}" + (" MFU rmlib/TRL" if peak_flops else ""))
        for name in sets:
            r = report[key][name]
            w, c = r["pairs_per_s_ratio_spread"], r["pairs_per_cpu_s_ratio_spread"]
            mfu = f" {r['rmlib']['mfu']:.1%}/{r['trl']['mfu']:.1%}" if peak_flops else ""
            print(f"{name:<12} {r['rmlib']['pairs_per_s']:>14.2f} {r['trl']['pairs_per_s']:>12.2f} "
                  f"{w['median']:>5.2f} ({w['min']:.2f}-{w['max']:.2f}) "
                  f"{r['rmlib']['pairs_per_cpu_s']:>9.2f}/{r['trl']['pairs_per_cpu_s']:<10.2f} "
                  f"{c['median']:>5.2f} ({c['min']:.2f}-{c['max']:.2f}) "
                  f"{r['rmlib']['peak_memory_mb']:>8.0f}/{r['trl']['peak_memory_mb']:<8.0f} "
                  f"{r['peak_memory_ratio']:>6.2f} {r['peak_rss_delta_ratio']:>9.2f} {r['padding_fraction']:>9.3f} "
                  f"{r['trl']['padding_fraction']:>8.3f}{mfu}")
    print(f"wrote {out} ({head_key}) and {detail.name} ({report['meta']['wall_seconds']} s)")


if __name__ == "__main__":
    main()
