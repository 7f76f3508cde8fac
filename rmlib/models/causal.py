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
from rmlib.models.reward_model import as_messages, load_tokenizer, resolve_max_length
from rmlib.models.wrapper import INFO_FILE, HFWrapper

ADAPTER_CONFIG = "adapter_config.json"


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
    """A causal LM with the tokenizer and length budget it was trained with.

    The trainer saves it with the base's :meth:`~rmlib.models.wrapper.HFWrapper.save` also under LoRA
    (a PEFT adapter directory over the base), not with the reward model's verified adapter + head save."""

    def __init__(self, model: nn.Module, tokenizer, max_length: int = 1024):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path, *, dtype: str | torch.dtype = "float32",
                        trust_remote_code: bool = False, attn_implementation: str | None = None,
                        max_length: int | None = None, merge_lora: bool = True, **kwargs: Any) -> JustifierModel:
        """Load a causal LM (local directory or hub id), or a LoRA justifier's adapter directory (its base
        + adapter, merged for inference unless ``merge_lora=False``: the export's reference keeps the
        adapter as it trained). A sequence-classification checkpoint's backbone loads too, with a new
        output layer (transformers warns about it), so any decoder can start a justifier run."""
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

            model = PeftModel.from_pretrained(model, src)
            if merge_lora:
                model = model.merge_and_unload()
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
                     accelerator: Any = None, do_sample: bool = False, show_progress: bool = False,
                     generation_kwargs: dict[str, Any] | None = None) -> list[list[int]]:
        """New token ids for each prompt, in input order (greedy unless ``do_sample``; ``generation_kwargs``
        such as ``temperature``/``top_p`` go to ``generate`` as they are).

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
                                    pad_token_id=pad, eos_token_id=self._stop_ids(), **(generation_kwargs or {}))
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

    def judge_prompt_ids(self, prompts: Sequence[str | Sequence[Message]], responses_1: Sequence[str],
                         responses_2: Sequence[str]) -> list[list[int]]:
        """Token ids of each judge prompt (the paper's template in the chat template), as :meth:`judge`
        generates from; one shorter than ``max_length`` fits (callers check before generating)."""
        return self.encoder().prompts([judge_input(as_messages(p), a, b)
                                       for p, a, b in zip(prompts, responses_1, responses_2)])

    def judge(self, prompts: Sequence[str | Sequence[Message]], responses_1: Sequence[str],
              responses_2: Sequence[str], *, max_new_tokens: int = 256, batch_size: int = 16,
              accelerator: Any = None, show_progress: bool = False) -> list[str | None]:
        """The justifier's written judgement of each (prompt, response 1, response 2); None where the
        prompt alone does not fit in ``max_length`` (counted by the caller, never silently dropped)."""
        if not (len(prompts) == len(responses_1) == len(responses_2)):
            raise ValueError(f"{len(prompts)} prompts, {len(responses_1)} and {len(responses_2)} responses")
        ids = self.judge_prompt_ids(prompts, responses_1, responses_2)
        fits = [k for k, x in enumerate(ids) if len(x) < self.max_length]
        gen = self.generate_ids([ids[k] for k in fits], max_new_tokens=max_new_tokens, batch_size=batch_size,
                                accelerator=accelerator, show_progress=show_progress)
        out: list[str | None] = [None] * len(prompts)
        for k, g in zip(fits, gen):
            out[k] = self.tokenizer.decode(g, skip_special_tokens=True)
        return out


# -- merged export (``rmlib export`` of a LoRA justifier) -------------------------------------------

@torch.no_grad()
def probe_logits(model: JustifierModel) -> torch.Tensor:
    """Output-layer logits (float32, CPU) at every real position of a fixed batch of judge prompts: the
    export's check that merged weights reproduce base + adapter. Built from the reward models' probe
    pairs (:data:`rmlib.models.lora.PROBE`), each judged against the next one's response."""
    from rmlib.models.lora import PROBE

    prompts, answers = [p for p, _ in PROBE], [r for _, r in PROBE]
    rows = [x[: model.max_length] for x in model.judge_prompt_ids(prompts, answers, answers[1:] + answers[:1])]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), model.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, r in enumerate(rows):
        ids[k, : len(r)], mask[k, : len(r)] = torch.tensor(r), 1
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    logits = model.model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
    model.train(was)
    return logits.float().cpu()[mask.bool()]


