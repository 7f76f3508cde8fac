"""A reward model is a ``transformers`` sequence classifier read at the end-of-response token.

We keep the Hugging Face ``*ForSequenceClassification`` module as the model itself (no wrapper
weights), so a saved directory is a plain transformers checkpoint that other tools load with
``AutoModelForSequenceClassification`` and score identically. What we add is the *reading*:

* decoders (modules with a ``score`` head) run the backbone once and apply the head only at the
  positions given by the batch's ``end_index``. This works for right-padded rows and for packed
  rows holding many sequences, and never depends on finding pad tokens;
* encoders (BERT-style ``classifier`` heads) use their own pooling ([CLS] + pooler), which is how
  they were pre-trained and how transformers will load them again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from rmlib.data.collate import (
    CALL_PADDING,
    Batch,
    collate_sequences,
    collate_shared_prompt,
    iterate_in_length_order,
)
from rmlib.data.schema import Message
from rmlib.data.tokenize import Featurizer, prepare_tokenizer

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def enable_checkpointing(hf: nn.Module) -> None:
    """Activation (gradient) checkpointing, non-reentrant, through whichever name this transformers has.

    transformers 5 renamed ``gradient_checkpointing_enable`` to ``activation_checkpointing_enable``
    (the old name warns and goes in v6); rmlib supports both majors. Checkpointing only acts on a
    module in train mode, which the trainer sets.
    """
    kwargs = {"use_reentrant": False}
    if hasattr(hf, "activation_checkpointing_enable"):
        hf.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def as_messages(prompt: str | Sequence[Message]) -> list[Message]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


class RewardModel(nn.Module):
    """Backbone + linear head, one output per attribute (names in ``config.id2label``)."""

    def __init__(self, model: nn.Module, tokenizer, max_length: int = 1024):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.is_decoder_head = isinstance(getattr(self._hf, "score", None), nn.Linear)

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path, *, attributes: Sequence[str] | None = None,
                        dtype: str | torch.dtype = "float32", trust_remote_code: bool = False,
                        attn_implementation: str | None = None, max_length: int = 1024,
                        **kwargs) -> RewardModel:
        """Load a checkpoint (local directory or hub name) as a reward model.

        ``attributes`` names the outputs; when it differs from the checkpoint's labels the head is
        re-initialised with that many outputs (a new reward head on a pretrained backbone).
        Weights are read from safetensors only. A LoRA run's adapter directory (it holds
        ``adapter_config.json``) loads as its base + adapter + trained head (``rmlib/models/lora.py``).
        """
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        src = str(path_or_name)
        if (Path(src) / "adapter_config.json").is_file():  # a LoRA run's output: base + adapter + full head
            from rmlib.models.lora import load_adapter

            if attributes is not None or kwargs:
                raise ValueError("a LoRA adapter directory is loaded as saved: attributes/kwargs are not supported")
            return load_adapter(src, dtype=dtype, max_length=max_length, trust_remote_code=trust_remote_code,
                                attn_implementation=attn_implementation)
        tok = AutoTokenizer.from_pretrained(src, trust_remote_code=trust_remote_code)
        config = AutoConfig.from_pretrained(src, trust_remote_code=trust_remote_code)
        extra = {}
        if attributes is not None:
            labels = dict(enumerate(attributes))
            current = [config.id2label[i] for i in sorted(config.id2label)] if config.id2label else []
            if current != list(attributes):
                extra = {"num_labels": len(labels), "id2label": labels,
                         "label2id": {v: k for k, v in labels.items()}, "ignore_mismatched_sizes": True}
        if attn_implementation:
            extra["attn_implementation"] = attn_implementation
        model = AutoModelForSequenceClassification.from_pretrained(
            src, dtype=_DTYPES[dtype] if isinstance(dtype, str) else dtype, use_safetensors=True,
            trust_remote_code=trust_remote_code, **extra, **kwargs)
        if prepare_tokenizer(tok):
            model.resize_token_embeddings(len(tok))
        model.config.pad_token_id = tok.pad_token_id
        return cls(model, tok, max_length=max_length)

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

    @property
    def attributes(self) -> list[str]:
        labels = self.config.id2label or {0: "reward"}
        return [labels[i] for i in sorted(labels)]

    def keep_attributes(self, keep: Sequence[str], rename: Sequence[str] | None = None) -> None:
        """Shrink the head to the named outputs (the two-stage recipe: a regression model's
        helpfulness row becomes the scalar head of a Bradley-Terry model)."""
        missing = [a for a in keep if a not in self.attributes]
        if missing:
            raise ValueError(f"attributes {missing} not in this model's outputs {self.attributes}")
        rows = torch.tensor([self.attributes.index(a) for a in keep])
        hf = self._hf
        name = "score" if self.is_decoder_head else "classifier"
        old: nn.Linear = getattr(hf, name)
        new = nn.Linear(old.in_features, len(rows), bias=old.bias is not None,
                        dtype=old.weight.dtype, device=old.weight.device)
        with torch.no_grad():
            new.weight.copy_(old.weight[rows])
            if old.bias is not None:
                new.bias.copy_(old.bias[rows])
        setattr(hf, name, new)
        names = list(rename) if rename else list(keep)
        hf.config.num_labels = len(names)
        hf.config.id2label = dict(enumerate(names))
        hf.config.label2id = {v: k for k, v in hf.config.id2label.items()}

    def featurizer(self, max_length: int | None = None, keep_system: bool = True) -> Featurizer:
        return Featurizer(self.tokenizer, max_length or self.max_length, keep_system)

    # -- forward ---------------------------------------------------------------------------

    def forward(self, batch: Batch) -> torch.Tensor:
        """Rewards of shape (num_sequences, num_attributes), in the batch's sequence order."""
        if not self.is_decoder_head:
            if batch.position_ids is not None:
                raise ValueError("packed batches need a decoder backbone; set data.packing=false for encoders")
            out = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                             token_type_ids=batch.token_type_ids)
            return out.logits
        backbone = self.backbone
        mask = batch.attention_mask
        if batch.row_calls is not None:  # shared-prompt rows: one call per group of similar-length rows
            # only the end tokens' states are kept from each call (no rows × width copy of the batch)
            width = batch.input_ids.shape[1]
            row_of = torch.div(batch.end_index, width, rounding_mode="floor")
            order, picked = [], []
            for start, end, n in batch.row_calls:
                h = backbone(input_ids=batch.input_ids[start:end, :n],
                             attention_mask=self._block_mask(mask[start:end, :, :n, :n]),
                             position_ids=batch.position_ids[start:end, :n], use_cache=False).last_hidden_state
                seqs = ((row_of >= start) & (row_of < end)).nonzero().squeeze(1)
                local = (row_of[seqs] - start) * n + batch.end_index[seqs] % width
                order.append(seqs)
                picked.append(h.reshape(-1, h.shape[-1]).index_select(0, local))
            return self._head(torch.cat(picked).index_select(0, torch.cat(order).argsort()))
        if mask is not None and mask.dim() == 4:
            mask = self._block_mask(mask)
        hidden = backbone(input_ids=batch.input_ids, attention_mask=mask,
                          position_ids=batch.position_ids, use_cache=False).last_hidden_state
        return self._head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.end_index))

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The linear head in its weights' dtype, outside autocast.

        Under bf16 autocast the head would return bf16 rewards: about 3 significant digits, so a
        reward near 5 is rounded to a multiple of 0.03, close pairs tie (a tie counts as wrong in
        every benchmark) and the fp32 loss sees rounded inputs. With fp32 weights (mixed precision)
        this costs one small fp32 matmul over the end tokens only; bf16 weights stay bf16.
        """
        head = self._hf.score
        dtype = next(head.parameters()).dtype
        if not dtype.is_floating_point:  # a quantized head (not produced by rmlib): leave it to autocast
            return head(hidden)
        with torch.autocast(hidden.device.type, enabled=False):
            return head(hidden.to(dtype))

    def _block_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """A boolean (rows, 1, L, L) block mask (shared-prompt batches) in the attention kernel's form.

        transformers hands a 4D mask to the kernel unchanged: sdpa takes booleans (True = attend),
        eager adds the mask to the scores so it needs 0 / -inf-like floats. Flash-attention's
        varlen path only expresses disjoint sequences (``cu_seqlens``), not "two responses share a
        prefix", so it is refused rather than silently attending across responses.
        """
        impl = getattr(self.config, "_attn_implementation", None) or "sdpa"
        if impl == "eager":
            dtype = next(self._hf.parameters()).dtype
            if not dtype.is_floating_point:  # quantized weights: compute in the autocast/default dtype
                dtype = torch.get_autocast_dtype(mask.device.type) if torch.is_autocast_enabled() else torch.float32
            zero = torch.zeros((), dtype=dtype, device=mask.device)
            return torch.where(mask, zero, torch.finfo(dtype).min)
        if impl == "flex_attention":  # GPU: a BlockMask lets the kernel skip fully masked tiles
            if mask.device.type != "cuda":
                # torch 2.13's CPU (C++ inductor) flex kernel fails to compile once the row length
                # changes between calls (measured: "cur_qSplitSize5 was not declared"); the dense
                # mask under sdpa is the CPU path and is exact
                raise ValueError("attn_implementation='flex_attention' with shared-prompt batches runs on CUDA only; "
                                 "on CPU use sdpa (the block mask is passed to it densely)")
            from torch.nn.attention.flex_attention import create_block_mask

            dense, n = mask[:, 0], mask.shape[-1]
            return create_block_mask(lambda b, h, q, kv: dense[b, q, kv], mask.shape[0], None, n, n,
                                     device=mask.device)
        if "flash" in impl:
            raise ValueError(f"attn_implementation={impl!r} cannot express shared-prompt masks (its varlen path "
                             "handles disjoint sequences only); use sdpa, eager or flex_attention, or set "
                             "data.shared_prompt=false (plain packing does use the varlen path)")
        return mask

    # -- inference -------------------------------------------------------------------------

    @torch.no_grad()
    def score(self, prompts: Sequence[str | Sequence[Message]], responses: Sequence[str], *,
              batch_size: int = 16, max_tokens: int | None = None, packing: bool = False,
              shared_prompt: bool = False, combine: Sequence[float] | None = None,
              show_progress: bool = False) -> torch.Tensor:
        """Rewards for (prompt, response) pairs: shape (N,) for one output, else (N, attributes).

        Sequences are sorted by length and batched by a token budget, and a batch closes before
        its pad positions pass ``CALL_PADDING`` (5 %) of what it computes, so short ones are not
        padded to long ones; results come back in input order. ``combine``
        gives weights to collapse several heads into one reward.

        ``shared_prompt=True`` (decoders; best-of-N scoring) groups responses whose prompts
        tokenize identically and computes each prompt once, with a block mask that keeps the
        responses apart: the rewards equal separate encoding (to float rounding) at the cost of
        ``p + sum(responses)`` tokens instead of ``N * p + sum(responses)``. ``batch_size`` then
        counts prompt groups.
        """
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        feat = self.featurizer()
        seqs = []
        for i, (p, r) in enumerate(zip(prompts, responses)):
            enc = feat.encode(as_messages(p), r)
            if enc is None:
                raise ValueError(f"response {i} does not fit in max_length={self.max_length}; raise max_length")
            seqs.append(enc)
        # units: one sequence each, or (shared_prompt) every sequence with the same prompt ids
        units: list[list[int]] = [[k] for k in range(len(seqs))]
        if shared_prompt:
            if not self.is_decoder_head:
                raise ValueError("shared_prompt=True needs a decoder backbone (a model with a `score` head)")
            by_prompt: dict[tuple[int, ...], list[int]] = {}
            for k, s in enumerate(seqs):
                by_prompt.setdefault(tuple(s.ids[:s.prompt_len]), []).append(k)
            units = list(by_prompt.values())
        lengths = [sum(len(seqs[k].ids) for k in u) - (len(u) - 1) * seqs[u[0]].prompt_len for u in units]
        budget = max_tokens or batch_size * max(lengths, default=1)
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = torch.empty(len(seqs), len(self.attributes))
        # shared-prompt batches bound their padding per call (row_calls); plain ones per batch
        batches = list(iterate_in_length_order(lengths, budget, batch_size,
                                               max_padding=None if shared_prompt or packing else CALL_PADDING))
        if show_progress:
            from tqdm.auto import tqdm
            batches = tqdm(batches, desc="scoring")
        pad = self.tokenizer.pad_token_id
        for idx in batches:
            order = [k for i in idx for k in units[i]]
            if shared_prompt:  # rows as long as the batch's largest group, each run unpadded
                batch = collate_shared_prompt([[seqs[k] for k in units[i]] for i in idx], pad)
            else:
                batch = collate_sequences([seqs[k] for k in order], pad, packing=packing)
            out[torch.tensor(order)] = self(batch.to(device)).float().cpu()
        self.train(was_training)
        if combine is not None:
            w = torch.tensor(list(combine), dtype=out.dtype)
            if w.numel() != out.shape[1]:
                raise ValueError(f"combine has {w.numel()} weights for {out.shape[1]} outputs {self.attributes}")
            return out @ w
        return out[:, 0] if out.shape[1] == 1 else out

    # -- saving ----------------------------------------------------------------------------

    def save_pretrained(self, out_dir: str | Path, *, state_dict: dict | None = None,
                        is_main_process: bool = True, extra: dict | None = None) -> Path:
        """Write a plain transformers directory (safetensors + config + tokenizer)."""
        out = Path(out_dir)
        if is_main_process:
            out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out, state_dict=state_dict, is_main_process=is_main_process,
                                   safe_serialization=True)
        if is_main_process:
            self.tokenizer.save_pretrained(out)
            if extra:
                (out / "rmlib.json").write_text(json.dumps(extra, indent=2, default=str))
        return out
