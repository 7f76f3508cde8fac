"""A generative judge: a ``transformers`` causal LM trained to write its verdict (the Pairwise Justifier).

Like :class:`~rmlib.models.RewardModel`, the Hugging Face module *is* the model (no wrapper weights),
so a saved directory is a plain ``AutoModelForCausalLM`` checkpoint (or, after a LoRA run, a PEFT
adapter over one, which ``transformers`` loads too when ``peft`` is installed). What rmlib adds:

* **training forward** (:meth:`JustifierModel.forward`): the backbone runs once over the batch (padded
  or packed rows) and the output layer is applied only at the positions that predict target tokens
  (``Batch.end_index``, written by :func:`rmlib.data.collate.collate_judge`), so the logits tensor is
  (target tokens × vocab) instead of (all positions × vocab);
* **generation** (:meth:`JustifierModel.generate_ids`): greedy by default, capped at ``max_new_tokens``,
  prompts sorted by length and batched left-padded with the KV cache, sharded over the processes of an
  ``accelerator`` and gathered in input order, as the scoring loop does for reward models.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rmlib.data.collate import Batch, iterate_in_length_order
from rmlib.data.judge import JudgeEncoder, judge_input
from rmlib.data.schema import Message
from rmlib.io import resolve_model, torch_dtype
from rmlib.models.reward_model import HFWrapper, as_messages, load_tokenizer, resolve_max_length

ADAPTER_CONFIG = "adapter_config.json"
INFO_FILE = "rmlib.json"


def is_causal_lm_dir(path: str | Path) -> bool:
    """True for a causal-LM checkpoint (config ``architectures`` ending in ``ForCausalLM``) or a PEFT
    adapter whose task is ``CAUSAL_LM``: how ``rmlib eval`` tells a generative judge from a reward model."""
    p = Path(path)
    if (p / ADAPTER_CONFIG).is_file():
        return json.loads((p / ADAPTER_CONFIG).read_text()).get("task_type") == "CAUSAL_LM"
    if (p / "config.json").is_file():
        archs = json.loads((p / "config.json").read_text()).get("architectures") or []
        return any(str(a).endswith("ForCausalLM") for a in archs)
    return False


class JustifierModel(HFWrapper):
    """A causal LM with the tokenizer and length budget it was trained with."""

    #: the trainer saves this model with :meth:`save_pretrained` also under LoRA (a PEFT adapter directory
    #: over the base), instead of the reward model's verified adapter + head save
    saves_adapter_itself = True

    def __init__(self, model: nn.Module, tokenizer, max_length: int = 1024):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path, *, dtype: str | torch.dtype = "float32",
                        trust_remote_code: bool = False, attn_implementation: str | None = None,
                        max_length: int | None = None, **kwargs: Any) -> JustifierModel:
        """Load a causal LM (local directory or hub id), or a LoRA justifier's adapter directory (its base
        + adapter, merged for inference). A sequence-classification checkpoint's backbone loads too, with
        a new output layer (transformers warns about it), so any decoder can start a justifier run."""
        from transformers import AutoConfig, AutoModelForCausalLM

        src = resolve_model(path_or_name)
        tok = load_tokenizer(src, trust_remote_code=trust_remote_code)
        extra = dict(kwargs)
        if attn_implementation:
            extra["attn_implementation"] = attn_implementation
        adapter = Path(src) / ADAPTER_CONFIG
        base = json.loads(adapter.read_text())["base_model_name_or_path"] if adapter.is_file() else src
        config = AutoConfig.from_pretrained(resolve_model(base), trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(resolve_model(base), dtype=torch_dtype(dtype),
                                                     use_safetensors=True, trust_remote_code=trust_remote_code,
                                                     **extra)
        if len(tok) > model.get_input_embeddings().num_embeddings:  # prepare_tokenizer added a pad token
            model.resize_token_embeddings(len(tok))
        if adapter.is_file():
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, src).merge_and_unload()
        model.config.pad_token_id = tok.pad_token_id
        return cls(model, tok, max_length=resolve_max_length(max_length, config))

    def encoder(self, max_length: int | None = None) -> JudgeEncoder:
        return JudgeEncoder(self.tokenizer, max_length or self.max_length)

    # -- training forward --------------------------------------------------------------------

    def forward(self, batch: Batch) -> torch.Tensor:
        """Logits (len(end_index), vocab) at the batch's ``end_index`` positions (the target predictions)."""
        mask = batch.attention_mask
        if mask is not None and mask.dim() == 4:
            raise ValueError("shared-prompt batches are for preference pairs; a justifier trains on judge sequences")
        hidden = self.backbone(input_ids=batch.input_ids, attention_mask=mask, position_ids=batch.position_ids,
                               use_cache=False).last_hidden_state
        picked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.end_index)
        return self._hf.get_output_embeddings()(picked)

    # -- generation ------------------------------------------------------------------------

    def _stop_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        gen = getattr(self._hf, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None)
        ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
        return sorted(i for i in ids if i is not None)

    @torch.no_grad()
    def generate_ids(self, prompts: Sequence[Sequence[int]], *, max_new_tokens: int = 256, batch_size: int = 16,
                     accelerator: Any = None, do_sample: bool = False, show_progress: bool = False) -> list[list[int]]:
        """New token ids for each prompt, in input order (greedy unless ``do_sample``).

        Prompts are sorted by length and batched (at most ``batch_size`` per batch, and a token budget of
        ``batch_size`` × the longest prompt), left-padded so every row's next token is at the end, and
        decoded with the KV cache. With an ``accelerator`` of several processes each process generates a
        contiguous shard and every process gets all results back (``gather_object``).
        """
        multi = accelerator is not None and accelerator.num_processes > 1
        mine = list(range(len(prompts)))
        if multi:
            with accelerator.split_between_processes(mine) as local:
                mine = list(local)
        device = accelerator.device if accelerator is not None else next(self.parameters()).device
        lengths = [len(prompts[i]) for i in mine]
        budget = batch_size * max(lengths, default=1)
        pad = self.tokenizer.pad_token_id
        was_training = self.training
        self.eval()
        out: dict[int, list[int]] = {}
        batches = list(iterate_in_length_order(lengths, budget, batch_size))
        if show_progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="generating")
        for idx in batches:
            rows = [prompts[mine[i]] for i in idx]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            att = torch.zeros((len(rows), width), dtype=torch.long)
            for k, r in enumerate(rows):
                ids[k, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
                att[k, width - len(r):] = 1
            gen = self._hf.generate(input_ids=ids.to(device), attention_mask=att.to(device),
                                    max_new_tokens=max_new_tokens, do_sample=do_sample, use_cache=True,
                                    pad_token_id=pad, eos_token_id=self._stop_ids())
            stops = set(self._stop_ids())
            for k, i in enumerate(idx):
                new = gen[k, width:].tolist()
                cut = next((j for j, t in enumerate(new) if t in stops or t == pad), len(new))
                out[mine[i]] = new[:cut]
        if was_training:
            self.train()
        if multi:
            from accelerate.utils import gather_object

            parts = gather_object([sorted(out.items())])
            out = {k: v for part in parts for k, v in part}
        return [out[i] for i in range(len(prompts))]

    def judge(self, prompts: Sequence[str | Sequence[Message]], responses_1: Sequence[str],
              responses_2: Sequence[str], *, max_new_tokens: int = 256, batch_size: int = 16,
              accelerator: Any = None, show_progress: bool = False) -> list[str | None]:
        """The justifier's written judgement of each (prompt, response 1, response 2); None where the
        prompt alone does not fit in ``max_length`` (counted by the caller, never silently dropped)."""
        if not (len(prompts) == len(responses_1) == len(responses_2)):
            raise ValueError(f"{len(prompts)} prompts, {len(responses_1)} and {len(responses_2)} responses")
        enc = self.encoder()
        ids = enc.prompts([judge_input(as_messages(p), a, b) for p, a, b in zip(prompts, responses_1, responses_2)])
        fits = [k for k, x in enumerate(ids) if len(x) < self.max_length]
        gen = self.generate_ids([ids[k] for k in fits], max_new_tokens=max_new_tokens, batch_size=batch_size,
                                accelerator=accelerator, show_progress=show_progress)
        out: list[str | None] = [None] * len(prompts)
        for k, g in zip(fits, gen):
            out[k] = self.tokenizer.decode(g, skip_special_tokens=True)
        return out

    # -- saving ----------------------------------------------------------------------------

    def save_pretrained(self, out_dir: str | Path, *, state_dict: dict | None = None,
                        is_main_process: bool = True, extra: dict | None = None) -> Path:
        """A plain transformers causal-LM directory (safetensors + config + tokenizer), or under LoRA the
        PEFT adapter over its base; ``extra`` goes to ``rmlib.json`` beside it."""
        out = Path(out_dir)
        if is_main_process:
            out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out, state_dict=state_dict, is_main_process=is_main_process,
                                   safe_serialization=True)
        if is_main_process:
            self.tokenizer.save_pretrained(out)
            if extra:
                (out / INFO_FILE).write_text(json.dumps(extra, indent=2, default=str))
        return out


