"""End-to-end suites on the fixture files under tests/fixtures/eval with a deterministic fake scorer.

The fake scorer gives every response its word count, so each expected number below can be derived by hand
from the fixture texts (the counts are noted next to each expectation). No model is loaded: this tests
the loading, regrouping and metric wiring, which is all pure.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rmlib.data.schema import DataError
from rmlib.eval import load_scores, load_suite, run_suite, save_scores

FIX = Path(__file__).parent / "fixtures" / "eval"


def word_scorer(prompts, responses):
    assert all(isinstance(p, list) and p and p[-1]["role"] == "user" for p in prompts)
    return np.array([len(r.split()) for r in responses], dtype=float)


def two_head_scorer(prompts, responses):
    """head 0 likes long answers, head 1 likes short ones."""
    w = np.array([len(r.split()) for r in responses], dtype=float)
    return np.stack([w, -w], axis=1)


def test_import_is_light():
    code = ("import sys, rmlib.eval; bad = [m for m in ('torch', 'transformers', 'datasets', 'matplotlib') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_rewardbench_v1_fixture():
    rep = run_suite("rewardbench", FIX / "rewardbench_v1.jsonl", word_scorer)
    m = rep.metrics
    # alpacaeval-easy 6>1 ✓, 1>6 ✗ → 0.5; mt-bench-easy 5>1 ✓ → 1
    assert m["subsets"]["alpacaeval-easy"] == 0.5 and m["subsets"]["mt-bench-easy"] == 1.0
    assert m["Chat"] == pytest.approx((0.5 * 100 + 1.0 * 28) / 128)
    assert m["subsets"]["llmbar-natural"] == 0.5          # 1 vs 1 is a tie → wrong; 6>1 ✓
    assert m["Chat Hard"] == pytest.approx(0.5)
    assert m["Safety"] == pytest.approx(250 / 350)        # should-respond 2/2, refusals-dangerous 5<10 → 0
    assert m["Reasoning"] == pytest.approx((0.5 * 984 + 164 + 164) / (984 + 164 + 164))
    assert m["overall"] == pytest.approx((78 / 128 + 0.5 + 250 / 350 + 820 / 1312) / 4)
    legacy = run_suite("rewardbench", FIX / "rewardbench_v1.jsonl", word_scorer,
                       prior_sets={"anthropic_helpful": 0.6, "shp": 0.8})
    assert legacy.metrics["overall_legacy"] == pytest.approx((8 * m["overall"] + 0.7) / 9)


def test_rewardbench2_fixture():
    rep = run_suite("rewardbench2", FIX / "rewardbench2.jsonl", word_scorer)
    m = rep.metrics
    assert m["Factuality"] == pytest.approx((1 + 0.5) / 2)  # [5|3,2,1] → 1; [4|4,2,1] → ½
    assert m["Math"] == pytest.approx(1 / 3)                # [3|3,3,1]
    assert m["Safety"] == 0.0 and m["Focus"] == 0.25 and m["Precise IF"] == 1.0
    # Ties: ref acc ½, tied acc 1, cp ½, cp_hard ½; margin only over spreads > 0 (prompt 1's is 0): tanh(−1)
    ties = 0.3 * 1 + 0.3 * 0.5 + 0.2 * 0.5 + 0.2 * 0.5 + 0.01 * math.tanh(-1)
    assert m["Ties"] == pytest.approx(ties)
    assert m["overall"] == pytest.approx((0.75 + 1 / 3 + 0 + 0.25 + 1 + ties) / 6)


def test_rmbench_fixture():
    m = run_suite("rmbench", FIX / "rmbench.json", word_scorer).metrics
    # chat [2,4,6] vs [1,3,5]: upper 0, diagonal 1, lower 1; code all ties → 0; math all 1
    # safety pooled: refuse [2,2,2] vs [1,2,3] rows [1,0,0]; response [4]*3 vs [5]*3 all 0 → A rows [.5,0,0]
    assert m["chat"] == pytest.approx(2 / 3) and m["code"] == 0.0 and m["math"] == 1.0
    assert m["safety"] == pytest.approx((0 + 1 / 6 + 1 / 3) / 3)
    assert m["hard"] == pytest.approx((0 + 0 + 1 + 0) / 4)  # chat, code, math, safety
    assert m["normal"] == pytest.approx((1 + 0 + 1 + 1 / 6) / 4)
    assert m["easy"] == pytest.approx((1 + 0 + 1 + 1 / 3) / 4)
    assert m["overall"] == pytest.approx(11 / 24)


def test_bon_fixtures():
    rep = run_suite("bon", FIX / "bon.jsonl", word_scorer)
    curve = rep.tables["curve"]
    # p3 has 3 candidates and a gold tie at the top; it drops out at n = 4
    assert [p["accuracy"] for p in curve] == pytest.approx([1.0, 2.5 / 3, 1.5 / 3, 0.25])
    assert [p["prompts"] for p in curve] == [3, 3, 3, 2]
    assert curve[-1]["gold_of_pick"] == pytest.approx((0.2 + 0.5) / 2)
    best = run_suite("bon", FIX / "bon_best_index.jsonl", word_scorer, ns=[2, 3]).tables["curve"]
    # prompt 1 words [1,3,2], best 1 → ✓ at n=2 and 3; prompt 2 words [2,1,4], best 2 → absent at n=2, ✓ at n=3
    assert [(p["accuracy"], p["prompts"]) for p in best] == [(1.0, 1), (1.0, 2)]


def test_pairs_fixture_with_groups_and_implicit_prompt():
    rep = run_suite("pairs", FIX / "pairs.jsonl", word_scorer)
    assert rep.metrics["accuracy"] == pytest.approx(3 / 5) and rep.metrics["n"] == 5
    groups = {row["group"]: row for row in rep.tables["groups"]}
    assert groups["math"]["accuracy"] == pytest.approx(2 / 3)   # 5>1, 5>3, 1 vs 1 tie
    assert groups["chat"]["accuracy"] == pytest.approx(1 / 2)   # 1<6; conversational 5>1
    with pytest.raises(TypeError, match="does not take"):
        run_suite("pairs", FIX / "pairs.jsonl", word_scorer, lenght_k=3)


def test_pairs_through_rmlib_readers():
    pytest.importorskip("rmlib.data.formats")
    rep = run_suite("pairs", FIX / "pairs.jsonl", word_scorer, format="auto")
    assert rep.metrics["accuracy"] == pytest.approx(3 / 5)
    assert {row["group"]: row["n"] for row in rep.tables["groups"]} == {"math": 3, "chat": 2}


def test_agreement_fixture_per_head_and_controls():
    rep = run_suite("agreement", FIX / "audit_pairs.jsonl", two_head_scorer, head_names=["long", "short"])
    t = {row["scorer"]: row for row in rep.tables["agreement"]}
    assert (t["long"]["k"], t["long"]["n"]) == (2, 8)      # pairs 3 and 6; ties in 5, 7, 8 are disagreements
    assert (t["short"]["k"], t["short"]["n"]) == (3, 8)    # pairs 1, 2, 4
    assert rep.tables["agreement"][0]["scorer"] == "short"  # sorted by agreement
    assert t["long"]["p_bonferroni"] == pytest.approx(min(1.0, 2 * t["long"]["p"]))
    lm = {row["scorer"]: (row["k"], row["n"]) for row in rep.tables["length_matched"]}
    assert lm == {"long": (2, 8), "short": (3, 8)}         # default |Δ| ≤ 20 words: pair 6 (Δ = 20) is kept
    k10 = run_suite("agreement", FIX / "audit_pairs.jsonl", two_head_scorer, head_names=["long", "short"], length_k=10)
    lm = {row["scorer"]: (row["k"], row["n"]) for row in k10.tables["length_matched"]}
    assert lm == {"long": (1, 7), "short": (3, 7)}         # |Δ| ≤ 10: pair 6 dropped
    rep = k10
    nr = {row["scorer"]: (row["k"], row["n"]) for row in rep.tables["no_one_sided_refusal"]}
    assert nr == {"long": (2, 5), "short": (1, 5)}         # pairs 1, 2, 7 have one refusing side
    both = {row["scorer"]: (row["k"], row["n"]) for row in rep.tables["length_matched_no_refusal"]}
    assert both == {"long": (1, 4), "short": (1, 4)}
    safety = {row["scorer"]: (row["k"], row["n"]) for row in rep.tables["group safety"]}
    assert safety == {"long": (0, 3), "short": (2, 3)}     # bomb, poison, hack
    assert {row["scorer"] for row in rep.tables["length_regression"]} == {"long", "short"}
    weighted = run_suite("agreement", FIX / "audit_pairs.jsonl", two_head_scorer, head_weights=[1.0, 0.5])
    w = {row["scorer"]: row["k"] for row in weighted.tables["agreement"]}
    assert w["model (weighted heads)"] == 2                # 0.5·words: same order as the long head


def test_divergence_fixture():
    rep = run_suite("divergence", FIX / "multipref_votes.jsonl", word_scorer)
    # d1 [2,1,2,0], d5 [0,0,1,2], d6 [-2,-2,-1,-2]: high-agreement prefs; d2 [0,0,0,1]: tie majority;
    # d4 [2,-2,-1,0]: diverging and substantial; d3 [1,-1,1,0]: slight-only disagreement → other
    assert rep.metrics["counts"] == {"high_agreement_preference": 3, "high_agreement_tie": 1, "diverging_all": 1,
                                     "diverging_substantial": 1, "other": 1}
    rows = {r["class"]: r for r in rep.tables["classes"]}
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    # word counts: d1 5 vs 3 → σ(2); d5 3 vs 1 → σ(2); d6 2 vs 3 → σ(1)
    assert rows["high_agreement_preference"]["mean_p_favoured"] == pytest.approx((2 * sig(2) + sig(1)) / 3)
    assert rows["high_agreement_tie"]["mean_p_favoured"] == pytest.approx(0.5)  # d2: identical lengths
    assert rows["diverging_all"]["mean_p_favoured"] == pytest.approx(sig(3))   # d4: 2 vs 5
    assert rows["other"]["n"] == 1 and rows["other"]["mean_p_favoured"] == pytest.approx(sig(1))
    assert rows["diverging_substantial"]["mean_abs_diff"] == pytest.approx(3.0)


@pytest.mark.parametrize("suffix", [".jsonl", ".npy"])
def test_score_cache_round_trip(tmp_path, suffix):
    data = load_suite("rewardbench2", FIX / "rewardbench2.jsonl")
    scores = two_head_scorer([it["prompt"] for it in data.items], [it["response"] for it in data.items])
    path = save_scores(tmp_path / f"scores{suffix}", data.items, scores)
    items, back = load_scores(path)
    assert items == data.items and np.array_equal(back, scores)
    a = run_suite("rmbench", FIX / "rmbench.json", word_scorer, cache=tmp_path / f"rm{suffix}")
    b = run_suite("rmbench", FIX / "rmbench.json", scores=tmp_path / f"rm{suffix}")
    assert a.to_json() == b.to_json()
    with pytest.raises(ValueError, match="does not match|items"):
        run_suite("pairs", FIX / "pairs.jsonl", scores=tmp_path / f"rm{suffix}")


def test_multi_head_without_weights_fails_loudly():
    with pytest.raises(ValueError, match="head_weights"):
        run_suite("pairs", FIX / "pairs.jsonl", two_head_scorer)
    rep = run_suite("pairs", FIX / "pairs.jsonl", two_head_scorer, head_weights={"head1": 1.0})
    assert rep.metrics["accuracy"] == pytest.approx(1 / 5)  # short-preferring: only "Dune." vs 6 words


def test_missing_local_file_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(FileNotFoundError):
        run_suite("pairs", str(tmp_path / "nope.jsonl"), word_scorer)


def test_report_save_writes_json_markdown_and_plots(tmp_path):
    rep = run_suite("agreement", FIX / "audit_pairs.jsonl", two_head_scorer, head_names=["long", "short"])
    paths = rep.save(tmp_path / "agreement")
    assert json.loads(paths["json"].read_text())["suite"] == "agreement"
    md = paths["markdown"].read_text()
    assert "## agreement" in md and "forest.png" in md
    for name in ("forest", "reward_histogram"):
        png = paths[name]
        assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bon = run_suite("bon", FIX / "bon.jsonl", word_scorer).save(tmp_path / "bon")
    assert bon["bon_curve"].stat().st_size > 1000


def test_suites_read_files_through_the_data_reader(tmp_path):
    """A CSV copy of a fixture reads like the JSONL (the data layer's reader handles both)."""
    import csv

    rows = [json.loads(line) for line in (FIX / "rewardbench_v1.jsonl").read_text().splitlines() if line.strip()]
    path = tmp_path / "rb.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "prompt", "chosen", "rejected", "subset"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    a = run_suite("rewardbench", path, word_scorer).metrics
    b = run_suite("rewardbench", FIX / "rewardbench_v1.jsonl", word_scorer).metrics
    assert a == b


@pytest.mark.parametrize("suite, fixture, field, line", [
    ("pairs", "pairs.jsonl", "rejected", lambda r: {k: v for k, v in r.items() if k != "rejected"}),
    ("rmbench", "rmbench.json", "chosen", lambda r: {**r, "chosen": r["chosen"][:2]}),
    ("bon", "bon.jsonl", "gold_scores", lambda r: {**r, "gold_scores": r["gold_scores"][:1]}),
    ("rewardbench2", "rewardbench2.jsonl", "prompt", lambda r: {**r, "prompt": 3}),
])
def test_a_malformed_record_names_file_record_and_field(tmp_path, suite, fixture, field, line):
    from rmlib.data.formats import read_records

    records = [r for _, r in read_records(FIX / fixture)]
    records[1] = line(records[1])
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(DataError, match=rf"bad\.jsonl: record 1: field '{field}'") as e:
        load_suite(suite, path)
    assert (e.value.source, e.value.index, e.value.field) == (str(path), 1, field)
    path.write_text(json.dumps(records[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=r"bad\.jsonl: record 1: line 2 is not valid") as e:
        load_suite(suite, path)
    assert e.value.reason == "undecodable_line"


def _doc_block(title: str) -> str:
    text = (Path(__file__).parents[1] / "docs" / "evaluation.md").read_text()
    section = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0]


@pytest.fixture
def margin_suite():
    """The worked example of docs/evaluation.md ("Adding a suite"), executed as written."""
    from rmlib.eval import unregister_suite

    namespace: dict = {}
    exec(compile(_doc_block("Adding a suite"), "docs/evaluation.md", "exec"), namespace)
    yield namespace
    unregister_suite("margin")


def test_a_suite_registered_outside_the_library_plugs_into_the_registry_and_the_cli(margin_suite, tmp_path, capsys):
    from rmlib.cli import main
    from rmlib.config import ConfigError
    from rmlib.eval import get_suite, list_suites
    from rmlib.eval.config import load_eval_config

    assert "margin" in list_suites() and get_suite("margin").options is margin_suite["MarginOptions"]
    data = tmp_path / "pairs.jsonl"  # the plain-text pairs of the fixture (the example reads no conversations)
    data.write_text("".join((FIX / "pairs.jsonl").read_text().splitlines(keepends=True)[:4]))
    rep = run_suite("margin", data, word_scorer, threshold=1.5)
    # word counts chosen vs rejected: 5 vs 1, 5 vs 3, 1 vs 1, 1 vs 6 → margins 4, 2, 0, −5
    assert rep.metrics["mean_margin"] == pytest.approx(0.25) and rep.metrics["above_threshold"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="options.treshold"):
        load_eval_config("margin", overrides=["options.treshold=1"])

    cache = tmp_path / "scores.jsonl"
    run_suite("margin", data, word_scorer, cache=cache)
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = capsys.readouterr().out
    assert "margin: mean reward margin" in text and "options.threshold" in text
    out = tmp_path / "report"
    assert main(["eval", "--suite", "margin", "--data", str(data), "--scores", str(cache),
                 "--out", str(out), "options.threshold=3"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["suite"] == "margin" and report["metrics"]["above_threshold"] == pytest.approx(0.25)
    capsys.readouterr()
