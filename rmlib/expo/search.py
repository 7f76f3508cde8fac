"""Choosing α: evaluate ExPO candidates on one loaded model and pick the best by accuracy.

The grid follows the HelpSteer2-Preference search (arXiv 2410.01257): a coarse grid of
extrapolation factors 1.1–2.0 (α 0.1–1.0 in 0.1 steps), then 0.01 steps around the best. The strong
model alone (α = 0, factor 1.0) is evaluated once as a *baseline* row of the report, so the table shows
what extrapolation gained, but it is not a grid point: the search picks an extrapolated model.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rmlib.expo.extrapolation import combine, extrapolate
from rmlib.expo.matching import Item, OnMismatch, open_pair, plan
from rmlib.models.merge import MergeReader

logger = logging.getLogger(__name__)

#: The coarse grid of the HelpSteer2-Preference search (factors 1.1–2.0, i.e. α 0.1–1.0 in 0.1 steps).
COARSE_ALPHAS: tuple[float, ...] = tuple(round(0.1 * i, 10) for i in range(1, 11))


@dataclass
class SearchResult:
    """Rows ``{"alpha", "factor", "stage", **metrics}`` in evaluation order, and the chosen α."""

    rows: list[dict[str, Any]]
    best_alpha: float
    weak: Path
    strong: Path
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def best_factor(self) -> float:
        return 1.0 + self.best_alpha

    @property
    def best_row(self) -> dict[str, Any]:
        return next(r for r in self.rows if r["alpha"] == self.best_alpha and r["stage"] != "baseline")

    @property
    def baseline_row(self) -> dict[str, Any] | None:
        """The strong model alone (α = 0), evaluated for comparison; None when not asked for."""
        return next((r for r in self.rows if r["stage"] == "baseline"), None)

    def write_best(self, output_dir: str | Path, **kwargs: Any) -> Path:
        """Extrapolate with the chosen α (same mismatch options as the search) to ``output_dir``."""
        return extrapolate(self.weak, self.strong, self.best_alpha, output_dir, **{**self.options, **kwargs})

    def to_json(self) -> str:
        return json.dumps({"best_alpha": self.best_alpha, "best_factor": self.best_factor,
                           "best_row": self.best_row, "baseline_row": self.baseline_row, "weak": str(self.weak), "strong": str(self.strong),
                           "rows": self.rows}, indent=2)

    def to_markdown(self) -> str:
        keys = ["alpha", "factor", "stage"] + [k for k in self.rows[0] if k not in ("alpha", "factor", "stage")]
        lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for r in sorted(self.rows, key=lambda r: r["alpha"]):
            cells = [f"{r.get(k):.4g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys]
            mark = " ← best" if r is self.best_row else " (strong alone, not a grid point)" \
                if r["stage"] == "baseline" else ""
            lines.append("| " + " | ".join(cells) + " |" + mark)
        return "\n".join(lines)


def rank_key(row: Mapping[str, Any]) -> tuple[float, float, float, float]:
    """Best first: highest accuracy, then lowest loss (missing/NaN → worst), then the α closest to strong."""
    acc = float(row["accuracy"])
    loss = float(row.get("loss", math.inf))
    return (-acc if math.isfinite(acc) else math.inf, loss if math.isfinite(loss) else math.inf,
            abs(row["alpha"]), row["alpha"])


def _fine_grid(coarse: Sequence[float], best: float, step: float) -> list[float]:
    """α strictly between ``best``'s neighbours in the coarse grid, every ``step`` (no extension past its ends)."""
    grid = sorted(coarse)
    i = grid.index(best)
    lo = grid[i - 1] if i > 0 else best
    hi = grid[i + 1] if i + 1 < len(grid) else best
    n_lo, n_hi = round((best - lo) / step), round((hi - best) / step)
    out = [round(best + k * step, 10) for k in range(-n_lo, n_hi + 1)]
    return [a for a in out if lo < a < hi and a != best]


