"""Pairwise losses: Bradley-Terry and its variants on (chosen, rejected) reward pairs.

All of them are functions of Δ = r_c − r_r plus an optional per-pair label, so the base class does
the shared work once (shape checks, fp32 upcast, label validation, centering, reduction) and each
loss only writes its per-pair formula.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from rmlib.losses.registry import Reduction, RewardLoss, get_loss_class, list_losses, register_loss

LabelLike = torch.Tensor | float | int | None

# label name -> (which values are valid, how to say so). Checked once per call: a bad label is a
# data bug that should stop training, not a NaN that surfaces thousands of steps later. Labels of
# losses outside this table only need to be finite.
_LABEL_RULES: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], str]] = {
    "margin": (
        lambda t: torch.isfinite(t) & (t >= 0),
        "finite and >= 0 (orient pairs so that chosen is preferred; a signed NeMo strength m becomes |m|)",
    ),
    "target_prob": (lambda t: (t >= 0) & (t <= 1), "in [0, 1] (the probability that chosen is preferred)"),
}
_FINITE = (torch.isfinite, "finite")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for half/bf16 rewards (log-sigmoid of small differences loses too much in 8-bit mantissas),
    fp64 kept as fp64 so gradcheck and reference computations stay exact."""
    if not dtype.is_floating_point:
        raise TypeError(f"rewards must be a floating-point tensor, got {dtype}")
    return torch.promote_types(dtype, torch.float32)


def _pair_vector(rewards: torch.Tensor, what: str) -> torch.Tensor:
    """(B,) or (B, 1) → (B,) in the compute dtype. Wider shapes are rejected: a multi-head output
    must be sliced to its reward head by the caller, never silently flattened into more pairs."""
    if not isinstance(rewards, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(rewards).__name__}")
    if rewards.dim() == 2 and rewards.shape[1] == 1:
        rewards = rewards[:, 0]
    if rewards.dim() != 1:
        raise ValueError(f"{what} must have shape (B,) or (B, 1), got {tuple(rewards.shape)}")
    if rewards.numel() == 0:
        raise ValueError(f"{what} is empty: a pairwise loss needs at least one pair")
    return rewards.to(compute_dtype(rewards.dtype))


