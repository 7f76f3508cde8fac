"""Evaluation during training: every process scores a contiguous shard, results gathered in order.

Per-example values are gathered before anything is averaged: a mean of per-process means is
wrong as soon as shards differ in size.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rmlib.data.collate import collate_pairs, collate_rated, iterate_in_length_order


@torch.no_grad()
def predict(model, feats: list, *, kind: str, pad_id: int, batch_size: int, accelerator,
            packing: bool = False) -> np.ndarray:
    """Rewards for every eval example, gathered across processes in input order.

    Pairs give an array (N, 2, heads) of (chosen, rejected); ratings give (N, heads).
    """
    from accelerate.utils import gather_object

    with accelerator.split_between_processes(feats) as local:  # contiguous shards, sizes differ by <= 1
        local = list(local)
    lengths = [f.n_tokens for f in local]
    collate = collate_pairs if kind == "pairs" else collate_rated
    out: list = [None] * len(local)
    was_training = model.training
    model.eval()
    budget = batch_size * max(lengths, default=1)
    batches = list(iterate_in_length_order(lengths, budget, batch_size))
    for idx in batches:
        batch = collate([local[k] for k in idx], pad_id, packing=packing).to(accelerator.device)
        r = model(batch).float().cpu()
        if kind == "pairs":
            n = batch.num_pairs
            r = torch.stack([r[:n], r[n:]], dim=1)
        for k, row in zip(idx, r.numpy()):
            out[k] = row
    if accelerator.num_processes > 1 and feats:
        # ZeRO-3 (and FSDP) gather each layer's weights from every process inside forward: a
        # process with fewer batches must keep joining those collectives or the others hang.
        most = int(accelerator.gather(torch.tensor([len(batches)], device=accelerator.device)).max())
        for _ in range(most - len(batches)):
            model(collate([feats[0]], pad_id, packing=packing).to(accelerator.device))
    model.train(was_training)
    gathered = gather_object([out])  # one list per process, in rank order
    rows = [row for part in gathered for row in part]
    return np.stack(rows) if rows else np.zeros((0,))


def pair_metrics(rewards: np.ndarray, losses: np.ndarray) -> dict[str, float]:
    """Accuracy is the evaluator's own metric: a tie counts as wrong (strict r_c > r_r)."""
    from rmlib.eval.pairwise import pairwise_accuracy

    c, r = rewards[:, 0, 0], rewards[:, 1, 0]
    both = np.concatenate([c, r])
    return {"loss": float(losses.mean()), "accuracy": pairwise_accuracy(c, r)["accuracy"],
            "margin": float((c - r).mean()),
            "reward_mean": float(both.mean()), "reward_std": float(both.std())}


def rated_metrics(preds: np.ndarray, targets: np.ndarray, loss: float,
                  attributes: list[str]) -> dict[str, float]:
    """MSE over observed targets (NaN = missing), and Pearson r per attribute (NaN when a column is
    constant). ``loss`` is the training loss's own mean, over the rows it counts."""
    valid = ~np.isnan(targets)
    err = np.where(valid, preds - np.nan_to_num(targets), 0.0)
    out = {"loss": float(loss), "mse": float((err ** 2).sum() / max(valid.sum(), 1))}
    for j, name in enumerate(attributes):
        m = valid[:, j]
        x, y = preds[m, j], targets[m, j]
        r = float(np.corrcoef(x, y)[0, 1]) if m.sum() > 1 and x.std() > 0 and y.std() > 0 else math.nan
        out[f"pearson_{name}"] = r
    return out


def evaluate(model, loss_fn, feats: list, *, kind: str, attributes: list[str], pad_id: int, batch_size: int,
             accelerator, packing: bool = False) -> dict[str, float]:
    preds = predict(model, feats, kind=kind, pad_id=pad_id, batch_size=batch_size, accelerator=accelerator,
                    packing=packing)
    if kind == "pairs":
        c, r = torch.from_numpy(preds[:, 0, 0]), torch.from_numpy(preds[:, 1, 0])
        kwargs = {}
        if getattr(loss_fn, "needs_margin", False):
            kwargs["margin"] = torch.tensor([f.strength for f in feats], dtype=torch.float32)
        if getattr(loss_fn, "needs_target_prob", False):
            kwargs["target_prob"] = torch.tensor([f.target_prob for f in feats], dtype=torch.float32)
        losses = loss_fn(c, r, **kwargs).numpy()
        return pair_metrics(preds, losses)
    targets = np.array([f.targets for f in feats], dtype=np.float32)
    losses = loss_fn(torch.from_numpy(preds), torch.from_numpy(targets)).numpy()
    # the same mean as training: over rows with a weighted target (see Trainer._units)
    loss = losses.sum() / max(loss_fn.num_units(torch.from_numpy(targets)), 1)
    return rated_metrics(preds, targets, loss, attributes)