def apply_causal_lora(model: JustifierModel, lo, *, gradient_checkpointing: bool = False) -> JustifierModel:
    """PEFT LoRA (``task_type=CAUSAL_LM``) on every linear layer of the repeated blocks, or on
    ``lo.target_modules``; the output layer and embeddings stay frozen (a justifier keeps its vocabulary)."""
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training

    from rmlib.models.lora import default_target_modules
    from rmlib.runtime import enable_checkpointing

    hf = model._hf
    targets = list(lo.target_modules) if lo.target_modules else default_target_modules(hf)
    if getattr(hf, "is_quantized", False):
        hf = prepare_model_for_kbit_training(hf, use_gradient_checkpointing=gradient_checkpointing,
                                             gradient_checkpointing_kwargs={"use_reentrant": False})
    elif gradient_checkpointing:
        enable_checkpointing(hf)
    cfg = LoraConfig(task_type=TaskType.CAUSAL_LM, r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout,
                     target_modules=targets, use_rslora=lo.use_rslora)
    model.model = get_peft_model(hf, cfg)
    return model


def build_causal_lm(path: str, model_cfg, *, device: torch.device, **common: Any) -> JustifierModel:
    """The trainer's model for a loss whose ``model_kind`` is ``"causal_lm"``: the causal LM, then LoRA /
    QLoRA when ``model.lora.enabled``, or activation checkpointing when asked."""
    from rmlib.models.lora import keep_cpu_4bit_exact, quantization_kwargs
    from rmlib.runtime import enable_checkpointing

    if model_cfg.init_from_regression_attribute:
        raise ValueError("model.init_from_regression_attribute picks a reward-head row; a justifier has no "
                         "reward head (leave it unset)")
    lo = model_cfg.lora
    if not lo.enabled:
        model = JustifierModel.from_pretrained(path, **common)
        if model_cfg.gradient_checkpointing:
            enable_checkpointing(model._hf)
        return model
    if (Path(path) / ADAPTER_CONFIG).is_file():
        raise ValueError(f"model.name_or_path={path} is a LoRA adapter directory; a new LoRA run starts from "
                         "plain weights")
    model = JustifierModel.from_pretrained(path, **common, **quantization_kwargs(lo, device))
    keep_cpu_4bit_exact(model._hf)
    return apply_causal_lora(model, lo, gradient_checkpointing=model_cfg.gradient_checkpointing)
