"""A reward model is a ``transformers`` sequence classifier read at the end-of-response token.

We keep the Hugging Face ``*ForSequenceClassification`` module as the model itself (no wrapper
weights), so a saved directory is a plain transformers checkpoint that other tools load with
``AutoModelForSequenceClassification`` and score identically. What we add is the *reading*:

* decoders (modules with a ``score`` head) run the backbone once and apply the head only at the
  positions given by the batch's ``end_index``. This works for right-padded rows and for packed
  rows holding many sequences, and never depends on finding pad tokens;
* encoders (BERT-style ``classifier`` heads) use their own pooling ([CLS] + pooler), which is how
  they were pre-trained and how transformers will load them again.

A decoder checkpoint trained elsewhere with ``pad == eos`` (TRL's ``RewardTrainer`` sets the pad token
to eos when a tokenizer has none) was trained at another token: transformers' sequence-classification
pooling reads the rightmost token that is not ``config.pad_token_id``, so with pad == eos the token
*before* the final end token. :meth:`RewardModel.from_pretrained` detects such a checkpoint and reads
it there (``reward_token``, :data:`REWARD_TOKENS`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rmlib.data.collate import Batch
from rmlib.data.schema import Message
from rmlib.data.tokenize import Featurizer, prepare_tokenizer
from rmlib.io import resolve_model, torch_dtype
from rmlib.models.wrapper import INFO_FILE, HFWrapper

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 1024

#: Where a decoder reads the reward. ``"end"``: the last token of the sequence (rmlib's rule, the
#: end-of-response token). ``"last_non_pad"``: transformers' own pooling over the checkpoint's
#: ``config.pad_token_id``, the rightmost token that is not that id; for a checkpoint whose pad is its
#: eos (TRL's RewardTrainer on a tokenizer without a pad token) the token before the final eos.
#: ``"auto"``: ``"last_non_pad"`` for a checkpoint not trained by rmlib (no ``rmlib.json``) whose
#: config has ``pad_token_id == eos_token_id`` and whose trained head is kept, else ``"end"``.
REWARD_TOKENS = ("auto", "end", "last_non_pad")


class TooLong(ValueError):
    """A sequence that cannot fit in ``max_length`` even with its prompt cut away; ``index`` names it."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index