def search_alpha(weak: str | Path, strong: str | Path, alphas: Sequence[float],
                 evaluate: Callable[[torch.nn.Module], Mapping[str, float]], *, refine: bool = True,
                 baseline: bool = True,
                 fine_step: float = 0.01, on_mismatch: OnMismatch = "error", head_attribute: str | None = None,
                 base: str | Path | None = None, model_kwargs: Mapping[str, Any] | None = None,
                 progress: Callable[[dict[str, Any]], None] | None = None) -> SearchResult:
    """Evaluate ExPO candidates on one loaded model; pick by accuracy.

    Strong is loaded once as ``AutoModelForSequenceClassification`` (``model_kwargs`` go to
    ``from_pretrained``, default ``dtype="auto"``). Instead of Δ we keep θ_strong and θ_weak once
    in memory in their stored dtypes (fp32 for LoRA-merged tensors): the same memory as one fp32
    Δ for bf16 models, and it lets each candidate be set in place as exactly ``(1+α)θ_s − αθ_w``,
    bit-identical to what :func:`extrapolate` (and so :meth:`SearchResult.write_best`) writes.
    ``evaluate(model)`` runs under ``torch.no_grad()`` in eval mode and must return
    ``"accuracy"`` (and preferably ``"loss"``).

    Grid: ``alphas`` first ("coarse"), then with ``refine`` every ``fine_step`` strictly between
    the best coarse α's neighbours ("fine"), as in the HelpSteer2-Preference search (0.1 then 0.01
    steps). Best = highest accuracy; ties → lower loss (missing loss ranks last); then smaller
    ``|α|`` (the least extrapolation that does as well), then smaller α. With ``baseline`` the strong
    model alone (α = 0) is evaluated first as a "baseline" row that is reported but never chosen
    (unless 0 is one of ``alphas``, which makes it a grid point).
    """
    from transformers import AutoModelForSequenceClassification

    coarse = list(dict.fromkeys(round(float(a), 10) for a in alphas))
    if not coarse or not all(math.isfinite(a) for a in coarse):
        raise ValueError(f"alphas must be a non-empty list of finite numbers, got {list(alphas)}")
    if refine and not fine_step > 0:
        raise ValueError(f"fine_step must be positive, got {fine_step}")
    options: dict[str, Any] = {"on_mismatch": on_mismatch, "head_attribute": head_attribute, "base": base}
    w_ckpt, s_ckpt = open_pair(weak, strong, base)
    with MergeReader() as reader:
        items = plan(reader, w_ckpt, s_ckpt, on_mismatch, head_attribute)
        load_dir = s_ckpt.base or s_ckpt.path
        model = AutoModelForSequenceClassification.from_pretrained(load_dir, **{"dtype": "auto", **(model_kwargs or {})})
        targets = {**dict(model.named_buffers(remove_duplicate=False)),
                   **dict(model.named_parameters(remove_duplicate=False))}
        slots: list[tuple[torch.Tensor, Item, torch.Tensor, torch.Tensor | None]] = []
        seen: set[int] = set()
        for it in items:
            t = targets.get(it.name)
            if t is None:
                raise ValueError(f"checkpoint tensor `{it.name}` has no parameter in the loaded "
                                 f"{type(model).__name__}")
            if tuple(t.shape) != it.strong.shape:
                raise ValueError(f"`{it.name}` is {list(it.strong.shape)} in strong but {list(t.shape)} in the model")
            if t.data_ptr() in seen:  # tied names sharing storage: set once
                continue
            seen.add(t.data_ptr())
            s_val = reader.value(it.strong, 0, it.strong.rows[0])
            w_val = None if it.weak is None else reader.value(it.weak, it.weak_row, it.weak_row + it.strong.rows[0])
            slots.append((t, it, s_val, w_val))
    model.eval()

    rows: list[dict[str, Any]] = []

    def run(a: float, stage: str) -> None:
        with torch.no_grad():
            for t, it, s_val, w_val in slots:
                new = s_val if (w_val is None or a == 0) else combine(s_val, w_val, a, it.strong.dtype)
                t.copy_(new.to(it.strong.dtype))
            metrics = dict(evaluate(model))
        if "accuracy" not in metrics:
            raise ValueError(f"evaluate() must return 'accuracy', got keys {sorted(metrics)}")
        row = {"alpha": a, "factor": round(1.0 + a, 10), "stage": stage, **metrics}
        rows.append(row)
        logger.info("ExPO search α=%g: %s", a, metrics)
        if progress is not None:
            progress(row)

    if baseline and 0.0 not in coarse:
        run(0.0, "baseline")

    def best() -> float:
        return min((r for r in rows if r["stage"] != "baseline"), key=rank_key)["alpha"]

    for a in coarse:
        run(a, "coarse")
    if refine:
        for a in _fine_grid(coarse, best(), fine_step):
            if all(r["alpha"] != a for r in rows):
                run(a, "fine")
    best_alpha = best()
    return SearchResult(rows, best_alpha, w_ckpt.path, s_ckpt.path, options)


def pairwise_evaluator(score_fn: Callable[[torch.nn.Module], tuple[Any, Any]]
                       ) -> Callable[[torch.nn.Module], dict[str, float]]:
    """An ``evaluate`` for :func:`search_alpha` from ``score_fn(model) → (chosen, rejected)`` scores.

    Returns :func:`rmlib.eval.pairwise.pairwise_accuracy` (strict ``>``, ties count wrong) and the
    mean loss of the registered ``"bt"`` loss, ``−log σ(chosen − rejected)``, the search's
    tie-breaker (computed in fp64; NaN when there are no pairs).
    """
    from rmlib.eval.pairwise import pairwise_accuracy
    from rmlib.losses import get_loss

    bt = get_loss("bt")

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        chosen, rejected = score_fn(model)
        c = torch.as_tensor(chosen).detach().cpu().double().reshape(-1)
        r = torch.as_tensor(rejected).detach().cpu().double().reshape(-1)
        acc = pairwise_accuracy(c.numpy(), r.numpy())
        loss = float(bt(c, r)) if c.numel() else float("nan")
        return {"accuracy": acc["accuracy"], "loss": loss, "n": acc["n"]}

    return evaluate


def plot_search(result: SearchResult, path: str | Path) -> Path:
    """Accuracy (and loss) against α with the best α marked: :func:`rmlib.eval.plots.plot_expo_search`."""
    from rmlib.eval.plots import plot_expo_search

    return plot_expo_search(result.rows, path, best_alpha=result.best_alpha)
