"""Evaluation during training: the one scoring loop, then the loss and pure metrics.

Scoring shards the eval set across processes and gathers per-example rewards in input order
(``rmlib.models.scoring``); only then is anything averaged, since a mean of per-process means is
wrong as soon as shards differ in size. The loss is fed exactly as in training, through
``loss.batch_values`` with the labels built by ``stack_labels``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from rmlib.data.collate import stack_labels
from rmlib.models.scoring import score_sequences


def predict(model, feats: Sequence, *, pad_id: int, batch_size: int, accelerator,
            packing: bool = False) -> torch.Tensor:
    """Rewards (sequences, heads) for every eval item, in the loss's layout.

    Items are flattened field-major (pairs: every chosen, then every rejected), which is the
    chosen-first row order that pairwise losses read (``rewards[:n]`` chosen).
    """
    if not feats:
        return torch.zeros((0, 1))
    per_item = [_sequences(f) for f in feats]
    seqs = [item[j] for j in range(len(per_item[0])) for item in per_item]
    return score_sequences(model, seqs, pad_id=pad_id, batch_size=batch_size, packing=packing,
                           accelerator=accelerator)


def _sequences(f) -> tuple:
    return (f.chosen, f.rejected) if hasattr(f, "chosen") else (f.seq,)


def pair_metrics(chosen: np.ndarray, rejected: np.ndarray, loss: float) -> dict[str, float]:
    """Accuracy is the evaluator's own metric: a tie counts as wrong (strict r_c > r_r)."""
    from rmlib.eval.pairwise import pairwise_accuracy

    both = np.concatenate([chosen, rejected])
    return {"loss": float(loss), "accuracy": pairwise_accuracy(chosen, rejected)["accuracy"],
            "margin": float((chosen - rejected).mean()),
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


def evaluate(model, loss_fn, feats: Sequence, *, kind: str, attributes: list[str], pad_id: int,
             batch_size: int, accelerator, packing: bool = False) -> dict[str, float]:
    """Held-out loss (the training loss's mean over the units it counts) and the kind's metrics."""
    feats = list(feats)  # an evaluation set is read once per evaluation (a FeatureSet reads Arrow)
    if kind == "judge":  # a generative judge: teacher-forced loss on its target tokens
        from rmlib.training.judge_eval import judge_metrics

        return judge_metrics(model, loss_fn, feats, pad_id=pad_id, batch_size=batch_size, accelerator=accelerator,
                             packing=packing)
    outputs = predict(model, feats, pad_id=pad_id, batch_size=batch_size, accelerator=accelerator,
                      packing=packing)
    labels = stack_labels(feats)
    loss = float(loss_fn.batch_values(outputs, labels).sum()) / max(loss_fn.count(labels, len(feats)), 1)
    if kind == "pairs":
        n = len(feats)
        return pair_metrics(outputs[:n, 0].numpy(), outputs[n:, 0].numpy(), loss)
    return rated_metrics(loss_fn.predictions(outputs).numpy(), labels["targets"].numpy(), loss, attributes)
