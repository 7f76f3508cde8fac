"""Generative losses: a causal LM trained to write a judgement (the Pairwise Justifier).

HelpSteer2-Preference (Wang et al., arXiv 2410.01257, §3.2) trains its Pairwise Justifier with
cross-entropy "as typically used for supervised fine-tuning": the next-token loss on the target text
(the justification ending in "@Response N is ... better"), never on the prompt. The model's outputs
for such a batch are the logits at the positions that predict target tokens only (the collator lists
those positions in ``Batch.end_index`` and the tokens in ``Batch.labels["target_ids"]``), so the loss
sees one row per target token and prompt tokens cannot carry loss at all.

The unit is a target token (``count_unit = "tokens"``): the trainer divides the summed loss of every
micro-batch by the target tokens of the whole global batch (``count``), so the step loss is the mean
over the global batch's target tokens whatever the accumulation and the number of processes.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from rmlib.data.judge_features import DEFAULT_OPTIONS, check_options
from rmlib.losses.registry import Reduction, RewardLoss, register_loss


@register_loss("justifier")
class JustifierLoss(RewardLoss):
    """Token cross-entropy on the target tokens of judge sequences (the Pairwise Justifier).

    Options that shape the data (part of the feature-cache key): ``target`` — what the model learns to
    write: ``elaboration_statement`` (default, the paper's), ``statement`` or ``label`` (its ablations);
    ``flip`` — also train on each example with the responses swapped and the names in the target
    rewritten (the paper's flip augmentation; default true).
    """

    family = "generative"
    count_unit = "tokens"
    data_kind = "judge"
    model_kind = "causal_lm"
    labels = ()

    def __init__(self, *, reduction: Reduction = "mean", target: str = DEFAULT_OPTIONS["target"],
                 flip: bool = DEFAULT_OPTIONS["flip"]) -> None:
        super().__init__(reduction=reduction)
        try:
            opts = check_options({"target": target, "flip": flip})
        except ValueError as e:
            raise ValueError(f"loss 'justifier': {e}") from None
        self.target, self.flip = opts["target"], opts["flip"]

    @classmethod
    def data_options(cls, options: Mapping[str, object]) -> dict[str, object]:
        return check_options({k: options[k] for k in DEFAULT_OPTIONS if k in options})

    def forward(self, logits: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        """``logits`` (T, vocab) at the positions predicting the ``target_ids`` (T,); per-token values."""
        if logits.dim() != 2 or target_ids.dim() != 1 or logits.shape[0] != target_ids.shape[0]:
            raise ValueError(f"logits must be (T, vocab) and target_ids (T,), got {tuple(logits.shape)} and "
                             f"{tuple(target_ids.shape)}")
        values = F.cross_entropy(logits.float(), target_ids.long(), reduction="none")
        return self._reduce(values, values.numel())

    def batch_values(self, outputs: torch.Tensor, labels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self(outputs, labels["target_ids"])

    def count(self, labels: Mapping[str, torch.Tensor], n_items: int) -> int:
        """Target tokens of the items (``n_target``, read from the feature table without token ids)."""
        return int(labels["n_target"].sum().item())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, target={self.target!r}, flip={self.flip}"
