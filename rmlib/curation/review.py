"""The gold-set round trip: a stratified sample for people to decide, read back, checked, and scored.

Skywork-Reward-V2 (Liu et al., arXiv 2507.01352, section 3.2 and appendix D.2) has people verify a small,
diverse sample of LLM-annotated pairs, shown with their preference attributes; the verified pairs form the
gold set, which validates each round's reward model and, in stage 2, trains the gold reward model of the
consistency filter (``rmlib train`` on ``gold.jsonl``, then ``rmlib data filter --model gold=...``).

* :func:`review_sample` draws ``size`` pairs stratified by task category and annotator confidence (the
  LLM's strength: 1 low, 2 medium, 3 high; ``unknown`` without an annotation), proportionally with at least
  one per stratum, and writes them as ``review.csv`` and ``review.jsonl`` (the same rows: edit either) with
  the responses as A and B in a seeded random order and an empty ``decision`` column, plus ``sample.jsonl``,
  the manifest the edited file is checked against. The LLM's verdict is not shown unless asked
  (``show_llm``), so it cannot anchor the reviewer.
* :func:`review_import` reads the edited file back: every row of the sample exactly once (none lost,
  none added, ids unchanged), every row decided (``A``, ``B`` or ``discard``), an optional ``strength`` of
  1-3, and the texts as shown (a row whose response was edited is refused). Any violation is a
  :class:`~rmlib.data.schema.DataError` naming the file, the row and the field. It writes ``gold.jsonl``
  (the decided pairs, chosen = what the person preferred; with ``previous``, the earlier gold set first, so
  the gold set accumulates over rounds) and a report with human-LLM agreement: accuracy and Cohen's κ
  (:func:`rmlib.data.helpsteer2.weighted_kappa` unweighted, sklearn's definition), overall and per task
  category.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rmlib.curation.rules.table import StepReport, check_not_inside, pair_row, read_pairs, step_output
from rmlib.data.canonical import hash64
from rmlib.data.helpsteer2 import weighted_kappa
from rmlib.data.judge import render_conversation
from rmlib.data.schema import DataError, OnInvalid
from rmlib.io import write_jsonl, write_text

__all__ = ["DECISIONS", "agreement", "review_import", "review_sample", "stratified_sample"]

DECISIONS = ("A", "B", "discard")
"""What a reviewer writes in ``decision``: the better response, or ``discard`` when no preference can be
decided (the paper discards such pairs, appendix D.2)."""
COLUMNS = ("id", "task_category", "confidence", "conversation", "response_a", "response_b", "attributes",
           "llm_prefers", "decision", "strength", "note")
_CONFIDENCE = {1: "low", 2: "medium", 3: "high"}


def _stratum(meta: Mapping[str, Any]) -> tuple[str, str]:
    attrs = meta.get("attributes") or {}
    cat = str(attrs.get("task_category") or "unknown").strip().lower() or "unknown"
    ann = (meta.get("curation") or {}).get("annotation") or {}
    return cat, _CONFIDENCE.get(ann.get("strength"), "unknown")


def stratified_sample(strata: Mapping[Any, Sequence[int]], size: int, seed: int = 0) -> list[int]:
    """``size`` members drawn across ``strata`` in proportion to their sizes (largest remainder), at least one
    from each stratum while ``size`` allows; sorted. Deterministic for a seed."""
    total = sum(len(v) for v in strata.values())
    size = min(size, total)
    keys = sorted(strata, key=str)
    take = dict.fromkeys(keys, 0)
    if size >= len(keys):
        take = {k: 1 for k in keys}
    quota = {k: size * len(strata[k]) / total for k in keys} if total else {}
    left = size - sum(take.values())
    # grow toward each stratum's proportional quota, largest shortfall first, never past its size
    while left > 0:
        k = max((k for k in keys if take[k] < len(strata[k])), key=lambda k: (quota[k] - take[k], -keys.index(k)))
        take[k] += 1
        left -= 1
    rng = random.Random(seed)
    out = []
    for k in keys:
        out += rng.sample(list(strata[k]), take[k])
    return sorted(out)


def review_sample(source: str | os.PathLike, out_dir: str | os.PathLike, *, size: int = 200, seed: int = 0,
                  show_llm: bool = False, format: str | None = None, on_invalid: OnInvalid = "error") -> StepReport:
    """Write a stratified sample of ``source`` for people to decide (see the module docstring)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    check_not_inside(source, out_dir)
    report = StepReport("review_sample", str(source), {"size": size, "seed": seed, "show_llm": show_llm,
                                                       "strata": "task_category x confidence"})
    with step_output(out_dir, report) as (stage, work):
        table = read_pairs(source, work, format=format, on_invalid=on_invalid)
        report.source, report.read = table.source, table.report.to_dict()
        report.n_in = len(table)
        strata: dict[tuple[str, str], list[int]] = defaultdict(list)
        for batch in table.ds.iter(batch_size=1000):
            for i, m in zip(batch["index"], batch["meta"]):
                strata[_stratum(json.loads(m) if m else {})].append(int(i))
        picked = stratified_sample(strata, size, seed)
        rng = random.Random(seed + 1)
        manifest, shown = [], []
        for j, i in enumerate(picked):
            row = table.ds[i]
            pair = pair_row(row)
            meta = pair["meta"]
            cat, conf = _stratum(meta)
            a_is_chosen = rng.random() < 0.5
            a, b = (pair["chosen"], pair["rejected"]) if a_is_chosen else (pair["rejected"], pair["chosen"])
            ann = (meta.get("curation") or {}).get("annotation")
            # the reference verdict: the LLM's when the pair was annotated, else the file's own label
            llm_chosen = (ann.get("llm_prefers") == "chosen") if ann else True
            reference = "A" if llm_chosen == a_is_chosen else "B"
            rid = f"r{j + 1:05d}"
            attrs = meta.get("attributes") or {}
            manifest.append({"id": rid, "index": i, "pair": pair, "a_is_chosen": a_is_chosen,
                             "reference": reference, "reference_kind": "llm" if ann else "label",
                             "task_category": cat, "confidence": conf, "hash_a": hash64(a), "hash_b": hash64(b)})
            shown.append({"id": rid, "task_category": cat, "confidence": conf,
                          "conversation": render_conversation(pair["prompt"]), "response_a": a, "response_b": b,
                          "attributes": json.dumps(attrs, ensure_ascii=False) if attrs else "",
                          "llm_prefers": reference if show_llm else "", "decision": "", "strength": "", "note": ""})
        write_jsonl(manifest, stage / "sample.jsonl")
        write_jsonl(shown, stage / "review.jsonl")
        write_text(_csv(shown), stage / "review.csv")
        report.n_out = len(picked)
        report.remove("not_sampled", report.n_in - len(picked))
        counts = Counter((m["task_category"], m["confidence"]) for m in manifest)
        report.extra["strata"] = [{"task_category": c, "confidence": f, "pairs": len(strata[(c, f)]),
                                   "sampled": counts[(c, f)]} for c, f in sorted(strata)]
    return report


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _read_edited(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number as a person sees it, row) of an edited CSV (header = row 1) or JSONL (line numbers)."""
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = sorted({"id", "decision"} - set(reader.fieldnames or ()))
            if missing:
                raise DataError(str(path), 1, missing[0], f"the header lacks the columns {missing}", "missing_field")
            for n, row in enumerate(reader, start=2):
                yield n, row
        return
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise DataError(str(path), n, None, "not a JSON object (a line was cut or merged while "
                                "editing?)", "bad_json") from None
            if not isinstance(row, dict):
                raise DataError(str(path), n, None, "must be a JSON object", "wrong_type")
            yield n, row


def _text(v: Any) -> str:
    return "" if v is None else str(v).strip()


def agreement(human: Sequence[str], reference: Sequence[str], categories: Sequence[str]) -> dict[str, Any]:
    """Accuracy and Cohen's κ of the human decisions (A/B) against the reference, overall and per category."""

    def block(h: Sequence[str], r: Sequence[str]) -> dict[str, Any]:
        n = len(h)
        agree = sum(a == b for a, b in zip(h, r))
        kappa = weighted_kappa(h, r, labels=["A", "B"], weights=None) if n else float("nan")
        return {"pairs": n, "agree": agree, "accuracy": round(agree / n, 6) if n else None,
                "kappa": None if math.isnan(kappa) else round(kappa, 6)}

    per: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for h, r, c in zip(human, reference, categories):
        per[c][0].append(h)
        per[c][1].append(r)
    return {**block(human, reference), "per_category": {c: block(*per[c]) for c in sorted(per)}}


