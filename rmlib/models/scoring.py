"""The one scoring loop: tokenized sequences in, rewards out, in input order.

``RewardModel.score`` (and so the evaluation suites, ExPO's α search and ``rmlib score``) and the
trainer's held-out evaluation all run through :func:`score_sequences`. Sequences are sorted by
length and batched by a token budget; a batch closes before its pad positions pass
``CALL_PADDING`` (5 %) of what it computes, so short sequences are never padded to long ones.
With an ``accelerator`` every process scores a contiguous shard and the results are gathered in
input order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from rmlib.data.collate import CALL_PADDING, collate_sequences, collate_shared_prompt, iterate_in_length_order
from rmlib.data.tokenize import Encoded


def _units(seqs: Sequence[Encoded], shared_prompt: bool) -> list[list[int]]:
    """One sequence per unit, or (shared_prompt) every sequence whose prompt ids are identical."""
    if not shared_prompt:
        return [[k] for k in range(len(seqs))]
    by_prompt: dict[tuple[int, ...], list[int]] = {}
    for k, s in enumerate(seqs):
        by_prompt.setdefault(tuple(s.ids[:s.prompt_len]), []).append(k)
    return list(by_prompt.values())


@torch.no_grad()
def score_sequences(model: Callable[[Any], torch.Tensor], seqs: Sequence[Encoded], *, pad_id: int,
                    batch_size: int = 16, max_tokens: int | None = None, packing: bool = False,
                    shared_prompt: bool = False, accelerator: Any = None,
                    show_progress: bool = False) -> torch.Tensor:
    """Rewards (N, heads) on the CPU for ``seqs``, in input order.

    ``model`` is anything that maps a :class:`~rmlib.data.collate.Batch` to (sequences, heads):
    a :class:`RewardModel`, or the same model wrapped by Accelerate (DDP, DeepSpeed) during
    training. ``shared_prompt`` computes each distinct prompt once (decoders; best-of-N), and
    ``batch_size`` then counts prompt groups.

    With an ``accelerator`` of several processes each scores a contiguous shard of the units
    (sizes differ by at most one) and the rows are gathered in input order. Under ZeRO-3 and FSDP
    each forward gathers weights from every process, so a process with fewer batches keeps
    joining those collectives with a throw-away batch until the busiest one is done.
    """
    units = _units(seqs, shared_prompt)
    multi = accelerator is not None and accelerator.num_processes > 1
    mine = range(len(units))
    if multi:
        with accelerator.split_between_processes(list(range(len(units)))) as local:
            mine = list(local)
    local_units = [units[i] for i in mine]
    lengths = [sum(len(seqs[k].ids) for k in u) - (len(u) - 1) * seqs[u[0]].prompt_len for u in local_units]
    budget = max_tokens or batch_size * max(lengths, default=1)
    # shared-prompt batches bound their padding per model call (row_calls); plain ones per batch
    batches = list(iterate_in_length_order(lengths, budget, batch_size,
                                           max_padding=None if shared_prompt or packing else CALL_PADDING))
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    # every process must run the same number of forwards (ZeRO-3/FSDP gather weights inside each),
    # so the count is agreed on *before* any forward: a collective after the loop would meet another
    # process's weight gathers still in flight
    most = int(accelerator.gather(torch.tensor([len(batches)], device=device)).max()) if multi else len(batches)
    rows: dict[int, torch.Tensor] = {}
    for idx in (_progress(batches) if show_progress else batches):
        order = [k for i in idx for k in local_units[i]]
        if shared_prompt:  # rows as long as the batch's largest group, each run unpadded
            batch = collate_shared_prompt([[seqs[k] for k in local_units[i]] for i in idx], pad_id)
        else:
            batch = collate_sequences([seqs[k] for k in order], pad_id, packing=packing)
        out = model(batch.to(device)).float().cpu()
        rows.update(zip(order, out))
    for _ in range(most - len(batches)):  # throw-away forwards that keep this process in step
        model(collate_sequences([seqs[0]], pad_id, packing=packing).to(device))
    if was_training:
        model.train()
    if multi:
        from accelerate.utils import gather_object

        parts = gather_object([sorted(rows.items(), key=lambda kv: kv[0])])  # one list per process, rank order
        rows = {k: v for part in parts for k, v in part}
    if not rows:
        return torch.zeros((0, 1))
    return torch.stack([rows[k] for k in range(len(seqs))])


def _progress(batches):
    from tqdm.auto import tqdm

    return tqdm(batches, desc="scoring")
