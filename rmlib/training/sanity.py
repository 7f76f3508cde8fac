"""Warnings for training runs that look broken, each naming its likely cause and the fix.

Each check is a pure function of a few numbers that returns the warning text or ``None``, so it
is unit-testable; :class:`SanityMonitor` feeds them from the trainer (the config and the first
rewards at the start, the logged stats at every step) and emits :class:`SanityWarning` on the main
process. ``train.sanity_checks=false`` turns all of them off.

The numbers behind the thresholds:

* a freshly initialised head gives rewards near 0, so the Bradley-Terry loss at step 0 is
  ``-log σ(0) = ln 2 ≈ 0.693`` up to the spread of the initial rewards;
* a linear head initialised with std ``σ`` (transformers' ``initializer_range``, 0.02) over hidden
  states of norm ``‖h‖`` (about ``√d`` after the final norm) gives rewards of std ``σ‖h‖``, about 1.3
  at ``d = 4096``: rewards of std or mean above 5 come from a trained head (a reused value head or
  a reward model's), which saturates the loss and slows learning;
* accuracy over ``n`` pairs of a model that has learnt nothing is 0.5 with std ``√(0.25/n)``; a
  window of at least 256 pairs within two std of 0.5 after :data:`STUCK_AFTER_STEPS` steps is
  "stuck".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

LN2 = math.log(2.0)
INITIAL_LOSS_TOLERANCE = 0.15  # |loss - ln 2| at step 0 (BT)
MAX_INITIAL_REWARD = 5.0  # |mean| or std of step-0 rewards
FULL_FINE_TUNE_MAX_LR = 1e-4
STUCK_AFTER_STEPS = 100
STUCK_MIN_PAIRS = 256
INITIAL_REWARD_SEQUENCES = 64
OFF = "train.sanity_checks=false turns this check off."


class SanityWarning(UserWarning):
    """A training run that is probably misconfigured."""


def initial_loss_problem(loss: float, loss_name: str) -> str | None:
    """The step-0 loss of a Bradley-Terry run is far from ln 2."""
    if loss_name != "bt" or (math.isfinite(loss) and abs(loss - LN2) <= INITIAL_LOSS_TOLERANCE):
        return None
    return (f"the BT loss at step 0 is {loss:.3f}, far from ln 2 = {LN2:.3f} (a fresh head scores both responses "
            "alike): the head is not freshly initialised, or chosen/rejected are swapped or identical. Start from "
            f"the base model so the head is new, and check the data's chosen/rejected columns. {OFF}")


def reward_scale_problem(mean: float, std: float) -> str | None:
    """Step-0 rewards whose scale a fresh head does not produce, or one reward for every input."""
    if abs(mean) > MAX_INITIAL_REWARD or std > MAX_INITIAL_REWARD:
        return (f"rewards at step 0 have mean {mean:.3g} and std {std:.3g}; a freshly initialised head gives "
                f"values near 0 (|mean|, std <= {MAX_INITIAL_REWARD:g}). The head was loaded trained (a reused "
                "value head or another reward model's head): train from the base model for a new head, or use "
                f"model.init_from_regression_attribute for the two-stage recipe. {OFF}")
    if abs(mean) > 1e-6 and std <= 1e-6 * abs(mean):
        return (f"every sequence gets the same reward ({mean:.4g}) at step 0: the head reads the same token "
                f"everywhere (a pad token?) instead of each end-of-response token. Check the tokenizer's pad "
                f"token and padding side. {OFF}")
    return None


def learning_rate_problem(lr: float, full_fine_tune: bool) -> str | None:
    """A learning rate that wrecks a pretrained model when every weight trains."""
    if not full_fine_tune or lr < FULL_FINE_TUNE_MAX_LR:
        return None
    return (f"train.lr={lr:g} on a full fine-tune: reward models are fine-tuned at 1e-6 to 2e-5, and rates "
            f">= {FULL_FINE_TUNE_MAX_LR:g} destroy the pretrained features (loss spikes, accuracy back to 0.5). "
            f"Lower train.lr, or train LoRA (model.lora.enabled=true), which takes such rates. {OFF}")


def accuracy_stuck_problem(correct: float, pairs: float, steps: int) -> str | None:
    """Training accuracy within noise of 0.5 over a window of ``pairs`` pairs ending at ``steps``."""
    if pairs < STUCK_MIN_PAIRS:
        return None
    acc, noise = correct / pairs, 2 * math.sqrt(0.25 / pairs)
    if abs(acc - 0.5) > noise:
        return None
    return (f"training accuracy is {acc:.3f} over the last {int(pairs)} pairs after {steps} steps, within noise "
            f"(±{noise:.3f}) of chance: the model is not learning. Usual causes: a base model that is not "
            "instruction-tuned (start from an instruct/chat model), a learning rate too small (raise train.lr), or "
            f"the reward read at the wrong token (check the pad token and padding). {OFF}")


def head_rank_problem(fingerprints: Sequence[float]) -> str | None:
    """The reward head's initial values differ between processes (one fingerprint per rank)."""
    if len(fingerprints) < 2:
        return None
    ref = fingerprints[0]
    if all(math.isclose(f, ref, rel_tol=1e-6, abs_tol=1e-9) for f in fingerprints[1:]):
        return None
    return (f"the initialised reward head differs between processes (fingerprints {list(fingerprints)}): each "
            "rank initialised it with its own random values, so under ZeRO-3 every rank keeps a slice of a "
            "different head. Seed every rank alike before the model is built (train.seed, no per-rank seed) or "
            f"enable zero3_init_flag so the head is initialised once and partitioned. {OFF}")


