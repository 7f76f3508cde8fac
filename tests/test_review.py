"""`rmlib data review`: the stratified sample a person edits (CSV and JSONL), read back and checked (every row
decided, none lost, an invalid value named by file, row and field), the gold set it writes, and human-LLM
agreement (accuracy and Cohen's kappa against sklearn's), overall and per category."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sklearn.metrics import cohen_kappa_score

from rmlib.curation.review import review_import, review_sample, stratified_sample
from rmlib.curation.rules import read_pairs
from rmlib.data.schema import DataError

ROOT = Path(__file__).resolve().parents[1]
CATS = ["math"] * 20 + ["coding"] * 6 + ["chat"] * 2


def annotated_file(path: Path) -> Path:
    """Pairs as `rmlib data annotate` writes them: meta.attributes and meta.curation.annotation (the LLM prefers
    the written chosen for even i, the written rejected for odd i, as with --label keep)."""
    with open(path, "w") as fh:
        for i, cat in enumerate(CATS):
            fh.write(json.dumps({
                "prompt": [{"role": "user", "content": f"question {i} ({cat})"}],
                "chosen": f"chosen answer {i}", "rejected": f"rejected answer {i}", "strength": None, "votes": None,
                "meta": {"id": i, "attributes": {"task_category": cat, "objectivity": "objective"},
                         "curation": {"annotation": {"llm_prefers": "chosen" if i % 2 == 0 else "rejected",
                                                     "strength": 1 + i % 3, "agrees": i % 2 == 0}}}}) + "\n")
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_stratified_sample_is_proportional_with_every_stratum_and_seeded():
    strata = {"a": list(range(0, 80)), "b": list(range(80, 98)), "c": [98, 99]}
    got = stratified_sample(strata, 10, seed=3)
    per = Counter("a" if i < 80 else "b" if i < 98 else "c" for i in got)
    assert per == {"a": 8, "b": 1, "c": 1}  # quotas 8, 1.8, 0.2; c gets its guaranteed one from b's share
    assert got == stratified_sample(strata, 10, seed=3) != stratified_sample(strata, 10, seed=4)
    assert len(set(got)) == 10 and stratified_sample(strata, 1000) == list(range(100))


@pytest.fixture
def sample(tmp_path):
    src = annotated_file(tmp_path / "annotated.jsonl")
    rep = review_sample(src, tmp_path / "review", size=12, seed=0).to_dict()
    return tmp_path / "review", rep


def test_sample_files_and_report(sample):
    d, rep = sample
    assert rep["n_in"] == 28 and rep["n_out"] == 12 and rep["removed"] == {"not_sampled": 16}
    rows = read_csv(d / "review.csv")
    assert [json.loads(line) for line in (d / "review.jsonl").read_text().splitlines()] == rows
    assert len(rows) == 12 and all(r["decision"] == "" and r["llm_prefers"] == "" for r in rows)
    strata = {(s["task_category"], s["confidence"]): s for s in rep["strata"]}
    # math and coding in all three confidences, chat (two pairs) in two
    assert len(strata) == 8 and all(s["sampled"] >= 1 for s in strata.values())
    assert sum(s["sampled"] for s in strata.values()) == 12
    assert all(r["response_a"] != r["response_b"] and r["conversation"].startswith("question") for r in rows)


def decide(d: Path, how) -> tuple[list[dict], list[dict]]:
    """A reviewer's decisions: ``how(row, manifest row)`` -> decision; returns (rows, manifest)."""
    rows = read_csv(d / "review.csv")
    manifest = {m["id"]: m for m in (json.loads(x) for x in (d / "sample.jsonl").read_text().splitlines())}
    for r in rows:
        r["decision"] = how(r, manifest[r["id"]])
    return rows, [manifest[r["id"]] for r in rows]


