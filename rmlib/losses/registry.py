"""Loss registry and the contract every loss module follows.

The trainer and the config validator only ever talk to losses through this module: they look a
loss up by name, read its class attributes (``family``, ``data_kind``, ``labels``) to decide the
batch shape and to check that the data carries every label it consumes, and feed it a batch
through :meth:`RewardLoss.batch_values`. They never branch on a loss's name, so a new loss is one
class plus one ``@register_loss`` line, even when it consumes a label no other loss uses.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import ClassVar, Literal, TypeVar

import torch
from torch import nn

Reduction = Literal["mean", "sum", "none"]
Family = Literal["pairwise", "pointwise", "generative", "listwise"]
CountUnit = Literal["pairs", "examples", "tokens", "lists"]
DataKind = Literal["pairs", "ratings", "judge", "lists"]
FAMILIES: tuple[str, ...] = ("pairwise", "pointwise", "generative", "listwise")

REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


class RewardLoss(nn.Module):
    """Base of every registered loss: declares what the loss needs so callers can check data early.

    Why the class attributes: config validation runs *before* a model is loaded (fail early), so it
    must know from the class alone whether the dataset has to provide margins, soft targets or
    attribute targets, and which batch layout (pairs or single responses) to build.

    Why ``reduction="sum"`` and ``count_unit``: under gradient accumulation (and across processes)
    a micro-batch's *mean* is the wrong quantity to sum, because micro-batches hold different
    numbers of units (uneven last batch, pointwise rows whose targets are all missing). Averaging
    per-micro-batch means weights a unit in a small micro-batch more than one in a large one. The
    correct optimisation-step loss is ``sum over all units / number of units in the step``. The
    trainer takes per-unit values (``reduction="none"``), sums them per micro-batch and divides by
    the number of units in the whole optimizer step, which every process knows because global
    batches are planned before they are split (``count_unit`` names the unit: ``"pairs"`` or
    ``"examples"``; for pointwise losses the count is :meth:`num_units`, which leaves out rows
    whose targets are all missing or carry weight 0).
    With one micro-batch and one process this equals ``reduction="mean"`` exactly.
    """

    family: ClassVar[Family]
    count_unit: ClassVar[CountUnit]
    # which records the loss trains on: preference pairs, rated responses, judge examples or ranked lists
    data_kind: ClassVar[DataKind]
    # the labels the loss consumes, by name: a batch carries exactly these in ``Batch.labels`` and
    # the data must provide each of them for every example (checked before a model is loaded)
    labels: ClassVar[tuple[str, ...]] = ()
    # the model the loss trains, built by ``rmlib.models.build_model``: "reward" (a sequence classifier
    # read at the end token) or "causal_lm" (a generative judge); the trainer reads it, never the name
    model_kind: ClassVar[str] = "reward"
    name: ClassVar[str] = ""

    @classmethod
    def data_options(cls, options: Mapping[str, object]) -> dict[str, object]:
        """The loss options that change the features (they go into the feature-cache key); none by default."""
        return {}

    def __init__(self, *, reduction: Reduction = "mean") -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: reduction must be one of {REDUCTIONS}, got {reduction!r}"
            )
        self.reduction: Reduction = reduction

    def _reduce(self, values: torch.Tensor, count: torch.Tensor | int) -> torch.Tensor:
        """Reduce per-unit values; ``count`` is the number of units that mean divides by."""
        if self.reduction == "none":
            return values
        total = values.sum()
        if self.reduction == "sum":
            return total
        denom = count.clamp(min=1).to(total.dtype) if isinstance(count, torch.Tensor) else max(count, 1)
        return total / denom

    def batch_values(self, outputs: torch.Tensor, labels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The loss of one batch from the model's outputs and the batch's labels.

        Why one method: training and evaluation both feed the loss through it, so the layout of
        outputs (e.g. chosen rows first) and the label plumbing live with the loss family, once.
        """
        raise NotImplementedError

    def count(self, labels: Mapping[str, torch.Tensor], n_items: int) -> int:
        """Units a ``reduction="sum"`` value of these items is a sum over (default: the items)."""
        return n_items

    def step_metrics(self, outputs: torch.Tensor, labels: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Sums over one batch of the metrics a training step logs beside the loss (``train/<name>``).

        The trainer adds them up over the step's micro-batches and processes and divides each by the
        step's :meth:`count`, as it does the loss; a loss returns the same names for every batch (the
        sums travel in one all-reduce). Why on the loss: only the loss knows the layout of its outputs
        (:meth:`batch_values`). Default: for a loss trained on pairs (rows chosen-first, ``outputs[:n]``
        chosen, ``outputs[n:]`` rejected; head 0 is the reward) ``accuracy``, the number of pairs whose
        chosen reward is above the rejected one (a tie counts as wrong); no metric for other data kinds.
        """
        if self.data_kind != "pairs":
            return {}
        n = outputs.shape[0] // 2
        return {"accuracy": float((outputs[:n, 0] > outputs[n:, 0]).sum())}

    # -- what the loss asks of the model (read by the trainer, never its name) ------------------

    @classmethod
    def data_attributes(cls, options: Mapping[str, object]) -> list[str] | None:
        """The rated attributes the loss reads when ``model.attributes`` is unset (None: every attribute)."""
        return None

    def model_head(self, attributes: list[str]) -> tuple[list[str], object | None]:
        """(the head's output names, the distribution they carry or None) for the data's ``attributes``.

        Why on the loss: the loss decides what the head predicts. A scalar loss has one output per
        attribute; a distributional loss has its distribution's raw outputs
        (:mod:`rmlib.models.distribution`), which the model declares in its config when it is built.
        """
        return list(attributes), None

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """The per-attribute predictions of raw outputs (held-out MSE and correlations); raw outputs by default."""
        return outputs

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


_REGISTRY: dict[str, type[RewardLoss]] = {}

L = TypeVar("L", bound=type[RewardLoss])


class UnknownLossError(KeyError, ValueError):
    """Raised for an unregistered loss name; a KeyError for lookups, a ValueError for config checks."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0]) if self.args else ""


def register_loss(name: str) -> Callable[[L], L]:
    """Class decorator adding a loss under ``name``; a second class under the same name is an error."""

    def decorator(cls: L) -> L:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"loss {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        if getattr(cls, "family", None) not in FAMILIES:
            raise TypeError(f"{cls.__qualname__} must set family to one of {FAMILIES}")
        if not isinstance(getattr(cls, "labels", None), tuple):
            raise TypeError(f"{cls.__qualname__}.labels must be a tuple of label names")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def list_losses() -> list[str]:
    """Registered loss names, sorted."""
    return sorted(_REGISTRY)


def get_loss_class(name: str) -> type[RewardLoss]:
    """The class behind ``name``, so callers can read ``family``/``labels`` without building it."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownLossError(
            f"unknown loss {name!r}; registered losses: {', '.join(list_losses())}"
        ) from None


def loss_options(name: str) -> dict[str, object]:
    """Accepted options of loss ``name`` with their defaults (for config validation and help text)."""
    params = inspect.signature(get_loss_class(name).__init__).parameters
    return {
        p.name: p.default
        for p in params.values()
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def get_loss(name: str, **options: object) -> RewardLoss:
    """Build loss ``name``; an option the loss does not take is a TypeError naming it (no silent default)."""
    cls = get_loss_class(name)
    accepted = loss_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"loss {name!r} got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"accepted options: {', '.join(accepted) or '(none)'}"
        )
    return cls(**options)
