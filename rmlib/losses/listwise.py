"""Listwise losses: one prompt, k rated responses, one loss over the whole ranking.

Inputs are (lists, k) matrices: ``rewards[b, i]`` is the model's reward of response i of list b and
``scores[b, i]`` its rating (higher is better, equal scores a tie); NaN in ``scores`` marks a slot past
the end of a shorter list (lists of different k share a batch). Both losses are per list, and the
mean is over lists (``count_unit = "lists"``), so a list of 16 responses and a list of 4 weigh the same
in a step, as a pair does in the pairwise losses.

* ``plackett_luce``: the negative log-likelihood of the ranking under the Plackett–Luce model, ties
  as tied groups (the rule and why: docs/losses_plackett_luce.md).
* ``all_pairs_bt``: the mean Bradley–Terry loss over every strictly ordered pair of the list (tied
  pairs skipped): what a pairwise trainer optimises on the list's k(k−1)/2 pairs, as a reference.

For k = 2 with two different scores both equal ``bt`` on that pair (tests/test_listwise.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from rmlib.losses.pairwise import compute_dtype
from rmlib.losses.registry import RewardLoss, register_loss


def _check(rewards: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rewards, scores, valid) in the compute dtype; a list with fewer than 2 responses or with every
    response tied is refused (it orders nothing: the readers filter such lists, so here it is a bug)."""
    for name, t in (("rewards", rewards), ("scores", scores)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if rewards.dim() != 2 or rewards.shape != scores.shape:
        raise ValueError(f"rewards and scores must both have shape (lists, k), got {tuple(rewards.shape)} and "
                         f"{tuple(scores.shape)}")
    if rewards.shape[0] == 0:
        raise ValueError("rewards is empty: a listwise loss needs at least one list")
    dtype = compute_dtype(rewards.dtype)
    scores = scores.to(device=rewards.device, dtype=dtype)
    valid = ~torch.isnan(scores)
    rewards = rewards.to(dtype)
    n = valid.sum(1)
    if bool((n < 2).any()):
        b = int((n < 2).nonzero()[0])
        raise ValueError(f"list {b} has {int(n[b])} response(s) with a score; a ranked list needs at least 2")
    if bool(torch.isinf(scores).any()):
        raise ValueError("scores must be finite (NaN marks an absent slot)")
    lo = torch.where(valid, scores, torch.inf).amin(1)
    hi = torch.where(valid, scores, -torch.inf).amax(1)
    if bool((lo == hi).any()):
        b = int((lo == hi).nonzero()[0])
        raise ValueError(f"list {b}: every response has the same score, so it orders nothing")
    if not bool(torch.isfinite(rewards[valid]).all()):
        raise ValueError("rewards of scored responses must be finite")
    return torch.where(valid, rewards, 0.0), torch.where(valid, scores, 0.0), valid


class ListwiseLoss(RewardLoss):
    """Base of losses over ranked lists; subclasses implement :meth:`per_list`.

    ``loss(rewards, scores)`` with (lists, k) matrices; :meth:`batch_values` builds them from a batch
    whose sequences are list by list (``rmlib.data.collate.collate_lists``).
    """

    family = "listwise"
    count_unit = "lists"
    data_kind = "lists"
    labels = ("scores",)

    def forward(self, rewards: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        r, s, valid = _check(rewards, scores)
        values = self.per_list(r, s, valid)
        return self._reduce(values, values.numel())

    def batch_values(self, outputs: torch.Tensor, labels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Head 0 of every sequence, placed list by list into the (lists, k) layout of ``labels["scores"]``."""
        scores = labels["scores"]
        valid = ~torch.isnan(scores)
        if int(valid.sum()) != outputs.shape[0]:
            raise ValueError(f"{outputs.shape[0]} rewards for {int(valid.sum())} scored responses")
        rewards = outputs.new_zeros(scores.shape, dtype=outputs.dtype)
        rewards = rewards.masked_scatter(valid.to(outputs.device), outputs[:, 0])
        return self(rewards, scores)

    def per_list(self, rewards: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Loss of each list (shape (lists,)); slots where ``valid`` is False hold zeros and must not count."""
        raise NotImplementedError


@register_loss("plackett_luce")
class PlackettLuceLoss(ListwiseLoss):
    """−log P(ranking) under Plackett–Luce, ties as tied groups.

    Sort the list into groups of equal score, best first. Each response i is placed above every response
    of a lower group and is never compared with its tied siblings:

        loss = Σ_i [ −r_i + log( e^{r_i} + Σ_{l : s_l < s_i} e^{r_l} ) ]

    Without ties this is exactly the Plackett–Luce negative log-likelihood (the term of the last response
    is 0). Responses of the bottom group contribute 0; tied responses are free to take any order
    among themselves. Summed over the list, averaged over lists.
    """

    def per_list(self, rewards, scores, valid):
        below = (scores[:, None, :] < scores[:, :, None]) & valid[:, None, :]  # [b, i, l]: l ranked below i
        below = below | torch.eye(scores.shape[1], dtype=torch.bool, device=scores.device)[None]
        logits = torch.where(below, rewards[:, None, :], -torch.inf)
        terms = torch.logsumexp(logits, dim=2) - rewards
        return torch.where(valid, terms, 0.0).sum(1)


@register_loss("all_pairs_bt")
class AllPairsBradleyTerryLoss(ListwiseLoss):
    """Mean of −log σ(r_i − r_j) over every pair of the list with s_i > s_j (tied pairs skipped).

    The listwise reference: the Bradley–Terry loss a pairwise trainer would average over the list's
    k(k−1)/2 pairs, computed from one packed forward of the list instead of k(k−1) sequences.
    """

    def per_list(self, rewards, scores, valid):
        ordered = (scores[:, :, None] > scores[:, None, :]) & valid[:, :, None] & valid[:, None, :]
        delta = rewards[:, :, None] - rewards[:, None, :]
        values = torch.where(ordered, -F.logsigmoid(delta), 0.0)
        return values.sum((1, 2)) / ordered.sum((1, 2)).to(values.dtype)