# -- what the trainer calls ------------------------------------------------------------------------

def _warn(acc: Any, message: str | None) -> None:
    if message and (acc is None or acc.is_main_process):
        warnings.warn(message, SanityWarning, stacklevel=3)


def head_fingerprint(model: Any) -> float:
    """A number that changes with any value of the reward head's parameters (all processes call this).

    Parameters partitioned by ZeRO-3 are gathered first, so the value describes the whole head.
    """
    import torch

    hf = model._hf if hasattr(model, "_hf") else model
    prefix = getattr(hf, "base_model_prefix", None)
    params = [p for name, child in hf.named_children() if name != prefix for p in child.parameters()]
    gathered: Any = None
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        gathered = deepspeed.zero.GatheredParameters(params)
        gathered.__enter__()
    try:
        total = 0.0
        for p in params:
            flat = p.detach().double().flatten().cpu()
            total += float((flat * torch.linspace(1.0, 2.0, flat.numel(), dtype=torch.float64)).sum())
        return total
    finally:
        if gathered is not None:
            gathered.__exit__(None, None, None)


def check_head_across_ranks(acc: Any, model: Any, enabled: bool = True) -> None:
    """Before ``accelerator.prepare``: warn when processes built different heads (every rank calls this)."""
    if not enabled or acc.num_processes < 2:
        return
    from accelerate.utils import gather_object

    _warn(acc, head_rank_problem(gather_object([head_fingerprint(model)])))


class SanityMonitor:
    """The checks of one run: :meth:`start` after setup, :meth:`observe` at every logged step."""

    def __init__(self, enabled: bool, loss_name: str, fresh_head: bool, acc: Any = None,
                 check_at: int = STUCK_AFTER_STEPS):
        self.enabled, self.loss_name, self.fresh_head, self.acc = enabled, loss_name, fresh_head, acc
        self.check_at = check_at
        self.first_step = None  # the first step observed (1 for a run that starts from scratch)
        self.window: list[tuple[float, float]] = []  # (correct, pairs) per observed step
        self.stuck_checked = False

    @classmethod
    def start(cls, cfg: Any, run: Any) -> SanityMonitor:
        """Config checks, and the step-0 rewards of a run that starts from scratch."""
        t = cfg.train
        if t.push_to_hub:  # found now, not after the training
            from huggingface_hub.utils import validate_repo_id

            from rmlib.config import ConfigError

            try:
                validate_repo_id(t.push_to_hub)
            except ValueError as e:
                raise ConfigError(f"config key 'train.push_to_hub': {e}") from None
        fresh = run.state.step == 0 and not cfg.model.init_from_regression_attribute
        mon = cls(t.sanity_checks, cfg.loss.name, fresh, run.acc, check_at=min(STUCK_AFTER_STEPS, run.total))
        if not t.sanity_checks:
            return mon
        _warn(run.acc, learning_rate_problem(t.lr, not cfg.model.lora.enabled))
        if fresh and getattr(run.loss_fn, "model_kind", "reward") == "reward":  # a causal LM has no reward scale
            mean, std = initial_reward_stats(run)
            _warn(run.acc, reward_scale_problem(mean, std))
        return mon

    def observe(self, step: int, stats: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.first_step is None:
            self.first_step = step
            if step == 1 and self.fresh_head:
                _warn(self.acc, initial_loss_problem(stats["loss"], self.loss_name))
        if "accuracy" not in stats or self.stuck_checked:
            return
        self.window.append((stats["accuracy"] * stats["items"], stats["items"]))
        if len(self.window) >= self.check_at:
            self.stuck_checked = True
            half = self.window[len(self.window) // 2:]  # the second half: past the first steps' noise
            _warn(self.acc, accuracy_stuck_problem(sum(c for c, _ in half), sum(n for _, n in half), step))


def initial_reward_stats(run: Any) -> tuple[float, float]:
    """Mean and std of the untrained model's rewards on the first training sequences (all ranks)."""
    from rmlib.models.scoring import score_sequences

    n = min(len(run.train_f), INITIAL_REWARD_SEQUENCES // 2)
    items = run.train_f.take(list(range(n))) if hasattr(run.train_f, "take") else list(run.train_f)[:n]
    seqs = [s for f in items for s in ((f.chosen, f.rejected) if hasattr(f, "chosen")
                                       else f.seqs if hasattr(f, "seqs") else (f.seq,))]
    rewards = score_sequences(run.model, seqs, pad_id=run.pad_id, accelerator=run.acc).double()
    if rewards.numel() == 0:
        return 0.0, 0.0
    std = float(rewards.std(unbiased=False)) if rewards.numel() > 1 else 0.0
    return float(rewards.mean()), std
