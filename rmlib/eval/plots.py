"""PNG plots for reports. matplotlib is imported inside each function, with the Agg backend, so that
importing :mod:`rmlib.eval` stays cheap and plotting works on headless machines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_reward_histograms", "plot_forest", "plot_bon_curve", "plot_reliability"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _bins(values: np.ndarray, cap: int = 60):
    """'auto' bin edges, at most ``cap`` bins (outliers would otherwise make thousands)."""
    if values.size == 0:
        return 10
    edges = np.histogram_bin_edges(values, bins="auto")
    return edges if len(edges) - 1 <= cap else np.histogram_bin_edges(values, bins=cap)


def _save(fig, path: str | Path) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_reward_histograms(chosen_rewards: Sequence[float] | np.ndarray, rejected_rewards: Sequence[float] | np.ndarray,
                           path: str | Path, title: str = "") -> Path:
    """Two panels, like Fig. 2 of the HelpSteer2-Preference paper: overlaid histograms of chosen and rejected
    rewards, and the histogram of their differences (chosen − rejected) with a line at 0. The fraction of
    differences strictly above 0 is the pairwise accuracy (a tie counts as wrong); the spread shows how
    confident the model is."""
    plt = _pyplot()
    c = np.asarray(chosen_rewards, dtype=float).reshape(-1)
    r = np.asarray(rejected_rewards, dtype=float).reshape(-1)
    d = c - r
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    bins = _bins(np.concatenate([c, r]))
    for values, name, color in ((c, "chosen", "tab:green"), (r, "rejected", "tab:red")):
        label = f"{name} (mean {values.mean():.3g})" if values.size else name
        ax1.hist(values, bins=bins, alpha=0.35, color=color, label=label)
        ax1.hist(values, bins=bins, histtype="step", linewidth=1.5, color=color)  # outline stays visible
    ax1.set_xlabel("reward")
    ax1.set_ylabel("count")
    ax1.set_title(f"Rewards of chosen vs rejected ({c.size} pairs)")
    ax1.set_ylim(top=ax1.get_ylim()[1] * 1.3)  # headroom so the legend does not cover the bars
    ax1.legend(loc="upper left", framealpha=0.9)
    ax2.hist(d, bins=_bins(d), color="tab:blue", alpha=0.8)
    ax2.axvline(0.0, color="black", linestyle="--", linewidth=1, label="0 (tie)")
    acc = float(np.mean(d > 0)) if d.size else float("nan")
    ax2.set_xlabel("reward(chosen) − reward(rejected)")
    ax2.set_ylabel("pairs")
    ax2.set_title(f"Differences: {acc:.1%} of pairs > 0 (ties count as wrong)")
    ax2.set_ylim(top=ax2.get_ylim()[1] * 1.2)
    ax2.legend(loc="upper left", framealpha=0.9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_forest(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "Agreement with labels") -> Path:
    """Forest plot: one line per scorer with its agreement (dot) and Wilson CI (bar), a dashed line at 50%.
    ``rows`` are :func:`rmlib.eval.suites.agreement.agreement_table` rows (keys scorer, agreement, ci_low,
    ci_high, n, and optionally p_bonferroni); drawn top to bottom in the given order. Scorer names are on
    the left (``*`` when the Bonferroni-corrected p-value is below 0.05), agreement [CI] and n on the right."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    rows = [r for r in rows if r["agreement"] is not None and np.isfinite(r["agreement"])]
    fig, ax = plt.subplots(figsize=(8.5, 1.9 + 0.42 * max(len(rows), 1)), layout="constrained")
    y = np.arange(len(rows))[::-1]
    for yi, row in zip(y, rows):
        ax.plot([row["ci_low"], row["ci_high"]], [yi, yi], color="tab:blue", linewidth=2)
        ax.plot(row["agreement"], yi, "o", color="tab:blue")
    ax.axvline(0.5, color="black", linestyle="--", linewidth=1)
    ylim = (-0.7, len(rows) - 0.3)
    ax.set_ylim(*ylim)
    ax.set_yticks(y)
    ax.set_yticklabels([row["scorer"] + (" *" if (row.get("p_bonferroni") or 1.0) < 0.05 else "") for row in rows])
    right = ax.twinx()
    right.set_ylim(*ylim)
    right.set_yticks(y)
    right.set_yticklabels([f"{r['agreement']:.1%} [{r['ci_low']:.1%}, {r['ci_high']:.1%}]  n={r['n']}" for r in rows],
                          fontsize=9)
    ax.set_xlim(0.0, 1.0)
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.set_xlabel("agreement with the label (ties count as disagreement)")
    ax.set_title(title)
    handles = [Line2D([], [], color="tab:blue", marker="o", linewidth=2, label="agreement and Wilson CI"),
               Line2D([], [], color="black", linestyle="--", linewidth=1, label="50% (chance)")]
    if any((r.get("p_bonferroni") or 1.0) < 0.05 for r in rows):
        handles.append(Line2D([], [], linestyle="none", label="* Bonferroni p < 0.05"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=9)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_bon_curve(curve: Sequence[Mapping[str, Any]], path: str | Path, title: str = "Best-of-N") -> Path:
    """accuracy@N against N with the random-pick baseline (``chance``), and, with gold scores, the mean gold
    score of the RM's pick on a second axis. Tick labels show the prompt count when it varies with N."""
    plt = _pyplot()
    ns = [p["n"] for p in curve]
    fig, ax = plt.subplots(figsize=(6.5, 4.6), layout="constrained")
    ax.plot(ns, [p["accuracy"] for p in curve], "o-", color="tab:blue", label="accuracy@N (RM pick)")
    if any(p.get("chance") is not None for p in curve):
        ax.plot(ns, [np.nan if p.get("chance") is None else p["chance"] for p in curve], ":", color="gray",
                label="random pick")
    ax.set_xlabel("N (first N candidates considered)")
    ax.set_ylabel("accuracy@N")
    ax.set_ylim(0.0, 1.05)
    ax.set_xticks(ns)
    counts = [p.get("prompts") for p in curve]
    if len(set(counts)) > 1:
        ax.set_xticklabels([f"{n}\n({c} prompts)" for n, c in zip(ns, counts)], fontsize=8)
    handles = list(ax.get_lines())
    golds = [p.get("gold_of_pick") for p in curve]
    if any(g is not None and np.isfinite(g) for g in golds):
        ax2 = ax.twinx()
        ax2.plot(ns, [np.nan if g is None else g for g in golds], "s--", color="tab:orange",
                 label="mean gold score of RM pick (right axis)")
        ax2.set_ylabel("mean gold score of the RM's pick")
        handles += ax2.get_lines()
    fig.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncol=2, frameon=False,
               fontsize=8)
    n_prompts = max((c for c in counts if c is not None), default=0)
    ax.set_title(f"{title} ({n_prompts} prompts)" if n_prompts else title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_expo_search(rows: Sequence[Mapping[str, Any]], path: str | Path, *, best_alpha: float | None = None,
                     title: str = "ExPO α search") -> Path:
    """Accuracy (and loss, on a second axis) against α from ExPO search rows ``{"alpha", "accuracy",
    "loss"?}`` (:func:`rmlib.expo.search_alpha`), with ``best_alpha`` marked when given."""
    plt = _pyplot()
    rows = sorted(rows, key=lambda r: r["alpha"])
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.plot([r["alpha"] for r in rows], [r["accuracy"] for r in rows], "o-", color="tab:blue", label="accuracy")
    ax.set_xlabel("α (extrapolation factor = 1 + α)")
    ax.set_ylabel("accuracy", color="tab:blue")
    if best_alpha is not None:
        ax.axvline(best_alpha, color="gray", linestyle="--", label=f"best α = {best_alpha:g}")
    handles = list(ax.get_lines())
    with_loss = [r for r in rows if "loss" in r]
    if with_loss:
        ax2 = ax.twinx()
        ax2.plot([r["alpha"] for r in with_loss], [r["loss"] for r in with_loss], "s-", color="tab:red", label="loss")
        ax2.set_ylabel("loss", color="tab:red")
        handles += ax2.get_lines()
    ax.legend(handles, [h.get_label() for h in handles], loc="best")
    ax.set_title(title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


__all__ += ["plot_expo_search"]


def plot_reliability(bins: Sequence[Mapping[str, Any]], path: str | Path, title: str = "Reliability",
                     ece: float | None = None) -> Path:
    """Reliability diagram: mean observed vote share against mean predicted P(A > B) per bin (dots sized by
    the pairs in the bin), with the diagonal a calibrated model lies on. ``bins`` are
    :func:`rmlib.eval.suites.divergence.calibration` rows; empty bins are left out."""
    plt = _pyplot()
    rows = [b for b in bins if b["n"]]
    fig, ax = plt.subplots(figsize=(5.2, 5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="calibrated")
    if rows:
        n = np.array([b["n"] for b in rows], dtype=float)
        ax.scatter([b["mean_predicted"] for b in rows], [b["mean_observed"] for b in rows],
                   s=20 + 200 * n / n.max(), color="tab:blue", alpha=0.8, label="bins (size: pairs)")
        ax.plot([b["mean_predicted"] for b in rows], [b["mean_observed"] for b in rows], color="tab:blue",
                linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted P(A > B)")
    ax.set_ylabel("annotators preferring A (ties half)")
    ax.set_title(title + (f"\nECE {ece:.3f}" if ece is not None and np.isfinite(ece) else ""))
    ax.legend(loc="upper left", framealpha=0.9)
    return _save(fig, path)
