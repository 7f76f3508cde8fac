"""The result of one evaluation: headline metrics, tables, the rules applied, and data for plots.

A report is plain data, so it can be written as JSON for machines, Markdown for people, and PNG plots,
and so two runs can be compared by diffing ``report.json``.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Report", "compare_reports", "to_jsonable"]


def to_jsonable(obj: Any) -> Any:
    """numpy scalars/arrays → Python; NaN/inf → None (JSON has no NaN); tuples → lists; keys → str."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            return "–"
        return f"{f:.3g}" if (f != 0 and (abs(f) < 1e-3 or abs(f) >= 1e5)) else f"{f:.4f}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v).replace("|", "\\|").replace("\n", " ")


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.extend(_flatten(v, key + "."))
        else:
            out.append((key, v))
    return out


def markdown_table(rows: list[Mapping[str, Any]]) -> str:
    """A GitHub-flavoured Markdown table; columns are the union of row keys in first-seen order."""
    if not rows:
        return "_(empty)_\n"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


@dataclass
class Report:
    """Result of :func:`rmlib.eval.run_suite`.

    ``metrics``: headline numbers (nested dicts allowed); ``tables``: named lists of row dicts;
    ``notes``: the scoring rules used (tie rule, weighting), so a report explains its own numbers;
    ``plots``: name → plot data (``{"kind": "reward_histogram"|"forest"|"bon_curve"|"reliability", ...}``) drawn by
    :meth:`save`, kept out of the JSON; ``meta``: where the data came from.
    """

    suite: str
    metrics: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    plots: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({"suite": self.suite, "metrics": self.metrics, "tables": self.tables,
                            "notes": self.notes, "meta": self.meta})

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_markdown(self, plot_files: Mapping[str, str] | None = None) -> str:
        parts = [f"# Evaluation report: {self.suite}\n"]
        if self.meta:
            parts.append("\n".join(f"- **{k}**: {_fmt(v)}" for k, v in self.meta.items()) + "\n")
        parts.append("## Metrics\n")
        parts.append(markdown_table([{"metric": k, "value": v} for k, v in _flatten(self.metrics)]))
        for name, rows in self.tables.items():
            parts.append(f"## {name}\n")
            parts.append(markdown_table(rows))
        if self.notes:
            parts.append("## Scoring rules\n")
            parts.append("\n".join(f"- {n}" for n in self.notes) + "\n")
        if plot_files:
            parts.append("## Plots\n")
            parts.append("\n".join(f"![{k}]({v})" for k, v in plot_files.items()) + "\n")
        return "\n".join(parts)

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Write ``report.json``, ``report.md`` and one ``<name>.png`` per plot into ``directory``."""
        from rmlib.eval import plots

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        for name, spec in self.plots.items():
            path = d / f"{name}.png"
            kind = spec.get("kind")
            if kind == "reward_histogram":
                plots.plot_reward_histograms(spec["chosen"], spec["rejected"], path, spec.get("title", ""))
            elif kind == "forest":
                plots.plot_forest(spec["rows"], path, spec.get("title", "Agreement with labels"))
            elif kind == "bon_curve":
                plots.plot_bon_curve(spec["curve"], path, spec.get("title", "Best-of-N"))
            elif kind == "reliability":
                plots.plot_reliability(spec["bins"], path, spec.get("title", "Reliability"), spec.get("ece"))
            else:
                raise ValueError(f"plot {name!r}: unknown kind {kind!r}")
            written[name] = path
        (d / "report.json").write_text(self.to_json() + "\n", encoding="utf-8")
        (d / "report.md").write_text(self.to_markdown({k: p.name for k, p in written.items()}), encoding="utf-8")
        written["json"], written["markdown"] = d / "report.json", d / "report.md"
        return written


def compare_reports(reports: Mapping[str, str | Path | Mapping[str, Any]], metrics: list[str] | None = None,
                    title: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """One table of several reports of a suite: a row per report, a column per headline metric.

    ``reports``: name → a report directory (its ``report.json``), a ``report.json`` path, or a report dict.
    ``metrics``: shell-style patterns over the flattened metric names (``"metric.*"``, ``"auroc.*"``,
    ``"ece"``), in column order; every metric when None. Why: a recipe that trains several models
    (BT vs distributional, aggregated vs every annotation) answers its question in one table, built from
    the reports alone. Returns (rows, Markdown).
    """
    rows: list[dict[str, Any]] = []
    suites = set()
    for name, rep in reports.items():
        if not isinstance(rep, Mapping):
            path = Path(rep)
            path = path / "report.json" if path.is_dir() else path
            if not path.is_file():
                raise FileNotFoundError(f"{name}: no report at {path} (run rmlib eval --out first)")
            rep = json.loads(path.read_text(encoding="utf-8"))
        suites.add(rep.get("suite"))
        flat = dict(_flatten(rep.get("metrics", {})))
        if metrics is None:
            keys = list(flat)
        else:
            keys = [k for pat in metrics for k in flat if fnmatch.fnmatchcase(k, pat)]
        rows.append({"model": name, **{k: flat[k] for k in dict.fromkeys(keys)}})
    if len(suites) > 1:
        raise ValueError(f"reports of different suites cannot share a table: {sorted(map(str, suites))}")
    head = f"# {title}\n\n" if title else ""
    return rows, head + markdown_table(rows)
