"""The base of rmlib's models: a module wrapping one transformers model (``self.model``).

The reward model (:class:`~rmlib.models.RewardModel`) and the Pairwise Justifier's causal LM
(:class:`~rmlib.models.JustifierModel`) both keep the Hugging Face module as the model itself (no
wrapper weights), with the tokenizer and length budget it was trained with. What they share lives
here, once: what the wrapper shows of the transformers module (its config, and what FSDP's
auto-wrap reads) and how it is written to disk (:meth:`HFWrapper.save_pretrained`, and the trainer's
:meth:`HFWrapper.save`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

#: rmlib's own file beside a saved model: the training summary and, for a LoRA run, its adapter's facts
INFO_FILE = "rmlib.json"


class HFWrapper(nn.Module):
    """What a module wrapping a transformers model (``self.model``) shows of it: the reward model
    and the Pairwise Justifier's causal LM both wrap one, and Accelerate prepares the wrapper.

    A subclass sets ``model`` (the transformers module, or PEFT's wrapper of it under LoRA) and
    ``tokenizer`` in its constructor."""

    model: nn.Module

    @property
    def _hf(self) -> nn.Module:
        """The transformers module, looking through a PEFT wrapper if there is one."""
        m = self.model
        return m.get_base_model() if hasattr(m, "get_base_model") else m

    @property
    def config(self):
        return self._hf.config

    # -- what FSDP's auto-wrap reads ---------------------------------------------------------
    # Accelerate prepares *this* module, and its FSDP1/FSDP2 transformer auto-wrap policy looks for
    # `_no_split_modules`, `get_input_embeddings()` and `getattr(model, model.base_model_prefix)` on
    # it. Without them every FSDP unit collapses into one (the root): correct results, but each GPU
    # gathers the whole model at once, which defeats sharding.

    @property
    def _no_split_modules(self) -> list[str] | None:
        return getattr(self._hf, "_no_split_modules", None)

    base_model_prefix = "backbone"

    @property
    def backbone(self) -> nn.Module:
        """The transformer body (``LlamaModel``, ``BertModel``, ...) under the head."""
        hf = self._hf
        return getattr(hf, hf.base_model_prefix)

    def get_input_embeddings(self) -> nn.Module:
        return self._hf.get_input_embeddings()

    # -- saving ----------------------------------------------------------------------------

    def _before_save(self) -> None:
        """What a subclass checks or sets in its config before :meth:`save_pretrained` writes (a refusal
        raises here, before any file is written); nothing by default."""

    def save_pretrained(self, out_dir: str | Path, *, state_dict: dict | None = None,
                        is_main_process: bool = True, extra: dict | None = None) -> Path:
        """Write a plain transformers directory (safetensors + config + tokenizer), or under LoRA the
        PEFT adapter over its base; ``extra`` goes to ``rmlib.json`` beside it.

        Every process calls it (``state_dict``: the weights gathered from every process, when they are
        sharded); only the main process writes files.
        """
        out = Path(out_dir)
        self._before_save()
        if is_main_process:
            out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out, state_dict=state_dict, is_main_process=is_main_process,
                                   safe_serialization=True)
        if is_main_process:
            self.tokenizer.save_pretrained(out)
            if extra:
                (out / INFO_FILE).write_text(json.dumps(extra, indent=2, default=str))
        return out

    def save(self, accelerator: Any, prepared: nn.Module, out_dir: str | Path, *, lora: Any = None,
             extra: dict | None = None) -> None:
        """The trainer's save of this model, as ``accelerator`` prepared it (``prepared``), to ``out_dir``.

        Every process calls it (ZeRO-3 gathers the shards here). Why on the model: how a model is saved
        depends on what it is (a LoRA reward model writes a verified adapter + head, :class:`RewardModel`),
        so the trainer never asks. ``lora`` is the run's ``model.lora`` settings. Default: the gathered
        weights through :meth:`save_pretrained`, also under LoRA (a causal LM's PEFT adapter over its base).
        """
        state_dict = accelerator.get_state_dict(prepared)
        if state_dict is not None:  # strip the wrapper's prefix: the HF module is saved as-is
            state_dict = {k.removeprefix("model."): v for k, v in state_dict.items()}
        self.save_pretrained(out_dir, state_dict=state_dict, is_main_process=accelerator.is_main_process,
                             extra=extra)
