"""One training loop for every backend Accelerate drives (CPU, GPU, DDP, DeepSpeed, FSDP).

``fit()`` reads top to bottom: data, model, optimizer, resume, loop (step, log, evaluate,
checkpoint), final save. The details live in the small helpers below and in sibling modules.

Batches are built as *global* batches (``per_device_batch_size × accumulation × processes``
items) from a sequence fixed by (seed, epoch); each process takes its micro-batches from every
global batch. So one process × accumulation 4 and two processes × accumulation 2 see the same
global batches, and a resumed run continues the same sequence. The loss of a micro-batch is its
*sum* divided by the global batch's item count, so uneven micro-batches are weighted correctly.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import torch

from rmlib.config import Config, ConfigError, load_config, to_yaml
from rmlib.data.collate import (
    collate_pairs,
    collate_pairs_shared,
    collate_rated,
    global_batches,
    split_global_batch,
)
from rmlib.training import checkpoint as ckpt
from rmlib.training.backends import build_adamw, configure_deepspeed
from rmlib.training.data import Examples, load_examples
from rmlib.training.evaluate import evaluate
from rmlib.training.launch import make_accelerator

BUILTIN_MODELS = {"minilm-l6": "rmlib.testing:minilm_path"}


def resolve_model_path(name: str) -> str:
    """Built-in aliases (``minilm-l6``) resolve to files shipped by a PyPI package."""
    if name in BUILTIN_MODELS:
        import importlib

        mod, fn = BUILTIN_MODELS[name].split(":")
        return getattr(importlib.import_module(mod), fn)()
    return name


class Trainer:
    """``Trainer(config).fit()``; the constructor only validates the config."""

    def __init__(self, config: Config | str | Path | dict, overrides: list[str] | None = None):
        if isinstance(config, Config):
            self.cfg = config
        elif isinstance(config, dict):
            self.cfg = load_config(None, overrides, base=config)
        else:
            self.cfg = load_config(config, overrides)
        self.root = Path(self.cfg.train.output_dir)

    # -- setup -----------------------------------------------------------------------------

    def _build_model(self, attributes: list[str]):
        from rmlib.models import RewardModel
        from rmlib.models.reward_model import enable_checkpointing

        m = self.cfg.model
        path = resolve_model_path(m.name_or_path)
        common = dict(dtype=m.dtype, trust_remote_code=m.trust_remote_code,
                      attn_implementation=m.attn_implementation, max_length=self.cfg.data.max_length)
        if m.lora.enabled:  # PEFT LoRA/QLoRA with the head in modules_to_save (rmlib/models/lora.py)
            from rmlib.models.lora import build_lora_model

            return build_lora_model(path, attributes, m, device=self.acc.device, **common)
        if m.init_from_regression_attribute:
            model = RewardModel.from_pretrained(path, **common)
            model.keep_attributes([m.init_from_regression_attribute], rename=attributes)
        else:
            model = RewardModel.from_pretrained(path, attributes=attributes, **common)
        if m.gradient_checkpointing:
            enable_checkpointing(model._hf)
        return model

    def _optimizer(self, model, total_steps: int):
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
        opt = build_adamw(self.acc, groups, lr=t.lr, betas=tuple(t.adam_betas), eps=t.adam_eps)
        sched = get_scheduler(t.scheduler, opt, num_warmup_steps=math.ceil(t.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
        return opt, sched

    def _plan(self, lengths: list[int], epoch: int, parts: int) -> tuple[list[list[list[int]]], int]:
        """The epoch's global batches, each split into ``parts`` micro-batches, and how many items
        the tail dropped (a last batch with fewer items than processes × accumulation cannot split)."""
        t = self.cfg.train
        size = t.per_device_batch_size * parts
        plan, dropped = [], 0
        for gb in global_batches(lengths, size, seed=t.seed, epoch=epoch, group_by_length=self.cfg.data.group_by_length):
            micro = split_global_batch(gb, lengths, parts)
            if micro is None:
                dropped += len(gb)
                continue
            plan.append(micro)
        return plan, dropped

    # -- one optimizer step ----------------------------------------------------------------

    def _item_losses(self, rewards: torch.Tensor, batch) -> torch.Tensor:
        if batch.num_pairs:
            n = batch.num_pairs
            kw = {}
            if self.loss_fn.needs_margin:
                kw["margin"] = batch.margin
            if getattr(self.loss_fn, "needs_target_prob", False):
                kw["target_prob"] = batch.target_prob
            return self.loss_fn(rewards[:n, 0], rewards[n:, 0], **kw)
        return self.loss_fn(rewards, batch.targets)

    def _units(self, feats, idx: list[int]) -> int:
        """What the step's loss is a mean over: pairs, or rated rows with a (weighted) target.

        Every process knows the whole global batch, so each divides by the same count. For
        regression this is the loss's own ``num_units`` (rows whose only targets carry weight 0 add
        nothing to the sum and must not dilute it).
        """
        if self.examples.kind == "pairs":
            return len(idx)
        return self.loss_fn.num_units(torch.tensor([feats[k].targets for k in idx], dtype=torch.float32))

    def _train_step(self, model, opt, sched, feats, micro: list[list[int]]) -> dict[str, float]:
        acc, t = self.acc, self.cfg.train
        world, accum = acc.num_processes, t.gradient_accumulation_steps
        mine = [micro[a * world + acc.process_index] for a in range(accum)]
        rows = sum(len(mb) for mb in micro)
        global_n = max(self._units(feats, [k for mb in micro for k in mb]), 1)
        total_loss, correct, tokens = 0.0, 0, 0
        for idx in mine:
            batch = self.collate([feats[k] for k in idx], self.pad_id, packing=self.cfg.data.packing)
            batch = batch.to(acc.device)
            with acc.accumulate(model):
                rewards = model(batch)
                per_item = self._item_losses(rewards, batch)
                # accelerate (or DeepSpeed) divides by `accum`; DDP averages over `world`.
                acc.backward(per_item.sum() * (world * accum / global_n))
                if acc.sync_gradients and t.max_grad_norm > 0:
                    acc.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                opt.step()
                opt.zero_grad(set_to_none=True)
            total_loss += per_item.detach().sum().item()
            tokens += batch.n_tokens
            self.positions += batch.n_positions
            if batch.num_pairs:
                n = batch.num_pairs
                correct += int((rewards[:n, 0] > rewards[n:, 0]).sum())
        if not opt.step_was_skipped:  # an fp16 overflow skipped the update: the schedule waits too
            sched.step()
        stats = acc.reduce(torch.tensor([total_loss, correct, tokens], dtype=torch.float64, device=acc.device),
                           reduction="sum").tolist()
        out = {"loss": stats[0] / global_n, "tokens": stats[2], "items": rows, "lr": sched.get_last_lr()[0]}
        if self.examples.kind == "pairs":
            out["accuracy"] = stats[1] / global_n
        return out

    # -- checkpoints -----------------------------------------------------------------------

    def _export(self, model, out_dir: Path, extra: dict | None = None) -> None:
        """A plain transformers directory; every rank takes part (ZeRO-3 gathers shards here)."""
        acc = self.acc
        if self.cfg.model.lora.enabled:  # adapter + head + tokenizer, verified by reloading a probe batch
            from rmlib.models.lora import save_checked

            save_checked(acc, model, out_dir, lora=self.cfg.model.lora, extra=extra)
            return
        state_dict = acc.get_state_dict(model)
        if state_dict is not None:  # strip the RewardModel prefix: the HF module is saved as-is
            state_dict = {k.removeprefix("model."): v for k, v in state_dict.items()}
        acc.unwrap_model(model).save_pretrained(out_dir, state_dict=state_dict,
                                                is_main_process=acc.is_main_process, extra=extra)

    def _save_checkpoint(self, model, state: ckpt.TrainerState, metrics: dict | None) -> None:
        acc = self.acc
        name = f"step-{state.step:07d}"
        if metrics is not None:
            state.best.append((metrics["loss"], name))
        tmp = ckpt.checkpoint_dir(self.root) / f"{name}.tmp"
        if acc.is_main_process:
            ckpt.begin(self.root, name)
        acc.wait_for_everyone()
        acc.save_state(str(tmp / "state"))
        self._export(model, tmp / "model")
        acc.wait_for_everyone()  # every rank has finished writing into tmp before rank 0 renames it
        if acc.is_main_process:
            (tmp / "config.yaml").write_text(to_yaml(self.cfg))
            state.save(tmp / ckpt.STATE_FILE)
            ckpt.commit(tmp)
            ckpt.prune(self.root, state, self.cfg.train.keep_best)
        acc.wait_for_everyone()

    # -- the loop --------------------------------------------------------------------------

    def fit(self) -> dict:
        cfg, t = self.cfg, self.cfg.train
        from rmlib.losses import get_loss

        self.examples: Examples = load_examples(cfg)  # fails on bad data before any model is loaded
        if self.examples.kind == "pairs" and len(self.examples.attributes) != 1:
            raise ConfigError(f"pairwise losses train one output, got model.attributes={self.examples.attributes}")
        self.loss_fn = get_loss(cfg.loss.name, reduction="none", **cfg.loss.options)
        self.acc = acc = make_accelerator(
            mixed_precision=t.mixed_precision, gradient_accumulation_steps=t.gradient_accumulation_steps,
            log_with=None if t.report_to == "none" else t.report_to, project_dir=str(self.root))
        from accelerate.utils import set_seed

        set_seed(t.seed)
        model = self._build_model(self.examples.attributes)
        self.pad_id = model.tokenizer.pad_token_id
        report = self.examples.report
        feat = model.featurizer(cfg.data.max_length, cfg.data.keep_system)
        if self.examples.kind == "pairs":
            train_f, eval_f = feat.pairs(self.examples.train, report), feat.pairs(self.examples.eval, report)
            self.collate = collate_pairs_shared if cfg.data.shared_prompt else collate_pairs
        else:
            attrs = self.examples.attributes
            train_f, eval_f = feat.rated(self.examples.train, attrs, report), feat.rated(self.examples.eval, attrs, report)
            if cfg.data.shared_prompt:
                raise ConfigError("data.shared_prompt=true needs preference pairs (a prompt with two responses)")
            self.collate = collate_rated
        acc.print(report.format())
        acc.print(f"train {len(train_f)} | eval {len(eval_f)} ({self.examples.eval_source}) | "
                  f"sequences with a left-truncated prompt: {feat.truncated_prompts}")
        if not train_f:
            raise ConfigError("no training examples survived tokenization (see the data report)")

        parts = acc.num_processes * t.gradient_accumulation_steps
        lengths = [f.n_tokens for f in train_f]
        steps_per_epoch = len(self._plan(lengths, 0, parts)[0])
        if steps_per_epoch == 0:
            raise ConfigError(f"{len(train_f)} training items cannot fill one global batch split {parts} ways")
        total = t.max_steps if t.max_steps > 0 else t.epochs * steps_per_epoch
        opt, sched = self._optimizer(model, total)
        configure_deepspeed(acc, t)  # no DataLoader is prepared: DeepSpeed's batch sizes come from train.*
        model, opt = acc.prepare(model, opt)
        # transformers loads models in eval mode: without this, dropout is off and gradient
        # checkpointing (which only acts while training) silently keeps every activation
        model.train()
        acc.register_for_checkpointing(sched)
        if t.report_to != "none":
            acc.init_trackers("rmlib", config=json.loads(json.dumps(_flat(cfg), default=str)))

        state = ckpt.TrainerState()
        resume = ckpt.resolve_resume(t.resume_from, self.root)
        if resume is not None:
            acc.load_state(str(resume / "state"))
            state = ckpt.TrainerState.load(resume / ckpt.STATE_FILE)
            acc.print(f"resumed from {resume} at step {state.step}")
            if acc.is_main_process:
                for p in ckpt.set_aside_newer(self.root, state.step):
                    acc.print(f"  {p.name}: newer than the resume point, set aside (not resumed from, not pruned)")
            acc.wait_for_everyone()

        eval_kw = dict(kind=self.examples.kind, attributes=self.examples.attributes, pad_id=self.pad_id,
                       batch_size=t.eval_batch_size, accelerator=acc, packing=cfg.data.packing)
        initial = None
        if state.step == 0 and eval_f and t.eval_at_start:
            initial = evaluate(model, self.loss_fn, eval_f, **eval_kw)
            acc.print(f"eval before training: {_fmt(initial)}")
        self.positions, tokens, items, dropped_tail, t0 = 0, 0, 0, 0, time.perf_counter()
        bar = _progress(total, state.step, acc.is_main_process and t.progress)
        last_eval = None
        while state.step < total:
            plan, dropped = self._plan(lengths, state.epoch, parts)
            dropped_tail += dropped
            for micro in plan[state.batch_in_epoch:]:
                stats = self._train_step(model, opt, sched, train_f, micro)
                state.step += 1
                state.batch_in_epoch += 1
                tokens += stats["tokens"]
                items += stats["items"]
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in stats.items() if k in ("loss", "accuracy")})
                if state.step % t.log_every == 0 or state.step == total:
                    acc.log({f"train/{k}": v for k, v in stats.items()}, step=state.step)
                end_of_epoch = state.batch_in_epoch == len(plan)
                due_save = t.save_every and (state.step % t.save_every == 0 or state.step == total)
                # keep-best ranks checkpoints by eval loss, so every checkpoint gets one
                due_eval = (t.eval_every and state.step % t.eval_every == 0) or (
                    not t.eval_every and end_of_epoch) or state.step == total or (due_save and t.keep_best > 0)
                metrics = None
                if due_eval and eval_f:
                    metrics = last_eval = evaluate(model, self.loss_fn, eval_f, **eval_kw)
                    acc.log({f"eval/{k}": v for k, v in metrics.items()}, step=state.step)
                    state.history.append({"step": state.step, **metrics})
                    acc.print(f"step {state.step}: eval {_fmt(metrics)}")
                if end_of_epoch:
                    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                if due_save:
                    self._save_checkpoint(model, state, metrics)
                if state.step >= total:
                    break
        bar.close()
        elapsed = time.perf_counter() - t0
        summary = {
            "steps": state.step, "train_seconds": round(elapsed, 2),
            "tokens_per_s": tokens / elapsed if elapsed else 0.0, "items_per_s": items / elapsed if elapsed else 0.0,
            "padding_fraction": 1 - tokens / acc.reduce(torch.tensor(float(self.positions), device=acc.device),
                                                        reduction="sum").item() if self.positions else 0.0,
            "dropped_incomplete_batch_items": dropped_tail, "eval_before": initial, "eval": last_eval,
            "data_report": report.to_dict(), "eval_source": self.examples.eval_source,
            "num_processes": acc.num_processes, "distributed_type": str(acc.distributed_type),
        }
        final = self.root / "model"
        staging = self.root / "model.tmp"  # a crash mid-save leaves the previous final model intact
        if acc.is_main_process and staging.exists():
            shutil.rmtree(staging)  # left by a crashed save: its stale files must not mix with ours
        acc.wait_for_everyone()
        self._export(model, staging, extra={"summary": summary})
        acc.wait_for_everyone()
        if acc.is_main_process:
            ckpt.publish(staging, final)
            (self.root / "config.yaml").write_text(to_yaml(cfg))
            (self.root / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        summary["model_dir"] = str(final)
        acc.print(f"done: {state.step} steps in {elapsed:.1f}s, {summary['items_per_s']:.1f} "
                  f"{'pairs' if self.examples.kind == 'pairs' else 'rows'}/s, {summary['tokens_per_s']:.0f} tokens/s; "
                  f"model saved to {final}")
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
