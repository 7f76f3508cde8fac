"""Distributional reward heads: what a model's raw outputs mean when it predicts a distribution over the reward.

A Bradley-Terry model gives one number per response, so a pair on which annotators split and a pair on
which they agreed can only differ by the size of the gap (Diverging Preferences, Zhang et al., arXiv
2410.14632). A distributional head predicts a distribution instead, and its spread says how contested a
response is. Two families, each trained by its loss in :mod:`rmlib.losses.distributional`:

* :class:`MeanVar` (loss ``mean_var``): two raw outputs per response, the mean μ (``reward``) and
  ``log_variance`` s, with σ² = ``min_std``² + exp(s). The floor keeps σ away from 0, where the
  pair probability Φ(Δμ / σ) would be a step function with no gradient.
* :class:`RatingCE` (loss ``rating_ce``): one logit per level of a rating scale (HelpSteer2's 0–4
  helpfulness); the reward is the expected rating, the spread the distribution's standard deviation.

The raw outputs stay a plain linear head, so a saved model is still an
``AutoModelForSequenceClassification`` whose ``id2label`` names them; what they mean is written into its
``config.json`` under :data:`DISTRIBUTION_KEY`, which :meth:`rmlib.RewardModel.from_pretrained` reads.
Why here and not in the losses: scoring, serving, export and evaluation read a saved model without
training it, and the models layer sits below the losses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["DISTRIBUTION_KEY", "Distribution", "MeanVar", "RatingCE", "apply_distribution", "distribution_from_config",
           "distribution_outputs"]

#: the ``config.json`` key that says a model's outputs are a distribution (absent: a scalar reward model)
DISTRIBUTION_KEY = "rmlib_distribution"
#: exp() of a log-variance above this overflows float32 long before it means anything; clamped when read
LOG_VARIANCE_MAX = 30.0


@dataclass(frozen=True)
class MeanVar:
    """A normal distribution N(μ, σ²) per response; outputs ``[reward, log_variance]``."""

    min_std: float = 0.05
    kind = "mean_var"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_std) and self.min_std > 0):
            raise ValueError(f"mean_var: min_std must be finite and > 0, got {self.min_std!r}")

    @property
    def output_names(self) -> list[str]:
        return ["reward", "log_variance"]

    def variance(self, log_variance: torch.Tensor) -> torch.Tensor:
        """σ² = min_std² + exp(s): bounded below, smooth, and s = 0 (a zero-initialised head) gives 1 + min_std²."""
        return self.min_std ** 2 + torch.exp(log_variance.clamp(max=LOG_VARIANCE_MAX))

    def read(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"reward": μ (N,), "std": σ (N,)} from raw outputs (N, 2)."""
        raw = raw.float()
        return {"reward": raw[:, 0], "std": self.variance(raw[:, 1]).sqrt()}

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "min_std": self.min_std}


@dataclass(frozen=True)
class RatingCE:
    """A categorical distribution over a rating scale per response; one logit per level."""

    levels: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0)
    attribute: str = "helpfulness"
    kind = "rating_ce"

    def __post_init__(self) -> None:
        levels = tuple(float(v) for v in self.levels)
        if len(levels) < 2 or any(not math.isfinite(v) for v in levels) or any(
                b <= a for a, b in zip(levels, levels[1:])):
            raise ValueError(f"rating_ce: levels must be at least two finite, strictly increasing numbers, "
                             f"got {list(self.levels)!r}")
        object.__setattr__(self, "levels", levels)

    @property
    def output_names(self) -> list[str]:
        return [f"{self.attribute}={v:g}" for v in self.levels]

    def read(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"reward": expected rating (N,), "std": its standard deviation (N,), "probs": (N, levels)}."""
        probs = torch.softmax(raw.float(), dim=-1)
        levels = torch.tensor(self.levels, dtype=probs.dtype, device=probs.device)
        mean = probs @ levels
        var = (probs * (levels[None, :] - mean[:, None]).square()).sum(-1)
        return {"reward": mean, "std": var.clamp(min=0).sqrt(), "probs": probs}

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "levels": list(self.levels), "attribute": self.attribute}


Distribution = MeanVar | RatingCE
_KINDS: dict[str, type] = {"mean_var": MeanVar, "rating_ce": RatingCE}


def distribution_from_config(config: Any) -> Distribution | None:
    """The distribution a model's config declares (:data:`DISTRIBUTION_KEY`), or None for a scalar model."""
    spec = getattr(config, DISTRIBUTION_KEY, None)
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or spec.get("kind") not in _KINDS:
        raise ValueError(f"config.json key {DISTRIBUTION_KEY!r} must be an object with kind one of "
                         f"{sorted(_KINDS)}, got {spec!r}")
    fields = {k: v for k, v in spec.items() if k != "kind"}
    if "levels" in fields:
        fields["levels"] = tuple(fields["levels"])
    dist = _KINDS[spec["kind"]](**fields)
    n = getattr(config, "num_labels", None)
    if n is not None and n != len(dist.output_names):
        raise ValueError(f"config.json declares a {spec['kind']} head with {len(dist.output_names)} outputs but "
                         f"num_labels is {n}")
    return dist


def distribution_outputs(dist: Distribution | None, raw: torch.Tensor) -> dict[str, torch.Tensor]:
    """Named outputs of raw head outputs (N, heads): the distribution's reading, or {"reward"} of a one-head model."""
    if dist is not None:
        return dist.read(raw)
    if raw.dim() != 2 or raw.shape[1] != 1:
        raise ValueError(f"a scalar model's raw outputs are (N, 1); got {tuple(raw.shape)}: combine the heads first")
    return {"reward": raw[:, 0].float()}


def apply_distribution(config: Any, head: nn.Module, dist: Distribution) -> None:
    """Declare ``dist`` in ``config`` and zero the new head: every pair then starts at P(A ≻ B) = 0.5
    (equal means, equal spreads), and no response starts out more contested than another."""
    names: Sequence[str] = dist.output_names
    # a LoRA model's head is PEFT's modules_to_save wrapper (the original and the trained copy): zero both
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears or any(m.out_features != len(names) for m in linears):
        raise ValueError(f"a {dist.kind} head needs {len(names)} outputs, this one has "
                         f"{[m.out_features for m in linears]}")
    setattr(config, DISTRIBUTION_KEY, dist.to_config())
    with torch.no_grad():
        for m in linears:
            m.weight.zero_()
            if m.bias is not None:
                m.bias.zero_()
