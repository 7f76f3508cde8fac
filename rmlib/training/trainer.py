"""One training loop for every backend Accelerate drives (CPU, GPU, DDP, DeepSpeed, FSDP).

``fit()`` reads as setup → loop → finish. :meth:`Trainer._setup` checks everything that needs only
the config and the data before it loads a model, then returns the whole state of the run as one
:class:`Run`; the loop steps, logs, evaluates and saves through small named helpers.

Batches are built as *global* batches (``per_device_batch_size × accumulation × processes``
items) from a sequence fixed by (seed, epoch); each process takes its micro-batches from every
global batch. So one process × accumulation 4 and two processes × accumulation 2 see the same
global batches, and a resumed run continues the same sequence. The loss of a micro-batch is its
*sum* divided by the global batch's unit count (``loss.count``), so uneven micro-batches are
weighted correctly. The trainer never branches on a loss's name or family: the loss declares its
data kind and labels, and ``collator_for``/``batch_values`` do the rest.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rmlib.config import Config, ConfigError, load_config, to_yaml
from rmlib.data.collate import collator_for, global_batches, split_global_batch
from rmlib.data.features import FeatureSet, MixedSet
from rmlib.io import publish_dir, remove_dir, resolve_model, staging_dir, write_text
from rmlib.models.export import finish_training_output
from rmlib.runtime import make_accelerator
from rmlib.training import checkpoint as ckpt
from rmlib.training import sanity
from rmlib.training.backends import build_adamw, configure_deepspeed
from rmlib.training.checkpoint import CheckpointError, resume_differences
from rmlib.training.data import Examples, data_fingerprint, featurizer_for, load_examples, resolve_max_length
from rmlib.training.evaluate import evaluate
from rmlib.training.preemption import Preempted, catching_signals
from rmlib.training.state import load_state, save_state


@dataclass
class Run:
    """Everything a training run holds between setup and finish; nothing else is created in ``fit``."""

    acc: Any
    model: Any
    opt: Any
    sched: Any
    loss_fn: Any
    examples: Examples
    train_f: FeatureSet | MixedSet
    eval_f: FeatureSet
    collate: Callable
    pad_id: int
    lengths: np.ndarray  # tokens per training item, read from the feature table
    parts: int  # micro-batches per global batch: processes × accumulation
    total: int  # optimizer steps of the whole run
    state: ckpt.TrainerState
    bar: Any = None
    eval_before: dict | None = None
    last_eval: dict | None = None
    last_eval_sets: dict = field(default_factory=dict)  # data.eval_sets: name -> latest metrics
    tokens: int = 0  # real tokens trained, all processes
    positions: int = 0  # positions computed by this process (padding included)
    items: int = 0
    dropped_tail: int = 0  # items of last global batches too small to split, summed over epochs
    fingerprint: str = ""  # of the data files, saved with every checkpoint
    started: float = field(default_factory=time.perf_counter)


class Trainer:
    """``Trainer(config, overrides).fit()``; the constructor validates the config and loads nothing."""

    def __init__(self, config: Config | str | Path | dict, overrides: list[str] | None = None):
        if isinstance(config, Config):  # applied through the same merge as YAML files, then validated
            from omegaconf import OmegaConf

            config = OmegaConf.to_container(OmegaConf.structured(config))
        if isinstance(config, dict):
            self.cfg = load_config(None, overrides, base=config)
        else:
            self.cfg = load_config(config, overrides)
        self.root = Path(self.cfg.train.output_dir)

    # -- the loop --------------------------------------------------------------------------

    def fit(self) -> dict:
        with catching_signals(self.cfg.train.save_on_signal) as signals:
            run = self._setup()
            self._sanity = sanity.SanityMonitor.start(self.cfg, run)  # warnings naming the fix
            state = run.state
            while state.step < run.total:
                plan = self._epoch_plan(run)
                for gb in plan[state.batch_in_epoch:]:
                    stats = self._train_step(run, split_global_batch(gb, run.lengths, run.parts), signals.raised)
                    # every rank sees the same sum after the same step, so all of them stop together
                    stop = stats.pop("signalled") > 0
                    state.step, state.batch_in_epoch = state.step + 1, state.batch_in_epoch + 1
                    self._log(run, stats)
                    end_of_epoch = state.batch_in_epoch == len(plan)
                    metrics = self._evaluate(run) if self._due_eval(run, end_of_epoch) else None
                    if end_of_epoch:
                        state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                    stop = stop and state.step < run.total  # on the last step, finishing is the save
                    if self._due_save(run) or stop:
                        self._save_checkpoint(run, metrics)
                    if stop:
                        self._stop(run, signals.signum)
                    if state.step >= run.total:
                        break
            return self._finish(run)

    def _stop(self, run: Run, signum: int) -> None:
        """After a signal-triggered save: close the bar and trackers, then raise :class:`Preempted`."""
        run.bar.close()
        where = ckpt.checkpoint_dir(self.root) / f"step-{run.state.step:07d}"
        run.acc.print(f"signal received: saved {where} after step {run.state.step}/{run.total}; "
                      "resume with train.resume_from=auto")
        run.acc.end_training()
        raise Preempted(signum, run.state.step, where)

    def _due_save(self, run: Run) -> bool:
        every = self.cfg.train.save_every
        return bool(every) and (run.state.step % every == 0 or run.state.step == run.total)

    def _due_eval(self, run: Run, end_of_epoch: bool) -> bool:
        """At ``eval_every`` steps (or each epoch's end when 0), at the last step, and at every save
        when keep-best ranks checkpoints by eval loss (so every checkpoint has one)."""
        t, step = self.cfg.train, run.state.step
        periodic = step % t.eval_every == 0 if t.eval_every else end_of_epoch
        return bool(len(run.eval_f)) and (periodic or step == run.total or (self._due_save(run) and t.keep_best > 0))

    # -- setup -----------------------------------------------------------------------------

    def _setup(self) -> Run:
        cfg, t = self.cfg, self.cfg.train
        loss_fn, collate, resume, fingerprint = self._preflight()
        acc = make_accelerator(
            mixed_precision=t.mixed_precision, gradient_accumulation_steps=t.gradient_accumulation_steps,
            log_with=None if t.report_to == "none" else t.report_to, project_dir=str(self.root))
        from accelerate.utils import set_seed

        set_seed(t.seed)
        if resume is None and t.overwrite and acc.is_main_process:
            self._clear_previous_run()
        examples = self._load_data(acc)  # every data/loss check runs here, before a model is loaded
        model = self._build_model(loss_fn, examples.attributes, acc.device)
        sanity.check_head_across_ranks(acc, model, t.sanity_checks)  # before prepare partitions or syncs it
        parts = acc.num_processes * t.gradient_accumulation_steps
        lengths = examples.train.lengths
        steps_per_epoch = len(self._plan(lengths, 0, parts)[0])
        if steps_per_epoch == 0:
            raise ConfigError(f"{len(lengths)} training items cannot fill one global batch split {parts} ways")
        total = t.max_steps if t.max_steps > 0 else t.epochs * steps_per_epoch
        opt, sched = self._optimizer(acc, model, total)
        configure_deepspeed(acc, t)  # no DataLoader is prepared: DeepSpeed's batch sizes come from train.*
        pad_id = model.tokenizer.pad_token_id
        model, opt = acc.prepare(model, opt)
        # transformers loads models in eval mode: without this, dropout is off and gradient
        # checkpointing (which only acts while training) silently keeps every activation
        model.train()
        if t.report_to != "none":
            acc.init_trackers("rmlib", config=json.loads(json.dumps(_flat(cfg), default=str)))
        run = Run(acc, model, opt, sched, loss_fn, examples, examples.train, examples.eval, collate, pad_id,
                  lengths, parts, total, self._resume(acc, model, opt, sched, resume), fingerprint=fingerprint)
        if run.state.step > total:
            raise CheckpointError(f"{resume} is at step {run.state.step}, beyond this run's {total} steps "
                                  "(train.max_steps / train.epochs): resume from an earlier checkpoint or "
                                  "train for longer")
        if run.state.step == 0 and len(run.eval_f) and t.eval_at_start:
            run.eval_before = evaluate(model, loss_fn, run.eval_f, **self._eval_kwargs(run))
            acc.print(f"eval before training: {_fmt(run.eval_before)}")
        run.bar = _progress(total, run.state.step, acc.is_main_process and t.progress)
        return run

    def _preflight(self):
        """Checks that need only the config and the files: loss, collator, output dir, resume, lengths."""
        cfg, t = self.cfg, self.cfg.train
        from rmlib.losses import get_loss

        loss_fn = get_loss(cfg.loss.name, reduction="none", **cfg.loss.options)
        try:
            collate = collator_for(loss_fn.data_kind, shared_prompt=cfg.data.shared_prompt, packing=cfg.data.packing)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        resume = ckpt.resolve_resume(t.resume_from, self.root)
        if resume is None:
            if t.resume_from == "auto":
                partial = sorted(p.name for p in ckpt.checkpoint_dir(self.root).glob("*.tmp"))
                print(f"resume_from=auto: no complete checkpoint in {ckpt.checkpoint_dir(self.root)}"
                      + (f" (incomplete, ignored: {', '.join(partial)})" if partial else "") + "; starting fresh")
            self._check_fresh_run_dir()
        resolve_max_length(cfg)
        fingerprint = data_fingerprint(cfg)
        if resume is not None:
            self._check_resume(resume, fingerprint)
        return loss_fn, collate, resume, fingerprint

    def _load_data(self, acc) -> Examples:
        """Features from the cache: the main process builds a missing one first, the others then
        memory-map it (so no other rank tokenizes), and every rank splits the same rows."""
        with acc.main_process_first():
            examples = load_examples(self.cfg, featurizer_for(self.cfg))
        acc.print(examples.report.format())
        acc.print(f"train {len(examples.train)} | eval {len(examples.eval)} ({examples.eval_source}) | sequences with "
                  f"a left-truncated prompt: {examples.truncated_prompts} | features "
                  f"{'built' if examples.built else 'from the cache'}")
        return examples

    def _build_model(self, loss_fn, attributes: list[str], device):
        """The model the loss declares (``model_kind``: a reward model or a causal LM; ``model_head``: its
        outputs, and a distribution when it predicts one), built by ``rmlib.models.build_model`` with
        LoRA/QLoRA and checkpointing as configured."""
        from rmlib.models import build_model

        m = self.cfg.model
        common = dict(dtype=m.dtype, trust_remote_code=m.trust_remote_code,
                      attn_implementation=m.attn_implementation, max_length=self.cfg.data.max_length)
        try:
            outputs, distribution = loss_fn.model_head(attributes)
            if distribution is not None:
                common["distribution"] = distribution
            return build_model(loss_fn.model_kind, resolve_model(m.name_or_path), outputs, m, device=device, **common)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def _optimizer(self, acc, model, total_steps: int):
        from transformers import get_scheduler

        t = self.cfg.train
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:  # ZeRO-3 partitions parameters at load: ds_shape is the real shape
                ndim = len(getattr(p, "ds_shape", p.shape))
                (no_decay if ndim < 2 or "norm" in name.lower() else decay).append(p)
        # empty groups are left out: ZeRO-3 drops them, leaving the scheduler one group too many (LoRA
        # on a head without bias has no 1-d trainable parameter)
        groups = [g for g in ({"params": decay, "weight_decay": t.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
        opt = build_adamw(acc, groups, lr=t.lr, betas=tuple(t.adam_betas), eps=t.adam_eps)
        warmup = t.warmup_steps or math.ceil(t.warmup_ratio * total_steps)
        sched = get_scheduler(t.scheduler, opt, num_warmup_steps=warmup, num_training_steps=total_steps)
        return opt, sched

    def _check_fresh_run_dir(self) -> None:
        """A fresh run into a directory that holds another run would mix the two (its checkpoints
        would be resumed from, pruned or published beside ours): refuse unless told to replace it."""
        found = [n for n in ("model", "summary.json", "config.yaml") if (self.root / n).exists()]
        if ckpt.complete_checkpoints(self.root):  # an incomplete .tmp alone is no run to protect
            found.append("checkpoints")
        if found and not self.cfg.train.overwrite:
            raise ConfigError(f"train.output_dir={self.root} already holds a run ({', '.join(found)}); pass "
                              "train.overwrite=true to replace it, train.resume_from=auto to continue it, or "
                              "choose another train.output_dir")

    def _clear_previous_run(self) -> None:
        for name in ("checkpoints", "model"):
            if (self.root / name).exists():
                remove_dir(self.root / name)
        for name in ("summary.json", "config.yaml"):
            (self.root / name).unlink(missing_ok=True)

    def _check_resume(self, resume: Path, fingerprint: str) -> None:
        """The checkpoint must come from the same optimisation: same model, data, loss, batch
        geometry and seed. Anything else is a new run wearing an old run's state."""
        if self.cfg.train.allow_resume_changes:
            return
        saved_cfg = resume / "config.yaml"
        saved = load_config(saved_cfg) if saved_cfg.is_file() else None
        diffs = [] if saved is None else resume_differences(saved, self.cfg)
        state = ckpt.TrainerState.load(resume / ckpt.STATE_FILE)
        if state.data_fingerprint and state.data_fingerprint != fingerprint:
            diffs.append("data fingerprint (the training/evaluation files' contents changed)")
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if state.num_processes and state.num_processes != world:
            diffs.append(f"number of processes: {state.num_processes} → {world} (the global batch changes)")
        if diffs:
            raise CheckpointError(f"cannot resume from {resume}: its run differs from this config in "
                                  f"{'; '.join(diffs)}. Resume with the same settings, start a new run in another "
                                  "train.output_dir, or pass train.allow_resume_changes=true")

    def _resume(self, acc, model, opt, sched, resume: Path | None) -> ckpt.TrainerState:
        if resume is None:
            return ckpt.TrainerState()
        load_state(acc, model, opt, sched, resume / "state")
        state = ckpt.TrainerState.load(resume / ckpt.STATE_FILE)
        acc.print(f"resumed from {resume} at step {state.step}")
        if acc.is_main_process:
            for p in ckpt.set_aside_newer(self.root, state.step):
                acc.print(f"  {p.name}: newer than the resume point, set aside (not resumed from, not pruned)")
        acc.wait_for_everyone()
        return state

    # -- batches ---------------------------------------------------------------------------

    def _plan(self, lengths: np.ndarray, epoch: int, parts: int) -> tuple[list[np.ndarray], int]:
        """The epoch's global batches and how many items the tail dropped: only the last batch can
        be short, and one with fewer items than processes × accumulation cannot split. A batch is
        split into micro-batches when its step comes, so the plan holds one index array per epoch."""
        t = self.cfg.train
        size = t.per_device_batch_size * parts
        plan = global_batches(lengths, size, seed=t.seed, epoch=epoch, group_by_length=self.cfg.data.group_by_length)
        if plan and len(plan[-1]) < parts:
            return plan[:-1], len(plan[-1])
        return plan, 0

    def _epoch_plan(self, run: Run) -> list[np.ndarray]:
        """The current epoch's plan; its unsplittable tail is counted once per epoch."""
        plan, dropped = self._plan(run.lengths, run.state.epoch, run.parts)
        run.dropped_tail += dropped
        return plan

    # -- one optimizer step ----------------------------------------------------------------

    def _train_step(self, run: Run, micro: list[np.ndarray], signalled: float = 0.0) -> dict[str, float]:
        acc, t, feats = run.acc, self.cfg.train, run.train_f
        world, accum = acc.num_processes, t.gradient_accumulation_steps
        mine = [micro[a * world + acc.process_index] for a in range(accum)]
        every = np.concatenate(micro)  # every process knows the whole global batch
        global_n = max(run.loss_fn.count(feats.labels(every), len(every)), 1)
        total_loss, tokens, sums = 0.0, 0, {}
        for idx in mine:
            batch = run.collate(feats.take(idx), run.pad_id).to(acc.device)
            with acc.accumulate(run.model):
                rewards = run.model(batch)
                per_item = run.loss_fn.batch_values(rewards, batch.labels)
                # accelerate (or DeepSpeed) divides by `accum`; DDP averages over `world`.
                acc.backward(per_item.sum() * (world * accum / global_n))
                if acc.sync_gradients and t.max_grad_norm > 0:
                    acc.clip_grad_norm_(run.model.parameters(), t.max_grad_norm)
                run.opt.step()
                run.opt.zero_grad(set_to_none=True)
            total_loss += per_item.detach().sum().item()
            tokens += batch.n_tokens
            run.positions += batch.n_positions
            for name, value in run.loss_fn.step_metrics(rewards.detach(), batch.labels).items():
                sums[name] = sums.get(name, 0.0) + value
        if not run.opt.step_was_skipped:  # an fp16 overflow skipped the update: the schedule waits too
            run.sched.step()
        # `signalled` (a SIGTERM/SIGINT seen by this rank) rides on the step's one all-reduce
        # (and so do the loss's step metrics, each a sum over units divided like the loss)
        stats = acc.reduce(torch.tensor([total_loss, tokens, signalled, *sums.values()], dtype=torch.float64,
                                        device=acc.device), reduction="sum").tolist()
        out = {"loss": stats[0] / global_n, "tokens": stats[1], "items": len(every),
               "lr": run.sched.get_last_lr()[0], "signalled": stats[2]}
        out.update({name: value / global_n for name, value in zip(sums, stats[3:])})
        return out

    def _log(self, run: Run, stats: dict[str, float]) -> None:
        self._sanity.observe(run.state.step, stats)
        run.tokens += stats["tokens"]
        run.items += stats["items"]
        run.bar.update(1)
        run.bar.set_postfix({k: f"{v:.3g}" for k, v in stats.items() if k in ("loss", "accuracy")})
        if run.state.step % self.cfg.train.log_every == 0 or run.state.step == run.total:
            run.acc.log({f"train/{k}": v for k, v in stats.items()}, step=run.state.step)
            if not self.cfg.train.progress:  # no bar to show the loss: print it
                run.acc.print(f"step {run.state.step}/{run.total}: {_fmt(stats)}")

    def _eval_kwargs(self, run: Run) -> dict:
        return dict(kind=run.examples.kind, attributes=run.examples.attributes, pad_id=run.pad_id,
                    batch_size=self.cfg.train.eval_batch_size, accelerator=run.acc, packing=self.cfg.data.packing,
                    shared_prompt=self.cfg.data.shared_prompt)

    def _evaluate(self, run: Run) -> dict:
        """The primary evaluation set (it ranks checkpoints), then each of ``data.eval_sets`` by name."""
        metrics = run.last_eval = evaluate(run.model, run.loss_fn, run.eval_f, **self._eval_kwargs(run))
        run.acc.log({f"eval/{k}": v for k, v in metrics.items()}, step=run.state.step)
        run.state.history.append({"step": run.state.step, **metrics})
        run.acc.print(f"step {run.state.step}: eval {_fmt(metrics)}")
        for name, fs in run.examples.eval_sets.items():
            m = run.last_eval_sets[name] = evaluate(run.model, run.loss_fn, fs, **self._eval_kwargs(run))
            run.acc.log({f"eval/{name}/{k}": v for k, v in m.items()}, step=run.state.step)
            run.state.history.append({"step": run.state.step, "eval_set": name, **m})
            run.acc.print(f"step {run.state.step}: eval {name} {_fmt(m)}")
        return metrics

    # -- writing ---------------------------------------------------------------------------

    def _export(self, run: Run, out_dir: Path, extra: dict | None = None) -> None:
        """The model's own save (``save``: a plain transformers directory, or a LoRA reward model's
        verified adapter + head); every rank takes part (ZeRO-3 gathers shards here)."""
        run.acc.unwrap_model(run.model).save(run.acc, run.model, out_dir, lora=self.cfg.model.lora, extra=extra)

    def _write_dir(self, run: Run, final: Path, write: Callable[[Path], None],
                   main_only: Callable[[Path], None] | None = None) -> None:
        """Write ``final`` as ``<final>.tmp`` and publish it by renames (``rmlib.io.publish_dir``).

        The one path for checkpoints and the final model: a kill at any moment leaves the previous
        complete directory; every rank writes into the staging directory before rank 0 renames it.
        """
        acc = run.acc
        tmp = final.with_name(final.name + ".tmp")
        if acc.is_main_process:
            staging_dir(final)  # a leftover from a crashed save must not mix with our files
        acc.wait_for_everyone()
        try:
            write(tmp)
            acc.wait_for_everyone()
            if acc.is_main_process:
                if main_only is not None:
                    main_only(tmp)
                publish_dir(tmp, final)
        except OSError as e:  # disk full, file too large, permissions: name the file and the OS's reason
            raise CheckpointError(f"saving {final} failed: {e.strerror or e} ({e.filename or tmp}); the previous "
                                  f"complete copy, if any, is untouched") from e
        acc.wait_for_everyone()

    def _save_checkpoint(self, run: Run, metrics: dict | None) -> None:
        state, acc = run.state, run.acc
        name = f"step-{state.step:07d}"
        if metrics is not None:
            state.best.append((metrics["loss"], name))

        def write(tmp: Path) -> None:
            save_state(acc, run.model, run.opt, run.sched, tmp / "state")
            self._export(run, tmp / "model")

        def bookkeeping(tmp: Path) -> None:
            (tmp / "config.yaml").write_text(to_yaml(self.cfg))
            state.data_fingerprint, state.num_processes = run.fingerprint, acc.num_processes
            state.save(tmp / ckpt.STATE_FILE)

        self._write_dir(run, ckpt.checkpoint_dir(self.root) / name, write, bookkeeping)
        if acc.is_main_process:
            ckpt.prune(self.root, state, self.cfg.train.keep_best)
        acc.wait_for_everyone()

    def _feature_stats(self, run: Run) -> dict:
        """Which ranks built features and how long they tokenized (a non-main rank builds nothing)."""
        from accelerate.utils import gather_object

        mine = (run.examples.built, round(run.examples.tokenize_seconds, 3))
        per_rank = gather_object([mine]) if run.acc.num_processes > 1 else [mine]
        return {"built_by_rank": [b for b, _ in per_rank], "tokenize_seconds_by_rank": [t for _, t in per_rank],
                "truncated_prompts": run.examples.truncated_prompts}

    def _finish(self, run: Run) -> dict:
        acc = run.acc
        run.bar.close()
        elapsed = time.perf_counter() - run.started
        positions = acc.reduce(torch.tensor(float(run.positions), device=acc.device), reduction="sum").item()
        summary = {
            "steps": run.state.step, "train_seconds": round(elapsed, 2),
            "tokens_per_s": run.tokens / elapsed if elapsed else 0.0,
            "items_per_s": run.items / elapsed if elapsed else 0.0,
            "padding_fraction": 1 - run.tokens / positions if positions else 0.0,
            "dropped_incomplete_batch_items": run.dropped_tail, "eval_before": run.eval_before,
            "eval": run.last_eval, "eval_sets": run.last_eval_sets, "data_report": run.examples.report.to_dict(),
            "eval_source": run.examples.eval_source, "num_processes": acc.num_processes,
            "features": self._feature_stats(run),
            "distributed_type": str(acc.distributed_type),
        }
        final = self.root / "model"
        self._write_dir(run, final, lambda tmp: self._export(run, tmp, extra={"summary": summary}))
        if acc.is_main_process:
            write_text(to_yaml(self.cfg), self.root / "config.yaml")
            write_text(json.dumps(summary, indent=2, default=str), self.root / "summary.json")
            finish_training_output(final, config_yaml=to_yaml(self.cfg), summary=summary,  # card (+ upload)
                                   push_to_hub=self.cfg.train.push_to_hub)
        summary["model_dir"] = str(final)
        unit = {"pairs": "pairs", "lists": "lists"}.get(run.examples.kind, "rows")
        acc.print(f"done: {run.state.step} steps in {elapsed:.1f}s, {summary['items_per_s']:.1f} {unit}/s, "
                  f"{summary['tokens_per_s']:.0f} tokens/s; model saved to {final}")
        acc.end_training()
        return summary


def train(config: Config | str | Path | dict, overrides: list[str] | None = None) -> dict:
    """Train a reward model from a config (object, YAML path or dict); returns the run summary."""
    return Trainer(config, overrides).fit()


def _flat(cfg: Config) -> dict:
    from dataclasses import asdict

    out = {}
    for section, values in asdict(cfg).items():
        for k, v in values.items():
            out[f"{section}.{k}"] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out


def _fmt(metrics: dict) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", dynamic_ncols=True)
