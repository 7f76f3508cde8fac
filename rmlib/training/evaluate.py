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
            packing: bool = False, shared_prompt: bool = False) -> torch.Tensor:
    """Rewards (sequences, heads) for every eval item, in the loss's layout.

    Items are flattened field-major (pairs: every chosen, then every rejected), which is the
    chosen-first row order that pairwise losses read (``rewards[:n]`` chosen). Ranked lists are
    flattened list by list (their k varies), the order listwise losses read; with ``shared_prompt``
    each list's prompt is computed once in its packed call.
    """
    if not feats:
        return torch.zeros((0, 1))
    if hasattr(feats[0], "seqs"):  # ranked lists (rmlib.data.tokenize.ListFeatures)
        seqs = [s for f in feats for s in f.seqs]
    else:
        per_item = [_sequences(f) for f in feats]
        seqs = [item[j] for j in range(len(per_item[0])) for item in per_item]
        shared_prompt = False
    return score_sequences(model, seqs, pad_id=pad_id, batch_size=batch_size, packing=packing,
                           shared_prompt=shared_prompt, accelerator=accelerator)


def _sequences(f) -> tuple:
    return (f.chosen, f.rejected) if hasattr(f, "chosen") else (f.seq,)


def list_metrics(rewards: np.ndarray, scores: np.ndarray, loss: float) -> dict[str, float]:
    """Metrics of ranked lists from (lists, k) rewards and scores (NaN = no response in that slot).

    * ``top1_accuracy``: the response the model scores highest is in the list's best-scored group; an
      exact tie at the model's top counts as wrong unless every tied response is in the best group
      (strict, as RewardBench counts ties).
    * ``pair_accuracy``: over every strictly ordered pair of every list (tied pairs skipped), the share
      the model orders the same way, strictly; pooled over lists, so a longer list has more pairs.
    """
    valid = ~np.isnan(scores)
    r = np.where(valid, rewards, -np.inf)
    s = np.where(valid, scores, -np.inf)
    top_model = r == r.max(1, keepdims=True)
    best = s == s.max(1, keepdims=True)
    top1 = np.all(~top_model | best, axis=1)
    ordered = (s[:, :, None] > s[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    agree = ordered & (r[:, :, None] > r[:, None, :])
    return {"loss": float(loss), "top1_accuracy": float(top1.mean()),
            "pair_accuracy": float(agree.sum() / max(ordered.sum(), 1)),
            "reward_mean": float(rewards[valid].mean()), "reward_std": float(rewards[valid].std())}


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
             batch_size: int, accelerator, packing: bool = False, shared_prompt: bool = False) -> dict[str, float]:
    """Held-out loss (the training loss's mean over the units it counts) and the kind's metrics."""
    feats = list(feats)  # an evaluation set is read once per evaluation (a FeatureSet reads Arrow)
    if kind == "judge":  # a generative judge: teacher-forced loss on its target tokens
        from rmlib.training.judge_eval import judge_metrics

        return judge_metrics(model, loss_fn, feats, pad_id=pad_id, batch_size=batch_size, accelerator=accelerator,
                             packing=packing)
    outputs = predict(model, feats, pad_id=pad_id, batch_size=batch_size, accelerator=accelerator,
                      packing=packing, shared_prompt=shared_prompt)
    labels = stack_labels(feats)
    loss = float(loss_fn.batch_values(outputs, labels).sum()) / max(loss_fn.count(labels, len(feats)), 1)
    if kind == "pairs":
        n = len(feats)
        return pair_metrics(outputs[:n, 0].numpy(), outputs[n:, 0].numpy(), loss)
    if kind == "lists":
        scores = labels["scores"].numpy()
        rewards = np.full(scores.shape, np.nan)
        rewards[~np.isnan(scores)] = outputs[:, 0].numpy()
        return list_metrics(rewards, scores, loss)
    return rated_metrics(loss_fn.predictions(outputs).numpy(), labels["targets"].numpy(), loss, attributes)
