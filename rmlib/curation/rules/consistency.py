"""Reward-model consistency filter (Skywork-Reward-V2 stage 2): keep or drop pairs by named rules on scores.

Skywork-Reward-V2 (Liu et al., arXiv 2507.01352) keeps a pair when the gold reward model agrees with its
label and (the LLM judge or the best reward model agrees), drops pairs its best model is already confident
about (confidence σ(r_c − r_r) above a threshold: easy pairs teach little), and recycles discarded pairs by
flipping chosen and rejected. Here the scores come in as arrays (one chosen and one rejected reward per
pair, from ``rmlib score`` files or from :func:`rmlib.curation.score_and_filter`, which scores with
rmlib models), and the decision is a list of **named rules** (:data:`RULES`), each with a few parameters,
written ``name`` or ``name:key=value,key=value``. Every rule must keep a pair for it to stay; a dropped pair
is counted under the first rule that dropped it. There is no expression language and no ``eval``.

"Agrees" is strict: ``r_c > r_r``; a tie counts as disagreement (as in the evaluation suites).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rmlib.curation.rules.table import (
    DATA_FILE,
    StepReport,
    check_not_inside,
    pair_row,
    read_pairs,
    step_output,
    write_rows,
)
from rmlib.data.schema import DataError, OnInvalid

__all__ = ["RULES", "Rule", "Signals", "filter_on_scores", "parse_rule", "read_judge_file", "read_score_file"]

PairScores = tuple[np.ndarray, np.ndarray]


@dataclass
class Signals:
    """What rules see: per-pair chosen/rejected rewards per named model, and the judge's verdicts (or None)."""

    scores: Mapping[str, PairScores]
    judge: np.ndarray | None = None

    def delta(self, model: str) -> np.ndarray:
        if model not in self.scores:
            raise ValueError(f"a rule needs scores of model {model!r}; scores given: {sorted(self.scores) or 'none'}")
        c, r = self.scores[model]
        return np.asarray(c, dtype=float) - np.asarray(r, dtype=float)

    def agrees(self, model: str) -> np.ndarray:
        """r_c > r_r strictly: a tie is a disagreement."""
        return self.delta(model) > 0

    def confidence(self, model: str) -> np.ndarray:
        """σ(r_c − r_r), the Bradley-Terry probability that chosen wins."""
        return 1.0 / (1.0 + np.exp(-self.delta(model)))

    def judge_agrees(self) -> np.ndarray:
        if self.judge is None:
            raise ValueError("a rule needs the judge's verdicts; give a judge file (rows {index, agrees})")
        return np.asarray(self.judge, dtype=bool)


@dataclass(frozen=True)
class Rule:
    """One named keep-rule: ``keep(signals, **params)`` → boolean mask of the pairs it keeps."""

    name: str
    doc: str
    defaults: Mapping[str, Any]
    keep: Callable[..., np.ndarray]


def _threshold(t: Any) -> float:
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1], got {t}")
    return t


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("agrees", "keep when `model` scores chosen strictly above rejected", {"model": "gold"},
         lambda s, model: s.agrees(model)),
    Rule("judge_agrees", "keep when the judge agrees with the label", {}, lambda s: s.judge_agrees()),
    Rule("gold_and_judge_or_best",
         "Skywork-Reward-V2: keep when `gold` agrees and (the judge agrees or `best` agrees)",
         {"gold": "gold", "best": "best"},
         lambda s, gold, best: s.agrees(gold) & (s.judge_agrees() | s.agrees(best))),
    Rule("max_confidence", "drop pairs whose σ(r_c − r_r) under `model` is above `threshold` (the easy ones)",
         {"model": "best", "threshold": 0.5},
         lambda s, model, threshold: s.confidence(model) <= _threshold(threshold)),
    Rule("min_confidence", "drop pairs whose σ(r_c − r_r) under `model` is below `threshold` (likely mislabelled)",
         {"model": "gold", "threshold": 0.5},
         lambda s, model, threshold: s.confidence(model) >= _threshold(threshold)),
)}
"""The rule names :func:`parse_rule` accepts, with their parameters and defaults."""


def _value(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def parse_rule(spec: str | tuple[str, Mapping[str, Any]]) -> tuple[Rule, dict[str, Any]]:
    """``"max_confidence:model=best,threshold=0.9"`` (or ``(name, params)``) → (rule, full parameters).

    An unknown rule or parameter is a ValueError naming the choices: a typo never falls back to a default.
    """
    if isinstance(spec, str):
        name, _, rest = spec.partition(":")
        given = {}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            k, eq, v = part.partition("=")
            if not eq:
                raise ValueError(f"rule {spec!r}: parameter {part!r} must be key=value")
            given[k.strip()] = _value(v.strip())
    else:
        name, given = spec[0], dict(spec[1])
    name = name.strip()
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; rules: {', '.join(RULES)}")
    rule = RULES[name]
    bad = sorted(set(given) - set(rule.defaults))
    if bad:
        raise ValueError(f"rule {name!r} does not take {bad}; it takes {sorted(rule.defaults) or 'no parameters'}")
    return rule, {**rule.defaults, **given}


def _rule_label(rule: Rule, params: Mapping[str, Any]) -> str:
    return rule.name + ("" if not params else ":" + ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                                             for k, v in params.items()))