def test_round_trip_gold_set_and_agreement_match_sklearn(sample, tmp_path):
    d, _ = sample
    # the person agrees with the LLM on math, disagrees on every other coding row, discards the first chat row
    def how(r, m):
        if r["task_category"] == "chat" and r["id"] == min(x["id"] for x in rows0 if x["task_category"] == "chat"):
            return "discard"
        flip = r["task_category"] == "coding" and int(r["id"][1:]) % 2 == 0
        return {"A": "B", "B": "A"}[m["reference"]] if flip else m["reference"].lower()  # case is forgiven
    rows0 = read_csv(d / "review.csv")
    rows, manifest = decide(d, how)
    rows[0]["strength"] = "3"
    write_csv(d / "edited.csv", rows)
    rep = review_import(d / "edited.csv", tmp_path / "gold", sample=d).to_dict()
    kept = [(r, m) for r, m in zip(rows, manifest) if r["decision"] != "discard"]
    human = [r["decision"].upper() for r, _ in kept]
    ref = [m["reference"] for _, m in kept]
    assert rep["n_in"] == 12 and rep["n_out"] == 11 and rep["removed"] == {"discarded": 1}
    agr = rep["agreement"]
    assert agr["pairs"] == 11 and agr["accuracy"] == pytest.approx(sum(h == r for h, r in zip(human, ref)) / 11)
    assert agr["kappa"] == pytest.approx(cohen_kappa_score(human, ref), abs=1e-6)
    for cat, block in agr["per_category"].items():
        h = [x for x, (r, _) in zip(human, kept) if r["task_category"] == cat]
        f = [x for x, (r, _) in zip(ref, kept) if r["task_category"] == cat]
        assert block["pairs"] == len(h) and block["accuracy"] == pytest.approx(sum(a == b for a, b in zip(h, f)) / len(h))
        if len(set(h) | set(f)) > 1:
            assert block["kappa"] == pytest.approx(cohen_kappa_score(h, f), abs=1e-6)
    assert agr["per_category"]["math"]["accuracy"] == 1.0 and agr["per_category"]["coding"]["accuracy"] < 1.0
    # gold.jsonl: the decided pairs with chosen = the response the person preferred
    gold = [json.loads(x) for x in (tmp_path / "gold" / "gold.jsonl").read_text().splitlines()]
    by_id = {g["meta"]["curation"]["review"]["id"]: g for g in gold}
    for r, _ in kept:
        g = by_id[r["id"]]
        assert g["chosen"] == (r["response_a"] if r["decision"].upper() == "A" else r["response_b"])
        assert g["meta"]["curation"]["review"]["human_verified"] is True
    assert by_id[rows[0]["id"]]["strength"] == 3.0
    assert len(read_pairs(tmp_path / "gold" / "gold.jsonl", tmp_path / "w")) == 11  # rmlib reads it back
    # the next round's import accumulates the gold set
    rows2, _ = decide(d, lambda r, m: m["reference"])
    with open(d / "edited.jsonl", "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows2)
    rep2 = review_import(d / "edited.jsonl", tmp_path / "gold2", sample=d, previous=tmp_path / "gold" / "gold.jsonl")
    assert rep2.extra["gold"] == {"previous": 11, "new": 12, "total": 23}
    assert rep2.extra["agreement"]["accuracy"] == 1.0 and rep2.extra["agreement"]["kappa"] == 1.0


@pytest.mark.parametrize("edit,row,field,message", [
    (lambda rows: rows[3].update(decision="C"), 5, "decision", "is 'C'; write one of A, B, discard"),
    (lambda rows: rows[6].update(decision=""), 8, "decision", "every row must be decided"),
    (lambda rows: rows[2].update(strength="5"), 4, "strength", "1, 2 or 3"),
    (lambda rows: rows[4].update(response_a=rows[4]["response_a"] + "!"), 6, "response_a", "differs from the text"),
    (lambda rows: rows[5].update(id="r99999"), 7, "id", "not a row of the sample"),
    (lambda rows: rows[7].update(id=rows[1]["id"]), 9, "id", "appears twice"),
    (lambda rows: rows.pop(9), None, "id", "1 rows of the sample are missing"),
])
def test_an_invalid_edit_is_named_by_file_row_and_field(sample, tmp_path, edit, row, field, message):
    d, _ = sample
    rows, _ = decide(d, lambda r, m: "A")
    edit(rows)
    write_csv(d / "edited.csv", rows)
    with pytest.raises(DataError) as e:
        review_import(d / "edited.csv", tmp_path / "gold", sample=d)
    assert (e.value.source, e.value.index, e.value.field) == (str(d / "edited.csv"), row, field)
    assert message in str(e.value)
    assert not (tmp_path / "gold").exists(), "nothing is written from an invalid file"


@pytest.mark.slow  # three CLI subprocesses: ~13 s on 2 shared cores
def test_review_cli_round_trip(tmp_path):
    src = annotated_file(tmp_path / "annotated.jsonl")
    run = [sys.executable, "-m", "rmlib", "data", "review"]
    subprocess.run([*run, "sample", str(src), "--out", str(tmp_path / "s"), "--size", "5", "--show-llm"], check=True,
                   cwd=ROOT, capture_output=True)
    rows = read_csv(tmp_path / "s" / "review.csv")
    assert all(r["llm_prefers"] in ("A", "B") for r in rows)
    for r in rows:
        r["decision"] = r["llm_prefers"]
    write_csv(tmp_path / "s" / "done.csv", rows)
    bad = dict(rows[0], decision="maybe")
    write_csv(tmp_path / "s" / "bad.csv", [bad, *rows[1:]])
    proc = subprocess.run([*run, "import", str(tmp_path / "s" / "bad.csv"), "--out", str(tmp_path / "g")], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "bad.csv: record 2: field 'decision'" in proc.stderr
    subprocess.run([*run, "import", str(tmp_path / "s" / "done.csv"), "--out", str(tmp_path / "g")], check=True,
                   cwd=ROOT, capture_output=True)
    rep = json.loads((tmp_path / "g" / "report.json").read_text())
    assert rep["n_out"] == 5 and rep["agreement"]["accuracy"] == 1.0
