"""The trainer's model, by the kind its loss declares (``RewardLoss.model_kind``).

Why here: the trainer must not branch on which loss it trains, and only this layer knows how each kind
of model is built (a reward head with optional two-stage init and LoRA with the head in
``modules_to_save``; a causal LM with LoRA of task ``CAUSAL_LM``). A new kind is one function and one
entry in :data:`BUILDERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def build_reward_model(path: str, attributes: list[str], model_cfg, *, device: torch.device,
                       distribution: Any = None, **common: Any):
    """A :class:`~rmlib.models.RewardModel` (sequence classifier read at the end token).

    ``distribution`` (:mod:`rmlib.models.distribution`, declared by the loss) makes the head a
    distributional one: declared in the config and zero-initialised, so every pair starts at P = 0.5.
    """
    from rmlib.models.reward_model import RewardModel
    from rmlib.runtime import enable_checkpointing

    common = {**common, "reward_token": "end"}  # rmlib trains at its end token, whatever the base was trained at
    if distribution is not None and model_cfg.init_from_regression_attribute:
        raise ValueError(f"model.init_from_regression_attribute starts a scalar head from a regression model; a "
                         f"{distribution.kind} head has {len(attributes)} outputs of its own: leave it unset")
    if model_cfg.lora.enabled:  # PEFT LoRA/QLoRA with the head in modules_to_save (rmlib/models/lora.py)
        from rmlib.models.lora import build_lora_model

        model = build_lora_model(path, attributes, model_cfg, device=device, **common)
    elif model_cfg.init_from_regression_attribute:
        model = RewardModel.from_pretrained(path, **common)
        model.keep_attributes([model_cfg.init_from_regression_attribute], rename=attributes)
    else:
        model = RewardModel.from_pretrained(path, attributes=attributes, **common)
    if distribution is not None:
        from rmlib.models.distribution import apply_distribution

        apply_distribution(model.config, model.head, distribution)
    if model_cfg.gradient_checkpointing and not model_cfg.lora.enabled:
        enable_checkpointing(model._hf)
    return model


def _causal(path: str, attributes: list[str], model_cfg, *, device: torch.device, **common: Any):
    from rmlib.models.causal import build_causal_lm

    return build_causal_lm(path, model_cfg, device=device, **common)


BUILDERS: dict[str, Callable[..., Any]] = {"reward": build_reward_model, "causal_lm": _causal}


def build_model(kind: str, path: str, attributes: list[str], model_cfg, *, device: torch.device, **common: Any):
    """The model a loss of ``model_kind=kind`` trains; ``common`` are ``from_pretrained`` keyword arguments."""
    if kind not in BUILDERS:
        raise ValueError(f"no model builder for model_kind {kind!r}; known: {sorted(BUILDERS)}")
    return BUILDERS[kind](path, attributes, model_cfg, device=device, **common)