class PairwiseLoss(RewardLoss):
    """Base of losses on chosen/rejected rewards; subclasses implement :meth:`per_pair`.

    ``center_coef`` (λ) adds λ·(r_c + r_r)² per pair: the Bradley-Terry loss only sees differences,
    so the rewards' common offset drifts freely; this pins it near zero (reward centering) without
    changing which response is preferred.
    """

    family = "pairwise"
    count_unit = "pairs"
    data_kind = "pairs"

    def __init__(self, *, reduction: Reduction = "mean", center_coef: float = 0.0) -> None:
        super().__init__(reduction=reduction)
        if not (math.isfinite(center_coef) and center_coef >= 0):
            raise ValueError(
                f"{type(self).__name__}: center_coef must be finite and >= 0, got {center_coef!r}"
            )
        self.center_coef = float(center_coef)

    def forward(
        self,
        chosen_rewards: torch.Tensor,
        rejected_rewards: torch.Tensor,
        margin: LabelLike = None,
        target_prob: LabelLike = None,
        **labels: LabelLike,
    ) -> torch.Tensor:
        chosen = _pair_vector(chosen_rewards, "chosen_rewards")
        rejected = _pair_vector(rejected_rewards, "rejected_rewards")
        if chosen.shape != rejected.shape:
            raise ValueError(
                f"chosen_rewards and rejected_rewards differ in length: {chosen.numel()} vs {rejected.numel()}"
            )
        dtype = torch.promote_types(chosen.dtype, rejected.dtype)
        chosen, rejected = chosen.to(dtype), rejected.to(dtype)
        given = {"margin": margin, "target_prob": target_prob, **labels}
        checked = {name: self._label(value, name, chosen) for name, value in given.items() if value is not None}
        missing = [name for name in self.labels if name not in checked]
        if missing:
            raise ValueError(
                f"loss {self.name or type(self).__name__!r} needs {', '.join(f'{m}=' for m in missing)} "
                "(one value per pair), but none was given"
            )
        values = self.per_pair(chosen - rejected, checked)
        if self.center_coef:
            values = values + self.center_coef * (chosen + rejected).square()
        return self._reduce(values, values.numel())

    def batch_values(self, outputs: torch.Tensor, labels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Rows are chosen-first (``outputs[:n]`` chosen, ``outputs[n:]`` rejected); head 0 is the reward."""
        n = outputs.shape[0] // 2
        return self(outputs[:n, 0], outputs[n:, 0], **{k: labels[k] for k in self.labels})

    def per_pair(self, delta: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
        """Loss of each pair from Δ = r_c − r_r and the labels the loss declared (one value per pair)."""
        raise NotImplementedError

    def num_units(self, chosen_rewards: torch.Tensor) -> int:
        """Pairs in this micro-batch: what a ``reduction="sum"`` value is a sum over."""
        return _pair_vector(chosen_rewards, "chosen_rewards").numel()

    def _label(self, value: LabelLike, name: str, like: torch.Tensor) -> torch.Tensor:
        """Declared labels are checked and broadcast; undeclared ones are refused (never accepted and ignored)."""
        if name not in self.labels:
            users = [n for n in list_losses() if name in get_loss_class(n).labels]
            raise ValueError(
                f"loss {self.name or type(self).__name__!r} cannot use {name}=; drop it or pick a loss that does: {users}"
            )
        label = torch.as_tensor(value, dtype=like.dtype, device=like.device)
        if label.dim() == 2 and label.shape[1] == 1:
            label = label[:, 0]
        if label.dim() > 1 or (label.dim() == 1 and label.numel() != like.numel()):
            raise ValueError(
                f"{name} must be a scalar or have one value per pair ({like.numel()}), got {tuple(label.shape)}"
            )
        valid, rule = _LABEL_RULES.get(name, _FINITE)
        if not bool(valid(label).all()):
            raise ValueError(
                f"{name} values must be {rule}; got {label.flatten()[~valid(label).flatten()][:5].tolist()}"
            )
        return label.expand_as(like)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, center_coef={self.center_coef}"


@register_loss("bt")
class BradleyTerryLoss(PairwiseLoss):
    """−log σ(r_c − r_r): the InstructGPT / NeMo ``regular_bt`` reward-model loss."""

    def per_pair(self, delta, labels):
        return -F.logsigmoid(delta)


@register_loss("margin_bt")
class MarginBradleyTerryLoss(PairwiseLoss):
    """−log σ(r_c − r_r − m) (Llama 2): a confident preference must be won by at least m."""

    labels = ("margin",)

    def per_pair(self, delta, labels):
        return -F.logsigmoid(delta - labels["margin"])


@register_loss("scaled_bt")
class ScaledBradleyTerryLoss(PairwiseLoss):
    """−m · log σ(r_c − r_r) (HelpSteer2-Preference): ``margin`` is the preference strength, a weight;
    m = 0 pairs give zero loss and zero gradient but still count in the mean, as in NeMo-Aligner."""

    labels = ("margin",)

    def per_pair(self, delta, labels):
        return -labels["margin"] * F.logsigmoid(delta)


@register_loss("soft_bt")
class SoftBradleyTerryLoss(PairwiseLoss):
    """Cross-entropy between σ(r_c − r_r) and a soft label p (e.g. share of annotators preferring
    chosen): keeps split votes from being trained as unanimous. p = 1 is exactly ``bt``."""

    labels = ("target_prob",)

    def per_pair(self, delta, labels):
        p = labels["target_prob"]
        return -(p * F.logsigmoid(delta) + (1 - p) * F.logsigmoid(-delta))
