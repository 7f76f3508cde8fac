"""Reward models: a transformers sequence classifier read at the end-of-response token.

Importing this package also imports :mod:`rmlib.models.lora`, which registers the loader that
lets :meth:`RewardModel.from_pretrained` open LoRA adapter directories, and gives
:meth:`RewardModel.save` its LoRA save (:func:`rmlib.models.lora.save_checked`; imports go one way:
``lora`` → ``reward_model``; ``merge`` and ``safetensors_io`` import neither).
"""

from rmlib.models import lora as _lora  # noqa: F401 - registers the adapter-directory loader and saver
from rmlib.models.build import build_model
from rmlib.models.causal import JustifierModel, is_causal_lm_dir
from rmlib.models.reward_model import RewardModel

__all__ = ["JustifierModel", "RewardModel", "build_model", "is_causal_lm_dir"]