# ---------------------------------------------------------------------------------------------- score files


def _number(value: Any, path: str, i: int, name: str) -> float:
    if isinstance(value, list) and len(value) == 1:  # `rmlib score` of a one-head model may write [x]
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(path, i, name, f"expected one finite number (a one-head reward), got {value!r}", "bad_value")
    return float(value)


def _indexed(path: str | os.PathLike, n: int, fields: Mapping[str, Callable[[Any, str, int, str], Any]]
             ) -> dict[str, np.ndarray]:
    """``{field: [value of pair k]}`` from a JSONL of ``{index, field...}`` rows; each value goes through its
    check (which names the file, the row and the field) as it is read."""
    from rmlib.data.formats import read_records

    # numpy columns filled in place (8 bytes per pair), not Python lists of boxed values
    out: dict[str, np.ndarray] = {f: np.zeros(n, dtype=bool if fields[f] is _boolean else float) for f in fields}
    seen = np.zeros(n, dtype=bool)
    for i, rec in read_records(path):
        if isinstance(rec, DataError):
            raise rec
        if not isinstance(rec, Mapping) or not isinstance(rec.get("index"), int) or isinstance(rec["index"], bool):
            raise DataError(str(path), i, "index", "each row needs an integer 'index' (the pair's 0-based position "
                            "among the valid pairs of the data file)", "missing_field")
        k = rec["index"]
        if not 0 <= k < n:
            raise DataError(str(path), i, "index", f"{k} is outside the data's {n} pairs; the score file belongs "
                            "to another data file", "bad_value")
        if seen[k]:
            raise DataError(str(path), i, "index", f"pair {k} appears twice", "bad_value")
        seen[k] = True
        for f in fields:
            if f not in rec:
                raise DataError(str(path), i, f, "missing; present keys: " + ", ".join(sorted(rec)), "missing_field")
            out[f][k] = fields[f](rec[f], str(path), i, f)
    if not seen.all():
        raise DataError(str(path), None, "index", f"has no row for {int((~seen).sum())} of the data's {n} pairs "
                        f"(first missing: {int(np.flatnonzero(~seen)[0])})", "missing_field")
    return out


def read_score_file(path: str | os.PathLike, n: int) -> PairScores:
    """Rewards of ``n`` pairs from a JSONL of ``{"index", "chosen", "rejected"}`` rows (what ``rmlib score``
    writes); every pair exactly once, every value one finite number, or a DataError naming the row."""
    cols = _indexed(path, n, {"chosen": _number, "rejected": _number})
    return cols["chosen"], cols["rejected"]


def read_judge_file(path: str | os.PathLike, n: int) -> np.ndarray:
    """The judge's verdicts from a JSONL of ``{"index", "agrees": true|false}`` rows (every pair once)."""
    return _indexed(path, n, {"agrees": _boolean})["agrees"]


def _boolean(value: Any, path: str, i: int, name: str) -> bool:
    if not isinstance(value, bool):
        raise DataError(path, i, name, f"must be true or false, got {value!r}", "wrong_type")
    return value


# ---------------------------------------------------------------------------------------------- the step


