"""Distributional losses: reward models that predict a distribution, so a contested preference is told
apart from a clear one (Diverging Preferences, Zhang et al., arXiv 2410.14632, §5).

* ``mean_var`` (pairs): each response gets N(μ, σ²); P(A ≻ B) = Φ((μ_A − μ_B) / sqrt(σ_A² + σ_B²)),
  trained with the negative log-likelihood of the annotators' votes.
* ``rating_ce`` (ratings): each response gets a categorical distribution over the rating scale, trained
  with cross-entropy on the annotators' ratings.

What the raw head outputs mean lives in :mod:`rmlib.models.distribution` (scoring and serving read a
saved model without its loss); these classes only add the training objective.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from rmlib.losses.pairwise import compute_dtype
from rmlib.losses.pointwise import MISSING_TARGET
from rmlib.losses.registry import Reduction, RewardLoss, register_loss
from rmlib.models.distribution import MeanVar, RatingCE

__all__ = ["MeanVarLoss", "RatingCELoss"]


@register_loss("mean_var")
class MeanVarLoss(RewardLoss):
    """−[p·log Φ(z) + (1 − p)·log Φ(−z)], z = (μ_c − μ_r) / sqrt(σ_c² + σ_r²), p = ``vote_share``.

    ``vote_share`` is the share of annotators preferring ``chosen`` (ties count half): with
    ``data.annotations=all`` every pair is one annotator's vote (p = 1), so this is the likelihood of
    every vote; on aggregated pairs with votes it is the vote fraction as a soft target (the same
    objective up to the number of annotators); a pair without votes counts as one vote for chosen.
    The head starts at zero (:func:`rmlib.models.distribution.apply_distribution`), so every pair
    starts at P = 0.5; σ ≥ ``min_std`` keeps Φ from turning into a step with no gradient.
    """

    family = "pairwise"
    count_unit = "pairs"
    data_kind = "pairs"
    labels = ("vote_share",)

    def __init__(self, *, reduction: Reduction = "mean", min_std: float = 0.05) -> None:
        super().__init__(reduction=reduction)
        self.dist = MeanVar(min_std=float(min_std))

    def model_head(self, attributes: list[str]) -> tuple[list[str], MeanVar]:
        return self.dist.output_names, self.dist

    def forward(self, chosen: torch.Tensor, rejected: torch.Tensor,
                vote_share: torch.Tensor | float = 1.0) -> torch.Tensor:
        """``chosen``/``rejected``: raw outputs (B, 2) = (μ, log-variance) of each pair's responses."""
        for name, x in (("chosen", chosen), ("rejected", rejected)):
            if x.dim() != 2 or x.shape[1] != 2:
                raise ValueError(f"mean_var: {name} outputs must be (B, 2) = (mean, log_variance), got "
                                 f"{tuple(x.shape)}; the model needs the head this loss declares")
        if chosen.shape != rejected.shape or chosen.shape[0] == 0:
            raise ValueError(f"mean_var: chosen {tuple(chosen.shape)} and rejected {tuple(rejected.shape)} "
                             "must hold the same, non-zero number of pairs")
        dtype = compute_dtype(chosen.dtype)
        c, r = chosen.to(dtype), rejected.to(dtype)
        p = torch.as_tensor(vote_share, dtype=dtype, device=c.device).reshape(-1).expand(c.shape[0])
        if not bool(((p >= 0) & (p <= 1)).all()):
            raise ValueError(f"vote_share values must be in [0, 1]; got {p[(p < 0) | (p > 1)][:5].tolist()}")
        z = (c[:, 0] - r[:, 0]) / (self.dist.variance(c[:, 1]) + self.dist.variance(r[:, 1])).sqrt()
        values = -(p * torch.special.log_ndtr(z) + (1 - p) * torch.special.log_ndtr(-z))
        return self._reduce(values, values.numel())

    def batch_values(self, outputs: torch.Tensor, labels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Rows are chosen-first (``outputs[:n]`` chosen, ``outputs[n:]`` rejected), as for every pairwise loss."""
        n = outputs.shape[0] // 2
        return self(outputs[:n], outputs[n:], labels["vote_share"])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, min_std={self.dist.min_std}"


@register_loss("rating_ce")
class RatingCELoss(RewardLoss):
    """Cross-entropy between a categorical over ``levels`` and the annotators' ratings of ``attribute``.

    With ``data.annotations=all`` each row is one annotator's rating (the paper's "every annotation");
    an aggregated rating between two levels (a mean of annotators) is split between its two neighbours
    so that the target's expectation is the rating itself. A missing rating (NaN or −100) adds nothing
    and is not counted. The reward is the expected rating, the spread its standard deviation.
    """

    family = "pointwise"
    count_unit = "examples"
    data_kind = "ratings"
    labels = ("targets",)

    def __init__(self, *, reduction: Reduction = "mean", levels: Sequence[float] = (0, 1, 2, 3, 4),
                 attribute: str = "helpfulness") -> None:
        super().__init__(reduction=reduction)
        self.dist = RatingCE(levels=tuple(levels), attribute=str(attribute))

    @classmethod
    def data_attributes(cls, options: Mapping[str, object]) -> list[str]:
        return [str(options.get("attribute", "helpfulness"))]

    def model_head(self, attributes: list[str]) -> tuple[list[str], RatingCE]:
        if list(attributes) != [self.dist.attribute]:
            raise ValueError(f"rating_ce models one rating ({self.dist.attribute!r}, loss.options.attribute) but the "
                             f"data has attributes {list(attributes)}; set model.attributes: [{self.dist.attribute}] "
                             "or leave it unset")
        return self.dist.output_names, self.dist

    def _targets(self, targets: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(soft target distributions (B, levels), valid-row mask (B,))."""
        t = targets.reshape(targets.shape[0], -1)
        if t.shape[1] != 1:
            raise ValueError(f"rating_ce: targets must hold one rating per row, got {tuple(targets.shape)}")
        t = t[:, 0].to(device=like.device, dtype=like.dtype)
        valid = ~(torch.isnan(t) | (t == MISSING_TARGET))
        levels = torch.tensor(self.dist.levels, dtype=like.dtype, device=like.device)
        bad = valid & ((t < levels[0]) | (t > levels[-1]) | torch.isinf(t))
        if bool(bad.any()):
            raise ValueError(f"rating_ce: ratings must lie on the scale {list(self.dist.levels)} "
                             f"(loss.options.levels); got {t[bad][:5].tolist()}")
        safe = torch.where(valid, t, levels[0])
        hi = torch.bucketize(safe, levels).clamp(1, len(levels) - 1)  # levels[hi-1] <= t <= levels[hi]
        lo = hi - 1
        w_hi = (safe - levels[lo]) / (levels[hi] - levels[lo])
        q = torch.zeros(t.shape[0], len(levels), dtype=like.dtype, device=like.device)
        q.scatter_(1, lo[:, None], (1 - w_hi)[:, None])
        q.scatter_add_(1, hi[:, None], w_hi[:, None])
        return q, valid

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2 or logits.shape[1] != len(self.dist.levels):
            raise ValueError(f"rating_ce: logits must be (B, {len(self.dist.levels)}) (one per level), got "
                             f"{tuple(logits.shape)}; the model needs the head this loss declares")
        x = logits.to(compute_dtype(logits.dtype))
        q, valid = self._targets(targets, x)
        values = -(q * torch.log_softmax(x, dim=-1)).sum(-1)
        values = torch.where(valid, values, torch.zeros((), dtype=x.dtype, device=x.device))
        return self._reduce(values, valid.sum())

    def batch_values(self, outputs: torch.Tensor, labels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self(outputs, labels["targets"])

    def count(self, labels: Mapping[str, torch.Tensor], n_items: int) -> int:
        """Rows with a rating: unrated rows must not dilute the mean."""
        t = labels["targets"].reshape(labels["targets"].shape[0], -1)[:, 0]
        return int((~(torch.isnan(t) | (t == MISSING_TARGET))).sum())

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """The expected rating (B, 1): what held-out MSE and Pearson r compare with the targets."""
        return self.dist.read(outputs)["reward"][:, None]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, levels={list(self.dist.levels)}, attribute={self.dist.attribute!r}"