def load_tokenizer(path_or_name: str | Path, *, trust_remote_code: bool = False):
    """The tokenizer a reward model of ``path_or_name`` uses, with a pad token distinct from eos.

    The one loader for training features, scoring and serving, so all of them see the same ids.
    A LoRA run's output directory holds its tokenizer beside the adapter.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(path_or_name), trust_remote_code=trust_remote_code)
    prepare_tokenizer(tok)
    return tok


def position_limit(config) -> int | None:
    """How many positions the backbone can encode (``max_position_embeddings``), if it says."""
    limit = getattr(config, "max_position_embeddings", None)
    return int(limit) if isinstance(limit, int) and limit > 0 else None


def resolve_max_length(requested: int | None, config, key: str = "max_length") -> int:
    """``requested`` checked against the model's position limit; None → the limit, at most 1024.

    Why: a sequence longer than the position table crashes inside the model with a raw tensor-size
    error, on the first batch that holds one, possibly deep into an epoch. Capped here, long inputs
    are truncated or dropped (and counted) by the tokenization rules instead.
    """
    limit = position_limit(config)
    if requested is None:
        return min(DEFAULT_MAX_LENGTH, limit) if limit else DEFAULT_MAX_LENGTH
    if limit is not None and requested > limit:
        raise ValueError(f"{key}={requested} is more than this model's {limit} positions "
                         f"(max_position_embeddings); use {key} <= {limit} or leave it unset")
    return requested


def _eos_ids(config) -> set[int]:
    eos = getattr(config, "eos_token_id", None)
    return {e for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if isinstance(e, int)}


def trained_reward_token(src: str | Path, config, requested: str, head_kept: bool) -> str:
    """The ``reward_token`` rule (:data:`REWARD_TOKENS`) a checkpoint is read with.

    Why: with ``pad == eos`` transformers' pooling, and so every trainer built on it (TRL's
    ``RewardTrainer``), trains the head on the token before the final eos, while rmlib reads the final
    eos; reading it there moves rewards silently. An rmlib checkpoint (``rmlib.json`` beside it) records
    its rule, or was trained at ``"end"``.
    """
    if requested not in REWARD_TOKENS:
        raise ValueError(f"reward_token must be one of {REWARD_TOKENS}, got {requested!r}")
    info = Path(src) / INFO_FILE
    if requested != "auto":
        return requested
    if info.is_file():
        try:
            return str(json.loads(info.read_text()).get("reward_token", "end"))
        except (json.JSONDecodeError, AttributeError) as e:
            raise ValueError(f"{info}: not a JSON object ({e}); it is rmlib's training summary") from None
    pad = getattr(config, "pad_token_id", None)
    foreign = head_kept and isinstance(pad, int) and pad in _eos_ids(config) and any(
        str(a).endswith("ForSequenceClassification") for a in getattr(config, "architectures", None) or [])
    if foreign:
        logger.warning("%s: pad_token_id == eos_token_id (%d) in its config and no %s: a checkpoint trained "
                       "elsewhere (e.g. TRL's RewardTrainer), whose reward is read at the last token that is "
                       "not the pad, the one before the final eos. Reading it there (reward_token="
                       "'last_non_pad'); pass reward_token='end' to read the final eos instead.", src, pad,
                       INFO_FILE)
        return "last_non_pad"
    return "end"


def as_messages(prompt: str | Sequence[Message]) -> list[Message]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


class RewardModel(HFWrapper):
    """Backbone + linear head, one output per attribute (names in ``config.id2label``)."""

    def __init__(self, model: nn.Module, tokenizer, max_length: int = DEFAULT_MAX_LENGTH):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.is_decoder_head = isinstance(getattr(self._hf, "score", None), nn.Linear)
        #: the token id that reading steps back over (``reward_token="last_non_pad"``), or None
        self.skip_token_id: int | None = None

    @property
    def reward_token(self) -> str:
        """Where this model reads the reward (:data:`REWARD_TOKENS`): ``"end"`` or ``"last_non_pad"``."""
        return "end" if self.skip_token_id is None else "last_non_pad"

    def read_reward_at(self, rule: str, pad_token_id: int | None = None) -> None:
        """Read the reward at ``rule`` (``"end"``, or ``"last_non_pad"`` of ``pad_token_id``: the id the
        checkpoint was trained to pool over, its ``config.pad_token_id`` before loading)."""
        if rule == "end":
            self.skip_token_id = None
        elif rule == "last_non_pad":
            if not self.is_decoder_head:
                raise ValueError("reward_token='last_non_pad' applies to decoders; an encoder reads its [CLS] pooling")
            if pad_token_id is None:
                raise ValueError("reward_token='last_non_pad' needs the pad token id the checkpoint was trained with")
            self.skip_token_id = int(pad_token_id)
        else:
            raise ValueError(f"reward_token must be 'end' or 'last_non_pad', got {rule!r}")

    # -- construction ----------------------------------------------------------------------

    #: Loaders :meth:`from_pretrained` tries first, as ``(matches(path), load(path, **kwargs))``, for
    #: directories that are not plain checkpoints. ``rmlib.models.lora`` registers LoRA adapter
    #: directories when ``rmlib.models`` is imported, so this module never imports lora.
    directory_loaders: list = []

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path, *, attributes: Sequence[str] | None = None,
                        dtype: str | torch.dtype = "float32", trust_remote_code: bool = False,
                        attn_implementation: str | None = None, max_length: int | None = None,
                        reward_token: str = "auto", **kwargs) -> RewardModel:
        """Load a checkpoint (local directory or hub name) as a reward model.

        ``attributes`` names the outputs; when it differs from the checkpoint's labels the head is
        re-initialised with that many outputs (a new reward head on a pretrained backbone).
        Weights are read from safetensors only. A LoRA run's adapter directory (it holds
        ``adapter_config.json``) loads as its base + adapter + trained head (``rmlib/models/lora.py``).
        ``max_length`` (tokens per sequence) defaults to the model's position limit, at most 1024;
        a value above that limit is refused here rather than crashing on the first long input.
        ``reward_token`` says where a decoder reads the reward (:data:`REWARD_TOKENS`); ``"auto"``
        reads a checkpoint trained elsewhere with pad == eos where it was trained (and logs a warning).
        """
        from transformers import AutoConfig, AutoModelForSequenceClassification

        src = resolve_model(path_or_name)  # built-in alias (minilm-l6), local directory or hub id
        for matches, load in cls.directory_loaders:  # e.g. a LoRA run's output: base + adapter + full head
            if matches(Path(src)):
                rm = load(src, attributes=attributes, dtype=dtype, trust_remote_code=trust_remote_code,
                          attn_implementation=attn_implementation, max_length=max_length, **kwargs)
                if isinstance(rm, RewardModel):  # an rmlib run's output: trained at rmlib's end token
                    rm.read_reward_at("end")
                return rm
        tok = load_tokenizer(src, trust_remote_code=trust_remote_code)
        config = AutoConfig.from_pretrained(src, trust_remote_code=trust_remote_code)
        max_length = resolve_max_length(max_length, config)
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
            src, dtype=torch_dtype(dtype), use_safetensors=True,
            trust_remote_code=trust_remote_code, **extra, **kwargs)
        trained_pad = getattr(config, "pad_token_id", None)
        rule = trained_reward_token(src, config, reward_token, head_kept=not extra.get("num_labels"))
        if len(tok) > model.get_input_embeddings().num_embeddings:  # prepare_tokenizer added a pad token
            model.resize_token_embeddings(len(tok))
        model.config.pad_token_id = tok.pad_token_id
        rm = cls(model, tok, max_length=max_length)
        if rm.is_decoder_head or rule != "last_non_pad":  # an encoder reads [CLS] whatever its pad
            rm.read_reward_at(rule, trained_pad)
        return rm


    @property
    def attributes(self) -> list[str]:
        """The raw outputs' names (``config.id2label``): one per attribute, or a distribution's raw outputs."""
        labels = self.config.id2label or {0: "reward"}
        return [labels[i] for i in sorted(labels)]

    @property
    def head(self) -> nn.Module:
        """The linear head (``score`` of a decoder, ``classifier`` of an encoder; PEFT's wrapper under LoRA)."""
        return getattr(self._hf, "score" if self.is_decoder_head else "classifier")

    @property
    def distribution(self):
        """What the outputs mean when the model predicts a distribution over the reward
        (:mod:`rmlib.models.distribution`: ``mean_var`` or ``rating_ce``), or None for a scalar model."""
        from rmlib.models.distribution import distribution_from_config

        return distribution_from_config(self.config)

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
        end_index = batch.end_index if self.skip_token_id is None else self._last_non_pad(batch)
        if batch.row_calls is not None:  # shared-prompt rows: one call per group of similar-length rows
            # only the end tokens' states are kept from each call (no rows × width copy of the batch)
            width = batch.input_ids.shape[1]
            row_of = torch.div(end_index, width, rounding_mode="floor")
            order, picked = [], []
            for start, end, n in batch.row_calls:
                h = backbone(input_ids=batch.input_ids[start:end, :n],
                             attention_mask=self._block_mask(mask[start:end, :, :n, :n]),
                             position_ids=batch.position_ids[start:end, :n], use_cache=False).last_hidden_state
                seqs = ((row_of >= start) & (row_of < end)).nonzero().squeeze(1)
                local = (row_of[seqs] - start) * n + end_index[seqs] % width
                order.append(seqs)
                picked.append(h.reshape(-1, h.shape[-1]).index_select(0, local))
            return self._head(torch.cat(picked).index_select(0, torch.cat(order).argsort()))
        if mask is not None and mask.dim() == 4:
            mask = self._block_mask(mask)
        hidden = backbone(input_ids=batch.input_ids, attention_mask=mask,
                          position_ids=batch.position_ids, use_cache=False).last_hidden_state
        return self._head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, end_index))

    def _last_non_pad(self, batch: Batch) -> torch.Tensor:
        """``end_index`` moved left past trailing ``skip_token_id`` tokens, within each row: the
        position transformers' pooling reads (the rightmost token that is not the checkpoint's pad).
        Causal attention makes the state there independent of the tokens after it."""
        flat, width = batch.input_ids.reshape(-1), batch.input_ids.shape[1]
        end = batch.end_index
        start = torch.div(end, width, rounding_mode="floor") * width
        for _ in range(width):
            back = (flat[end] == self.skip_token_id) & (end > start)
            if not bool(back.any()):
                break
            end = end - back.long()
        return end

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

    def score(self, prompts: Sequence[str | Sequence[Message]], responses: Sequence[str], *,
              batch_size: int = 16, max_tokens: int | None = None, packing: bool = False,
              shared_prompt: bool = False, combine: Sequence[float] | None = None,
              accelerator=None, show_progress: bool = False) -> torch.Tensor:
        """Rewards for (prompt, response) pairs: shape (N,) for one output, else (N, attributes).

        Runs the one scoring loop (:func:`rmlib.models.scoring.score_sequences`): length-sorted
        batches bounded by a token budget and by 5 % padding, results in input order. ``combine``
        gives weights to collapse several heads into one reward. ``accelerator`` (several
        processes) shards the work and gathers the rewards on every process.

        ``shared_prompt=True`` (decoders; best-of-N scoring) groups responses whose prompts
        tokenize identically and computes each prompt once, with a block mask that keeps the
        responses apart: the rewards equal separate encoding (to float rounding) at the cost of
        ``p + sum(responses)`` tokens instead of ``N * p + sum(responses)``. ``batch_size`` then
        counts prompt groups.

        A distributional model (:attr:`distribution`) returns its mean, shape (N,): every caller that
        ranks responses (suites, ExPO, curation) works unchanged; :meth:`score_outputs` adds the spread.
        """
        raw = self.score_raw(prompts, responses, batch_size=batch_size, max_tokens=max_tokens, packing=packing,
                             shared_prompt=shared_prompt, accelerator=accelerator, show_progress=show_progress)
        dist = self.distribution
        if dist is not None:  # the reward of a distributional model is its mean
            if combine is not None:
                raise ValueError(f"combine weights heads of a multi-attribute model; this {dist.kind} model has one "
                                 "reward (its mean): use score_outputs for the spread")
            return dist.read(raw)["reward"]
        if combine is not None:
            w = torch.tensor(list(combine), dtype=raw.dtype)
            if w.numel() != raw.shape[1]:
                raise ValueError(f"combine has {w.numel()} weights for {raw.shape[1]} outputs {self.attributes}")
            return raw @ w
        return raw[:, 0] if raw.shape[1] == 1 else raw

    def score_outputs(self, prompts: Sequence[str | Sequence[Message]], responses: Sequence[str],
                      **kwargs) -> dict[str, torch.Tensor]:
        """Named outputs, each (N,) (``probs`` of a rating model (N, levels)): ``reward`` and ``std`` of a
        distributional model, ``reward`` of a one-output model, one entry per attribute otherwise.

        Why beside :meth:`score`: every caller that ranks responses wants one reward, and gets the mean;
        a caller that wants to know how contested a response is (the divergence suite, the server) asks here.
        """
        from rmlib.models.distribution import distribution_outputs

        raw = self.score_raw(prompts, responses, **kwargs)
        if self.distribution is None and raw.shape[1] > 1:
            return {name: raw[:, j] for j, name in enumerate(self.attributes)}
        return distribution_outputs(self.distribution, raw)

    def score_raw(self, prompts: Sequence[str | Sequence[Message]], responses: Sequence[str], *,
                  batch_size: int = 16, max_tokens: int | None = None, packing: bool = False,
                  shared_prompt: bool = False, accelerator=None, show_progress: bool = False) -> torch.Tensor:
        """The head's raw outputs (N, heads) through the one scoring loop; :meth:`score` reads them."""
        from rmlib.models.scoring import score_sequences

        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if shared_prompt and not self.is_decoder_head:
            raise ValueError("shared_prompt=True needs a decoder backbone (a model with a `score` head)")
        feat = self.featurizer()
        seqs = []
        for i, (p, r) in enumerate(zip(prompts, responses)):
            enc = feat.encode(as_messages(p), r)
            if enc is None:
                raise TooLong(i, f"response {i} does not fit in max_length={self.max_length} even with its prompt "
                                 "cut to nothing; it cannot be scored by this model")
            seqs.append(enc)
        out = score_sequences(self, seqs, pad_id=self.tokenizer.pad_token_id, batch_size=batch_size,
                              max_tokens=max_tokens, packing=packing, shared_prompt=shared_prompt,
                              accelerator=accelerator, show_progress=show_progress)
        if not seqs:
            out = torch.zeros((0, len(self.attributes)))
        return out

    def score_pairs(self, prompts: Sequence[str | Sequence[Message]], chosen: Sequence[str],
                    rejected: Sequence[str], **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """(chosen rewards, rejected rewards) for preference pairs, through :meth:`score`.

        Why: every pairwise caller (evaluation suites, ExPO's α search, the CLI) needs exactly this,
        and flattening pairs by hand in each of them is where chosen/rejected orders get mixed up.
        """
        if not (len(prompts) == len(chosen) == len(rejected)):
            raise ValueError(f"{len(prompts)} prompts, {len(chosen)} chosen, {len(rejected)} rejected: need one each")
        n = len(prompts)
        try:
            r = self.score(list(prompts) * 2, list(chosen) + list(rejected), **kwargs)
        except TooLong as e:  # name the pair and the side, not a position in the flattened list
            side = "chosen" if e.index < n else "rejected"
            raise TooLong(e.index % n, f"pair {e.index % n}: the {side} response does not fit in "
                                       f"max_length={self.max_length}; it cannot be scored by this model") from None
        return r[:n], r[n:]

    # -- saving ----------------------------------------------------------------------------

    #: How a LoRA reward model is saved (adapter + head + tokenizer, verified by reloading a probe batch):
    #: :func:`rmlib.models.lora.save_checked`, set when ``rmlib.models`` is imported, as the LoRA
    #: directory loader is, so this module never imports lora.
    lora_saver: Callable[..., Any] | None = None

    def save(self, accelerator: Any, prepared: nn.Module, out_dir: str | Path, *, lora: Any = None,
             extra: dict | None = None) -> None:
        """The trainer's save: under LoRA (``lora.enabled``) the verified adapter + head
        (:attr:`lora_saver`), else the plain directory (:meth:`~rmlib.models.wrapper.HFWrapper.save`)."""
        if lora is not None and lora.enabled:
            type(self).lora_saver(accelerator, prepared, out_dir, lora=lora, extra=extra)
            return
        super().save(accelerator, prepared, out_dir, lora=lora, extra=extra)

    def _before_save(self) -> None:
        """Refuse a model read at ``last_non_pad``, and set ``problem_type`` to ``"regression"``.

        :meth:`~rmlib.models.wrapper.HFWrapper.save_pretrained` writes a plain transformers directory
        (safetensors + config + tokenizer). ``problem_type`` is set to ``"regression"``: the outputs are
        raw rewards, and servers (transformers' pipeline, vLLM's classify runner) apply a sigmoid/softmax
        otherwise (the export contract, :mod:`rmlib.models.export`).
        """
        if self.skip_token_id is not None:
            raise ValueError("this model reads its reward at the last token that is not its training pad "
                             f"(reward_token='last_non_pad', pad id {self.skip_token_id}: a checkpoint trained "
                             "elsewhere with pad == eos); an rmlib checkpoint is read at its end token, so saving "
                             "it would move every reward. Keep the original directory, or load it with "
                             "reward_token='end' and train it with rmlib")
        self.config.problem_type = "regression"
