"""Held-out evaluation of a justifier during training: the training loss and next-token accuracy on the
target tokens (teacher forcing), over the whole evaluation set and every process.

Why not generation here: generating and parsing every held-out judgement at each evaluation costs
hundreds of decoding steps per example; the teacher-forced loss is the quantity the run optimises and
ranks checkpoints by. Verdict accuracy by generation is ``rmlib eval``'s job (``rmlib.eval.generative``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rmlib.data.collate import collate_judge, iterate_in_length_order


@torch.no_grad()
def judge_metrics(model, loss_fn, feats: Sequence, *, pad_id: int, batch_size: int, accelerator,
                  packing: bool = False) -> dict[str, float]:
    """``loss`` (mean over target tokens) and ``token_accuracy`` (argmax equals the target) of ``feats``.

    Each process takes a contiguous shard; sums are reduced across processes before dividing, so the
    result is the mean over all target tokens whatever the shard sizes. Every process runs the same
    number of forwards (a wrapped model may synchronise inside each), padding with a throw-away batch.
    """
    multi = accelerator is not None and accelerator.num_processes > 1
    mine = list(range(len(feats)))
    if multi:
        with accelerator.split_between_processes(mine) as local:
            mine = list(local)
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    lengths = [feats[i].n_tokens for i in mine]
    batches = list(iterate_in_length_order(lengths, batch_size * max(lengths, default=1), batch_size))
    most = len(batches)
    if multi:
        most = int(accelerator.gather(torch.tensor([len(batches)], device=device)).max())
    was_training = getattr(model, "training", False)
    model.eval()
    total, correct, count = 0.0, 0, 0
    for idx in batches:
        batch = collate_judge([feats[mine[i]] for i in idx], pad_id, packing=packing).to(device)
        logits = model(batch)
        total += float(loss_fn.batch_values(logits, batch.labels).sum())
        correct += int((logits.argmax(-1) == batch.labels["target_ids"]).sum())
        count += int(batch.labels["target_ids"].numel())
    for _ in range(most - len(batches)):
        model(collate_judge([feats[0]], pad_id, packing=packing).to(device))
    if was_training:
        model.train()
    sums = torch.tensor([total, correct, count], dtype=torch.float64, device=device)
    if multi:
        sums = accelerator.reduce(sums, reduction="sum")
    total, correct, count = sums.tolist()
    return {"loss": total / max(count, 1), "token_accuracy": correct / max(count, 1), "target_tokens": float(count)}