def filter_on_scores(source: str | os.PathLike, out_dir: str | os.PathLike,
                     scores: Mapping[str, str | os.PathLike | PairScores], *,
                     rules: Sequence[str | tuple[str, Mapping[str, Any]]] = ("gold_and_judge_or_best",),
                     judge: str | os.PathLike | np.ndarray | None = None, review_model: str | None = None,
                     review_band: float = 0.0, recycle: bool = False, format: str | None = None,
                     on_invalid: OnInvalid = "error", max_examples: int = 3,
                     attach: Mapping[str, str | os.PathLike] | None = None) -> StepReport:
    """The consistency filter on rewards already computed: keep the pairs every rule keeps; write
    ``data.jsonl``, ``report.json`` and optionally:

    * ``review.jsonl``: kept pairs with ``|σ(r_c − r_r) − 0.5| <= review_band`` under ``review_model``,
      routed to a person instead of the output (reason ``review``);
    * ``recycled.jsonl``: pairs a rule dropped on which **every** given model prefers rejected (and the
      judge, if given, disagrees), flipped (chosen ↔ rejected, votes negated) and labelled
      ``meta.curation.recycled = "flipped"``; a separate output, never mixed into ``data.jsonl``.

    ``scores`` maps a model name used by the rules (``gold``, ``best``, ...) to a score file or to a
    (chosen, rejected) pair of arrays in the order of the valid pairs of ``source``: nothing is scored here
    (:func:`rmlib.curation.score_and_filter` scores with models first, then calls this). ``attach`` copies
    further files into the output directory under the given names (e.g. the score files a caller computed).
    """
    check_not_inside(source, out_dir)
    parsed = [parse_rule(r) for r in rules]
    if not parsed:
        raise ValueError("give at least one rule")
    if review_band and review_model is None:
        raise ValueError("review_band needs review_model (the model whose confidence decides)")
    labels = [_rule_label(r, p) for r, p in parsed]
    report = StepReport("consistency_filter", str(source),
                        {"rules": labels, "models": {k: str(v) if isinstance(v, (str, os.PathLike)) else "<arrays>"
                                                     for k, v in scores.items()},
                         "judge": None if judge is None else str(judge) if not isinstance(judge, np.ndarray)
                         else "<array>", "review_model": review_model, "review_band": review_band,
                         "recycle": recycle}, max_examples=max_examples)
    with step_output(out_dir, report) as (stage, work):
        table = read_pairs(source, work, format=format, on_invalid=on_invalid, max_examples=max_examples)
        report.source, report.read = table.source, table.report.to_dict()
        n = report.n_in = len(table)
        arrays = {k: (read_score_file(v, n) if isinstance(v, (str, os.PathLike)) else _check_arrays(k, v, n))
                  for k, v in scores.items()}
        verdicts = (read_judge_file(judge, n) if isinstance(judge, (str, os.PathLike))
                    else None if judge is None else _check_judge(judge, n))
        sig = Signals(arrays, verdicts)
        reason = np.full(n, -1, dtype=np.int32)  # index into `labels` of the first rule that drops the pair
        for j, (rule, params) in enumerate(parsed):
            keep = np.asarray(rule.keep(sig, **params), dtype=bool)
            reason[(reason < 0) & ~keep] = j
        review = np.zeros(n, dtype=bool)
        if review_band:
            review = (reason < 0) & (np.abs(sig.confidence(review_model) - 0.5) <= review_band)
        detail = _detail(sig)
        for j, label in enumerate(labels):
            rows = np.flatnonzero(reason == j)
            report.remove(label, rows.size)
            for i in rows[:max_examples]:
                report.example(label, table.ds[int(i)], **detail(int(i)))
        if review.any():
            report.remove("review", review.sum())
            for i in np.flatnonzero(review)[:max_examples]:
                report.example("review", table.ds[int(i)], **detail(int(i)))
            write_rows(table, stage / "review.jsonl", review,
                       make=lambda row: pair_row(row, curation={"review": True, **detail(row["index"])}))
        report.n_out = write_rows(table, stage / DATA_FILE, (reason < 0) & ~review)
        if recycle:
            flip = (reason >= 0) & np.all([sig.delta(k) < 0 for k in arrays], axis=0) if arrays else reason >= 0
            if verdicts is not None:
                flip &= ~verdicts
            report.extra["recycled"] = int(flip.sum())
            write_rows(table, stage / "recycled.jsonl", flip,
                       make=lambda row: pair_row(row, flip=True, curation={
                           "recycled": "flipped", "dropped_by": labels[reason[row["index"]]], **detail(row["index"])}))
        report.extra["kept_by_all_rules"] = int((reason < 0).sum())
        for name, file in (attach or {}).items():
            shutil.copyfile(file, stage / name)
    return report


def _detail(sig: Signals) -> Callable[[int], dict[str, Any]]:
    conf = {k: sig.confidence(k) for k in sig.scores}

    def detail(i: int) -> dict[str, Any]:
        d: dict[str, Any] = {f"p_{k}": round(float(v[i]), 6) for k, v in conf.items()}
        if sig.judge is not None:
            d["judge_agrees"] = bool(sig.judge[i])
        return d

    return detail


def _check_arrays(name: str, value: Any, n: int) -> PairScores:
    c, r = (np.asarray(x, dtype=float).reshape(-1) for x in value)
    if c.size != n or r.size != n:
        raise ValueError(f"scores of {name!r} hold {c.size}/{r.size} values for {n} pairs")
    return c, r


def _check_judge(value: Any, n: int) -> np.ndarray:
    j = np.asarray(value, dtype=bool).reshape(-1)
    if j.size != n:
        raise ValueError(f"judge verdicts hold {j.size} values for {n} pairs")
    return j