def merge_causal_adapter(adapter_dir: str | Path, out_dir: str | Path, *, dtype: str | None = None,
                         device: str | None = None, max_shard_size: int | str = "5GB") -> dict[str, Any]:
    """Fold a LoRA justifier (a PEFT ``CAUSAL_LM`` adapter) into a plain ``AutoModelForCausalLM`` directory,
    verified as :func:`rmlib.models.lora.merge_adapter` verifies a reward model's merge.

    The weights go through the library's one LoRA merge (:mod:`rmlib.models.merge`: ``W + s·B@A`` in fp32,
    streamed tensor by tensor), stored in ``dtype`` (default: the base's). The reference is the base with
    the adapter unmerged, as it trained; the directory is written to ``<out>.tmp``, checked against the
    generative contract (:func:`rmlib.models.contract.check_generative_contract`), reloaded as a plain
    causal LM, its probe logits compared with the reference's, and only then published. An adapter
    trained on a 4-bit base (QLoRA) is merged onto the base's full-precision weights, as ``rmlib eval``
    loads it (its adapter config does not record the quantization).
    """
    from transformers import AutoConfig

    from rmlib.io import dtype_name, publish_dir, staging_dir
    from rmlib.models.contract import require_generative_contract
    from rmlib.models.lora import check_scores, tolerance
    from rmlib.models.merge import open_adapter, write_merged

    adapter_dir = Path(adapter_dir)
    if not is_causal_lm_dir(adapter_dir) or not (adapter_dir / ADAPTER_CONFIG).is_file():
        raise ValueError(f"{adapter_dir} is not a causal-LM LoRA adapter (adapter_config.json with task CAUSAL_LM)")
    base = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    config = AutoConfig.from_pretrained(resolve_model(base))
    target = dtype_name(torch_dtype(dtype or dtype_name(getattr(config, "dtype", None) or torch.float32)))
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ref = JustifierModel.from_pretrained(adapter_dir, merge_lora=False).to(dev)
    before = probe_logits(ref)
    out = Path(out_dir)
    tmp = staging_dir(out)
    try:
        write_merged(open_adapter(adapter_dir, base), tmp, dtype=torch_dtype(target), max_shard_size=max_shard_size)
        config.dtype = target
        config.architectures = [type(ref._hf).__name__]
        config.pad_token_id = ref.tokenizer.pad_token_id
        config.save_pretrained(tmp)
        if getattr(ref._hf, "generation_config", None) is not None:  # eos ids and defaults travel with the model
            ref._hf.generation_config.save_pretrained(tmp)
        ref.tokenizer.save_pretrained(tmp)
        require_generative_contract(tmp)  # names the broken field; nothing is published
        (tmp / INFO_FILE).write_text(json.dumps({"merged_from": str(adapter_dir), "base_model": base,
                                                 "model_type": "generative judge (causal LM)"}, indent=2))
        del ref
        after = probe_logits(JustifierModel.from_pretrained(tmp, dtype=target).to(dev))
        width = min(before.shape[-1], after.shape[-1])  # a pad token the tokenizer added is no output
        worst = torch_dtype(target) if torch.finfo(torch_dtype(target)).bits < 32 else torch.float32
        diff = check_scores(before[..., :width], after[..., :width], tolerance(worst, quantized=False, merged=True),
                            f"merged export of {adapter_dir}")
        publish_dir(tmp, out)
    except Exception:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out": str(out), "max_abs_diff": diff, "dtype": target, "model_type": "causal_lm"}


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
