"""The bundled sample datasets: reproducible, valid, split cleanly, and free of a length shortcut."""

import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from rmlib.data.formats import HELPSTEER2_ATTRIBUTES as ATTRIBUTES
from rmlib.data.samples import SAMPLES, sample_path
from rmlib.data.schema import make_judge, make_pair, make_rated

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def load_tool(name):
    """Import a generator from tools/ by path (tools/ is a folder of scripts, not an installed package)."""
    spec = importlib.util.spec_from_file_location(f"rmlib_tools_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def load(name):
    with open(sample_path(name), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def prompts(rows):
    return {json.dumps(r["prompt"], sort_keys=True) for r in rows}


def test_generator_reproduces_committed_files(tmp_path, capsys):
    make_samples = load_tool("make_samples")
    assert make_samples.SAMPLES_DIR == sample_path(SAMPLES[0]).parent  # its default output is the bundled folder
    assert make_samples.ATTRIBUTES == ATTRIBUTES
    make_samples.main(["--out", str(tmp_path)])
    assert "preference_train.jsonl: 1500 records" in capsys.readouterr().out
    for name in SAMPLES:
        assert (tmp_path / name).read_bytes() == sample_path(name).read_bytes(), f"{name} is stale; regenerate it"


def test_binary_fixture_generator_reproduces_committed_parquet(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    fixtures = load_tool("make_binary_fixtures")
    committed = fixtures.FORMATS_DIR / "ultrafeedback.parquet"
    assert committed.is_file()
    fixtures.write_ultrafeedback(tmp_path / "ultrafeedback.parquet")
    # compare the tables, not the bytes: the file's metadata names the pyarrow version that wrote it
    assert pq.read_table(tmp_path / "ultrafeedback.parquet").equals(pq.read_table(committed))


def test_generators_are_not_installed():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("rmlib.data.samples.make_samples")


def test_sample_path_rejects_unknown_names():
    with pytest.raises(ValueError, match="bundled samples"):
        sample_path("preference_dev.jsonl")


@pytest.mark.parametrize("name", SAMPLES)
def test_every_line_validates(name):
    rows = load(name)
    assert rows
    for i, r in enumerate(rows):
        assert r["meta"]["task"] and r["meta"]["family"] and r["meta"]["split"] in ("train", "test")
        if name.startswith("preference"):
            make_pair(name, i, r["prompt"], r["chosen"], r["rejected"], strength=r["strength"], votes=r["votes"],
                      meta=r["meta"])
        elif name.startswith("ratings"):
            assert set(r["attributes"]) == set(ATTRIBUTES)
            make_rated(name, i, r["prompt"], r["response"], r["attributes"], meta=r["meta"], score_range=(0, 4))
        else:
            make_judge(name, i, r["prompt"], r["response_1"], r["response_2"], r["justification"], r["better"],
                       strength=r["strength"], meta=r["meta"])


def test_sizes_and_lengths():
    sizes = {name: len(load(name)) for name in SAMPLES}
    assert sizes == {"preference_train.jsonl": 1500, "preference_test.jsonl": 300, "ratings_train.jsonl": 1200,
                     "ratings_test.jsonl": 300, "judge.jsonl": 300}
    for r in load("preference_train.jsonl") + load("preference_test.jsonl"):
        for response in (r["chosen"], r["rejected"]):
            # ~1.3 MiniLM tokens per word: every prompt+response stays well under 128 tokens
            assert len((r["prompt"][0]["content"] + " " + response).split()) <= 70


@pytest.mark.parametrize("kind", ["preference", "ratings"])
def test_train_and_test_prompts_are_disjoint(kind):
    train, test = load(f"{kind}_train.jsonl"), load(f"{kind}_test.jsonl")
    assert {r["meta"]["split"] for r in train} == {"train"} and {r["meta"]["split"] for r in test} == {"test"}
    assert not prompts(train) & prompts(test)
    assert not prompts(load("judge.jsonl")) & prompts(load("preference_test.jsonl"))


@pytest.mark.parametrize("name", ["preference_train.jsonl", "preference_test.jsonl", "judge.jsonl"])
def test_strengths_cover_1_to_3(name):
    counts = Counter(r["strength"] for r in load(name))
    assert set(counts) == {1, 2, 3}
    assert all(isinstance(s, int) for s in counts)


@pytest.mark.parametrize("name", ["preference_train.jsonl", "preference_test.jsonl"])
def test_chosen_is_not_systematically_longer(name):
    rows = load(name)
    longer = sum(len(r["chosen"]) > len(r["rejected"]) for r in rows) / len(rows)
    assert 0.4 <= longer <= 0.6


def test_families_mixed_and_votes_oriented():
    rows = load("preference_train.jsonl")
    families = Counter(r["meta"]["family"] for r in rows)
    assert set(families) == {"instruction", "relevance", "correctness"}
    assert 0.2 <= families["correctness"] / len(rows) <= 0.3
    voted = [r["votes"] for r in rows if r["votes"] is not None]
    assert 0.2 * len(rows) < len(voted) < 0.4 * len(rows)
    assert all(sum(v) > 0 and all(-3 <= x <= 3 for x in v) for v in voted)


def test_ratings_have_a_few_missing_values():
    rows = load("ratings_train.jsonl") + load("ratings_test.jsonl")
    values = [v for r in rows for v in r["attributes"].values()]
    missing = sum(v is None for v in values) / len(values)
    assert 0.01 < missing < 0.05
    assert all(any(v is not None for v in r["attributes"].values()) for r in rows)
    by_kind = Counter(r["meta"]["kind"] == "compliant" for r in rows)
    assert by_kind[True] == by_kind[False]


VERDICT = re.compile(r"@Response ([12]) is (?:slightly |much )?better than @Response ([12])\.$")


def test_judge_justifications_end_with_the_verdict():
    rows = load("judge.jsonl")
    assert Counter(r["better"] for r in rows).keys() == {1, 2}
    for r in rows:
        m = VERDICT.search(r["justification"])
        assert m, r["justification"]
        assert (int(m.group(1)), int(m.group(2))) == (r["better"], 3 - r["better"])
        assert r["justification"].index("@Response") < m.start()  # elaboration comes first
