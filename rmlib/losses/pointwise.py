"""Pointwise losses: regression of attribute predictions (B, A) on rated targets (SteerLM / HelpSteer2).

Rated datasets leave attributes unrated (NeMo-Aligner writes −100, our readers may write NaN), so
masking is the heart of these losses: a missing target must contribute neither value nor gradient.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from rmlib.losses.pairwise import compute_dtype
from rmlib.losses.registry import Reduction, RewardLoss, register_loss

MISSING_TARGET = -100.0  # NeMo-Aligner's ``loss_mask_val``


def _as_matrix(x: torch.Tensor, what: str) -> torch.Tensor:
    """(B, A), or (B,) read as one attribute per example."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2:
        raise ValueError(f"{what} must have shape (B, A), got {tuple(x.shape)}")
    return x


class PointwiseLoss(RewardLoss):
    """Base of losses on per-response attribute predictions; subclasses implement :meth:`per_entry`.

    The per-example value is the (weighted) mean of per-entry losses over that example's valid
    attributes, as NeMo-Aligner divides by the number of valid attributes. An example with no valid
    target (all missing, masked, or only zero-weight attributes) has value 0 under
    ``reduction="none"``, adds 0 under ``"sum"`` and is left out of the denominator under
    ``"mean"`` (and out of :meth:`num_units`): counting it would shrink the loss of the batch by
    rows that carry no information. A batch with no valid target at all has mean 0.
    """

    family = "pointwise"
    count_unit = "examples"
    data_kind = "ratings"
    labels = ("targets",)

    def __init__(
        self, *, reduction: Reduction = "mean", attribute_weights: Sequence[float] | None = None
    ) -> None:
        super().__init__(reduction=reduction)
        weights = None
        if attribute_weights is not None:
            weights = [float(w) for w in attribute_weights]
            if not weights or not all(math.isfinite(w) and w >= 0 for w in weights) or not any(weights):
                raise ValueError(
                    f"{type(self).__name__}: attribute_weights must be finite, >= 0 and not all 0, got {attribute_weights!r}"
                )
        self.attribute_weights = weights

    def per_entry(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Loss of each (example, attribute) entry; only called on entries with a valid target."""
        raise NotImplementedError

    def entry_weights(self, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, A) weight of each entry: the attribute weight where the target is valid, else 0."""
        targets = _as_matrix(targets, "targets")
        valid = ~(torch.isnan(targets) | (targets == MISSING_TARGET))
        if mask is not None:
            mask = _as_matrix(mask, "mask")
            if mask.shape != targets.shape:
                raise ValueError(
                    f"mask shape {tuple(mask.shape)} differs from targets shape {tuple(targets.shape)}"
                )
            if mask.dtype != torch.bool:
                if not bool(((mask == 0) | (mask == 1)).all()):
                    raise ValueError("mask must be boolean or hold only 0 and 1")
                mask = mask != 0
            valid = valid & mask.to(valid.device)
        if bool(torch.isinf(targets[valid]).any()):
            raise ValueError("targets hold ±inf at unmasked entries; mark missing targets with NaN or -100")
        weights = valid.to(compute_dtype(targets.dtype) if targets.is_floating_point() else torch.float32)
        if self.attribute_weights is not None:
            if len(self.attribute_weights) != targets.shape[1]:
                raise ValueError(
                    f"attribute_weights has {len(self.attribute_weights)} entries but targets have {targets.shape[1]} attributes"
                )
            weights = weights * torch.tensor(
                self.attribute_weights, dtype=weights.dtype, device=weights.device
            )
        return weights

    def forward(
        self, predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        predictions = _as_matrix(predictions, "predictions")
        targets = _as_matrix(targets, "targets")
        if predictions.shape != targets.shape:
            raise ValueError(
                f"predictions shape {tuple(predictions.shape)} differs from targets shape {tuple(targets.shape)}"
            )
        dtype = compute_dtype(predictions.dtype)
        weights = self.entry_weights(targets, mask).to(dtype=dtype, device=predictions.device)
        valid = weights > 0
        # Replace masked entries with 0 *before* the loss: a NaN (in a target or a prediction) there
        # would otherwise poison the gradient (0 · NaN = NaN); where() routes exactly zero gradient
        # to the entries it drops, without multiplying.
        zero = torch.zeros((), dtype=dtype, device=predictions.device)
        safe_preds = torch.where(valid, predictions.to(dtype), zero)
        safe_targets = torch.where(valid, targets.to(device=predictions.device, dtype=dtype), zero)
        entries = self.per_entry(safe_preds, safe_targets)
        denom = weights.sum(dim=1)
        has_target = denom > 0
        per_example = (entries * weights).sum(dim=1) / torch.where(has_target, denom, torch.ones_like(denom))
        return self._reduce(per_example, has_target.sum())

    def batch_values(self, outputs: torch.Tensor, labels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One row of outputs per rated response, ``labels["targets"]`` (B, A) with NaN = missing."""
        return self(outputs, labels["targets"])

    def count(self, labels: Mapping[str, torch.Tensor], n_items: int) -> int:
        """Rows with a weighted target: rows whose targets all carry weight 0 must not dilute the mean."""
        return self.num_units(labels["targets"])

    def num_units(self, targets: torch.Tensor, mask: torch.Tensor | None = None) -> int:
        """Examples with at least one valid target: what a ``reduction="sum"`` value is a sum over."""
        return int((self.entry_weights(targets, mask).sum(dim=1) > 0).sum())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, attribute_weights={self.attribute_weights}"


@register_loss("mse")
class MaskedMSELoss(PointwiseLoss):
    """Squared error per attribute (SteerLM / NeMo-Aligner regression reward model)."""

    def per_entry(self, predictions, targets):
        return (predictions - targets).square()