def review_import(edited: str | os.PathLike, out_dir: str | os.PathLike, *, sample: str | os.PathLike | None = None,
                  previous: str | os.PathLike | None = None) -> StepReport:
    """Read an edited ``review.csv``/``review.jsonl`` back against its ``sample`` directory (default: the edited
    file's own directory) and write the gold set (see the module docstring)."""
    edited = Path(edited)
    sample_dir = Path(sample) if sample is not None else edited.parent
    check_not_inside(edited, out_dir)
    manifest = {m["id"]: m for m in (json.loads(line) for line in
                                     (sample_dir / "sample.jsonl").read_text(encoding="utf-8").splitlines())}
    report = StepReport("review_import", str(edited), {"sample": str(sample_dir),
                                                       "previous": None if previous is None else str(previous)})
    src = str(edited)
    seen: dict[str, int] = {}
    decided: dict[str, tuple[str, int | None, str]] = {}
    for n, row in _read_edited(edited):
        rid = _text(row.get("id"))
        if rid not in manifest:
            raise DataError(src, n, "id", f"{rid!r} is not a row of the sample in {sample_dir} (an id was edited, or "
                            "the file belongs to another sample)", "bad_value")
        if rid in seen:
            raise DataError(src, n, "id", f"{rid} appears twice (first at row {seen[rid]})", "bad_value")
        seen[rid] = n
        m = manifest[rid]
        for side in ("a", "b"):
            if f"response_{side}" in row and hash64(str(row[f"response_{side}"])) != m[f"hash_{side}"]:
                raise DataError(src, n, f"response_{side}", "differs from the text shown: a decision must refer to the "
                                "responses as sampled (edit only decision, strength and note)", "bad_value")
        decision = _text(row.get("decision"))
        canon = {d.lower(): d for d in DECISIONS}.get(decision.lower())
        if canon is None:
            what = "is empty: every row must be decided" if not decision else f"is {decision!r}"
            raise DataError(src, n, "decision", f"{what}; write one of {', '.join(DECISIONS)}", "bad_value")
        strength = _text(row.get("strength"))
        if strength and strength not in ("1", "2", "3"):
            raise DataError(src, n, "strength", f"is {strength!r}; leave it empty or write 1, 2 or 3", "bad_value")
        decided[rid] = (canon, int(strength) if strength else None, _text(row.get("note")))
    lost = sorted(set(manifest) - set(seen))
    if lost:
        raise DataError(src, None, "id", f"{len(lost)} rows of the sample are missing (first: {lost[0]}): no row may "
                        "be deleted; mark a pair you cannot decide as discard", "missing_field")
    report.n_in = len(manifest)
    human, ref, cats = [], [], []
    with step_output(out_dir, report) as (stage, _work):
        gold = []
        for rid in sorted(manifest):
            m, (decision, strength, note) = manifest[rid], decided[rid]
            if decision == "discard":
                report.remove("discarded")
                continue
            human.append(decision)
            ref.append(m["reference"])
            cats.append(m["task_category"])
            pair = dict(m["pair"])
            flip = (decision == "A") != m["a_is_chosen"]
            if flip:
                pair["chosen"], pair["rejected"] = pair["rejected"], pair["chosen"]
                pair["votes"] = None if pair.get("votes") is None else [-v for v in pair["votes"]]
            pair["strength"] = float(strength) if strength else (None if flip else pair.get("strength"))
            meta = dict(pair.get("meta") or {})
            meta["curation"] = {**(meta.get("curation") or {}), "review": {
                "id": rid, "human_verified": True, "flipped": flip, "reference": m["reference_kind"],
                "reference_agrees": decision == m["reference"], **({"note": note} if note else {})}}
            pair["meta"] = meta
            gold.append(pair)
        report.n_out = len(gold)
        prev = _previous_gold(previous, _work) if previous is not None else []
        write_jsonl([*prev, *gold], stage / "gold.jsonl")
        kinds = Counter(m["reference_kind"] for m in manifest.values())
        report.extra.update({"agreement": {"reference": "llm" if set(kinds) == {"llm"} else dict(kinds),
                                           **agreement(human, ref, cats)},
                             "decisions": dict(Counter(d for d, _, _ in decided.values())),
                             "gold": {"previous": len(prev), "new": len(gold), "total": len(prev) + len(gold)}})
    return report


def _previous_gold(path: str | os.PathLike, work: Path) -> list[dict[str, Any]]:
    table = read_pairs(path, work, name="previous")
    return [pair_row(row) for row in table.ds]
