"""Readers for every external format, on the shipped sample files and on hand-made bad files."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from rmlib.data import formats
from rmlib.data.formats import FORMATS, detect_format, load, read_records, write_jsonl
from rmlib.data.schema import DataError, PreferencePair

SAMPLES = Path(formats.__file__).parents[1] / "samples" / "formats"


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def write_lines(path: Path, rows: list[Any]) -> Path:
    """JSONL from dicts; a str row is written verbatim (to make undecodable lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Detection on every sample


SAMPLE_FORMATS = {
    "trl_standard_explicit.jsonl": "trl", "trl_standard_explicit.csv": "trl", "trl_standard_implicit.jsonl": "trl",
    "trl_conversational_explicit.json": "trl", "trl_conversational_implicit.jsonl": "trl",
    "hh_rlhf.jsonl": "hh_rlhf", "ultrafeedback.parquet": "ultrafeedback", "skywork.jsonl": "skywork",
    "helpsteer2.jsonl": "helpsteer2", "helpsteer2_preference.jsonl": "helpsteer2_preference",
    "helpsteer2_disagreements.jsonl": "helpsteer2_disagreements", "multipref.jsonl": "multipref",
    "nemo_regression.jsonl": "nemo_regression", "nemo_bt.jsonl": "nemo_bt", "rmlib_judge.jsonl": "rmlib_judge",
}


def test_every_sample_file_is_covered():
    shipped = {p.name for p in SAMPLES.iterdir() if p.suffix != ".py"}
    assert shipped == set(SAMPLE_FORMATS)


@pytest.mark.parametrize("name,expected", sorted(SAMPLE_FORMATS.items()))
def test_detect_sample(name, expected):
    records = [r for _, r in read_records(SAMPLES / name)]
    assert detect_format(records, name) == expected
    loaded = load(SAMPLES / name)
    assert loaded.format == expected and loaded.kind == FORMATS[expected].kind
    assert loaded.report.n_skipped == 0 and loaded.report.kept == len(loaded.examples) > 0


def test_detect_ambiguous_names_candidates(tmp_path):
    both = {"chosen": [user("q"), assistant("a")], "rejected": [user("q"), assistant("b")], "source": "x",
            "prompt_id": "1", "score_chosen": 5.0, "score_rejected": 1.0}
    with pytest.raises(ValueError, match=r"ambiguous.*ultrafeedback.*skywork|ambiguous.*skywork.*ultrafeedback"):
        detect_format([both], "mem")
    path = write_lines(tmp_path / "both.jsonl", [both])
    with pytest.raises(ValueError, match="pass format="):
        load(path)
    assert load(path, format="skywork").examples[0].meta == {"source": "x"}


def test_detect_unknown_lists_keys(tmp_path):
    path = write_lines(tmp_path / "odd.jsonl", [{"question": "q", "score": 3}])
    with pytest.raises(ValueError, match=r"keys seen .*question \(str\), score \(int\)"):
        load(path)


def test_unknown_format_name_lists_registry():
    with pytest.raises(ValueError, match="registered formats: trl, hh_rlhf"):
        load(SAMPLES / "hh_rlhf.jsonl", format="hh")


def test_specific_format_wins_over_trl():
    hh = next(r for _, r in read_records(SAMPLES / "hh_rlhf.jsonl"))
    assert FORMATS["trl"].detect(hh) and detect_format([hh], "x") == "hh_rlhf"


# ---------------------------------------------------------------------------------------------
# Each reader on its sample: concrete values


def test_trl_standard_explicit_jsonl_and_csv():
    ex = load(SAMPLES / "trl_standard_explicit.jsonl").examples
    assert ex[0].prompt == (user("What is the boiling point of water at sea level?"),)
    assert ex[0].chosen == "100 degrees Celsius (212 degrees Fahrenheit)." and ex[0].strength is None
    assert ex[1].strength == 2.0 and ex[2].strength == 1.5
    csv = load(SAMPLES / "trl_standard_explicit.csv").examples
    assert [e.strength for e in csv] == [1.0, 2.0, 1.5, 1.0, 1.0]
    assert [(e.prompt, e.chosen, e.rejected) for e in csv] == [(e.prompt, e.chosen, e.rejected) for e in ex[:5]]


def test_trl_standard_implicit_uses_trl_prefix_rule():
    ex = load(SAMPLES / "trl_standard_implicit.jsonl").examples
    # the shared prefix ends before the space (TRL's extract_prompt steps back over it)
    assert ex[0].prompt == (user("The sky is"),) and (ex[0].chosen, ex[0].rejected) == (" blue.", " green.")
    # character-level: "56" vs "54" share the "5"
    assert ex[1].prompt == (user("Q: What is 7 times 8?\nA: 5"),) and (ex[1].chosen, ex[1].rejected) == ("6", "4")


def test_trl_conversational_explicit_json_array():
    ex = load(SAMPLES / "trl_conversational_explicit.json").examples
    assert ex[1].prompt == ({"role": "system", "content": "You are a terse assistant."}, user("Capital of Japan?"))
    assert ex[2].prompt == (user("I need a word that rhymes with 'cat'."), assistant("Hat?"), user("Another one, please."))
    assert (ex[2].chosen, ex[2].rejected) == ("Bat.", "Dog.")
    assert ex[3].strength == 3.0


def test_trl_conversational_implicit_common_message_prefix():
    ex = load(SAMPLES / "trl_conversational_implicit.jsonl").examples
    assert ex[0].prompt == (user("What color is the sky?"),) and ex[0].chosen == "It is blue."
    assert ex[3].prompt == (user("Hi!"), assistant("Hello! How can I help?"), user("What's 2+2?"))
    assert (ex[3].chosen, ex[3].rejected) == ("4.", "22.")


def test_hh_rlhf_transcripts():
    ex = load(SAMPLES / "hh_rlhf.jsonl").examples
    assert ex[0].prompt == (user("What are some cuss words in english?"),)
    assert ex[0].chosen.startswith("I'd rather not") and ex[0].rejected == "Here is a list of words you should not say."
    assert ex[2].prompt == (user("Can you help me plan a trip?"), assistant("Sure, where would you like to go?"),
                            user("Somewhere warm in December."))
    assert ex[2].rejected == "Norway is lovely in December."
    # both replies start with "About " — the prompt is still cut at the assistant marker
    assert ex[3].chosen == "About 299,792 kilometres per second in a vacuum."


def test_ultrafeedback_parquet():
    ex = load(SAMPLES / "ultrafeedback.parquet").examples
    assert len(ex) == 5 and ex[0].prompt == (user("How many legs does a spider have?"),)
    assert ex[0].rejected == "Spiders have six legs, like all insects."
    assert ex[0].meta == {"prompt_id": "uf-0001", "score_chosen": 9.0, "score_rejected": 3.5}


def test_skywork():
    ex = load(SAMPLES / "skywork.jsonl").examples
    assert ex[0].meta == {"source": "magpie_math"} and ex[0].chosen == "Subtract 6: 2x = 4, so x = 2."
    assert ex[3].prompt == (user("Suggest a name for a bakery."), assistant("Rise & Shine Bakery."),
                            user("Something shorter?"))
    assert (ex[3].chosen, ex[3].meta["source"]) == ("Crumb.", "helpsteer2")


def test_helpsteer2_ratings_multiturn_and_pairs():
    ex = load(SAMPLES / "helpsteer2.jsonl").examples
    assert [e.meta["pair_id"] for e in ex] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert dict(ex[0].attributes) == {"helpfulness": 3, "correctness": 4, "coherence": 4, "complexity": 1,
                                      "verbosity": 1}
    assert ex[2].prompt == (user("I want to learn guitar. Where do I start?"),
                            assistant("Start with basic open chords such as G, C and D."),
                            user("How long should I practice each day?"))
    assert ex[3].attributes["helpfulness"] == 0


def test_helpsteer2_preference_orientation_votes_and_filter():
    loaded = load(SAMPLES / "helpsteer2_preference.jsonl")
    ex = loaded.examples
    assert loaded.report.filtered == {"no_preference": 1} and loaded.report.seen == 6 and len(ex) == 5
    # s = -3: response_1 chosen; annotator strengths are negated so > 0 prefers chosen
    assert ex[0].chosen == "Mount Everest, 8,849 m above sea level." and ex[0].rejected == "K2."
    assert ex[0].strength == 3 and ex[0].votes == (3, 3, 2) and ex[0].meta["chosen_position"] == 1
    # s = +2: response_2 chosen; the -100 "neither valid" vote is dropped
    assert ex[1].chosen == "Joyful." and ex[1].strength == 2 and ex[1].votes == (2, 2, 3)
    assert ex[1].meta["similar_strengths"] == [2, 2, 3]
    # s = -2 with a -100 vote in the middle; "val" is validation by NeMo's rule
    assert ex[2].votes == (2, 2, 1) and ex[2].meta["split"] == "validation" and ex[2].meta["raw_split"] == "val"
    assert ex[3].chosen.startswith("15% of 80") and ex[3].votes == (1, 1, 1) and ex[3].meta["split"] == "train"
    assert ex[4].meta["split"] == "validation" and ex[4].votes == (1, 2, 1)
    assert ex[0].meta["statement"] == "@Response 1 is much better than @Response 2."


def test_helpsteer2_disagreements_mean_and_raw():
    ex = load(SAMPLES / "helpsteer2_disagreements.jsonl").examples
    assert ex[0].attributes["helpfulness"] == pytest.approx(10 / 3)
    assert ex[0].meta["annotations"]["helpfulness"] == [3, 3, 4]
    assert ex[1].attributes["helpfulness"] == 1.5 and ex[1].meta["annotations"]["coherence"] == [4, 4]
    assert ex[2].attributes["complexity"] == 0.25
    assert len(ex[3].prompt) == 3


def test_multipref_majority_and_orientation():
    loaded = load(SAMPLES / "multipref.jsonl")
    ex = {e.meta["comparison_id"]: e for e in loaded.examples}
    assert loaded.report.filtered == {"no_majority": 2} and set(ex) == {"c001", "c002", "c004", "c006"}
    assert ex["c001"].chosen.startswith("Rayleigh") and ex["c001"].votes == (2, 1, 2, 0)
    # B wins: chosen is completion_b and the votes are flipped to favour chosen
    assert ex["c002"].chosen.startswith("Grey waves") and ex["c002"].rejected == "The sea is big and blue and wet."
    assert ex["c002"].votes == (2, 1, 2, 2) and ex["c002"].meta["expert_votes"] == [2, 2]
    assert ex["c002"].meta["chosen_model"] == "gpt-4"
    # a split crowd vote: sum 3 > 0 prefers A; the B vote stays negative
    assert ex["c004"].meta["normal_votes"] == [1, -1] and ex["c004"].meta["expert_votes"] == [2, 1]
    assert ex["c004"].meta["category"] == "Coding" and ex["c004"].prompt == (user("Should I use tabs or spaces in Python?"),)


def test_nemo_regression():
    ex = load(SAMPLES / "nemo_regression.jsonl").examples
    assert ex[0].prompt == (user("c#"),) and ex[0].response.startswith("C# is")
    assert list(ex[0].attributes) == list(formats.ALL_STEERLM_ATTRIBUTES)
    assert ex[0].attributes["quality"] is None and ex[0].attributes["helpfulness"] == 3
    assert ex[1].prompt[-1] == user("How long should I practice each day?") and len(ex[1].prompt) == 3
    assert ex[2].prompt[0] == {"role": "system",
                               "content": "A chat between a curious user and an artificial intelligence assistant."}
    assert ex[2].attributes["quality"] == 7 and ex[2].attributes["verbosity"] is None
    assert ex[4].attributes["complexity"] == 1.5


def test_nemo_bt_line_pairs():
    ex = load(SAMPLES / "nemo_bt.jsonl").examples
    assert len(ex) == 4 and ex[1].prompt == (user("Name an even prime number."),)
    assert (ex[1].chosen, ex[1].rejected) == ("2 is the only even prime.", "4.")
    assert [e.meta["pair_index"] for e in ex] == [0, 1, 2, 3]


def test_rmlib_judge():
    ex = load(SAMPLES / "rmlib_judge.jsonl").examples
    assert [e.better for e in ex] == [1, 2, 2, 1, 1] and ex[3].strength is None


# ---------------------------------------------------------------------------------------------
# Canonical round-trip and atomic writes


@pytest.mark.parametrize("name", sorted(SAMPLE_FORMATS))
def test_round_trip_is_exact(tmp_path, name):
    original = load(SAMPLES / name)
    out = write_jsonl(original.examples, tmp_path / "canon.jsonl")
    back = load(out)
    assert back.format == f"rmlib_{original.kind}" and back.examples == original.examples


def test_atomic_write_leaves_no_partial_file(tmp_path):
    good = load(SAMPLES / "skywork.jsonl").examples
    target = write_jsonl(good[:1], tmp_path / "out.jsonl")
    before = target.read_bytes()
    bad = PreferencePair(good[0].prompt, "a", "b", meta={"oops": {1, 2}})  # a set is not JSON
    with pytest.raises(TypeError):
        write_jsonl([*good, bad], target)
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    with pytest.raises(ValueError):  # NaN is not valid JSON either
        write_jsonl([PreferencePair(good[0].prompt, "a", "b", strength=math.nan)], tmp_path / "new.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


# ---------------------------------------------------------------------------------------------
# column_map, sources


def test_column_map_renames_before_detection(tmp_path):
    path = write_lines(tmp_path / "custom.jsonl", [{"question": "2+2?", "good": "4", "bad": "5", "id": 7}])
    loaded = load(path, column_map={"question": "prompt", "good": "chosen", "bad": "rejected"})
    assert loaded.format == "trl" and loaded.examples[0].prompt == (user("2+2?"),)
    assert loaded.examples[0].meta == {"id": 7}
    with pytest.raises(ValueError, match=r"not in the data: \['qestion'\]"):
        load(path, column_map={"qestion": "prompt"})


def test_missing_local_path_fails_fast():
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match="no such file"):
        load("/nonexistent/dir/prefs.jsonl")
    with pytest.raises(FileNotFoundError):
        load("data/missing.parquet")
    assert time.monotonic() - start < 1


def test_hub_name_offline_fails_clearly():
    start = time.monotonic()
    with pytest.raises(ValueError, match="'nonexistent-org/no-such-dataset' is not an existing local path"):
        load("nonexistent-org/no-such-dataset")
    assert time.monotonic() - start < 30


def test_hub_dataset_goes_through_the_same_converters(monkeypatch):
    import datasets

    rows = [{"chosen": "The sky is blue.", "rejected": "The sky is green."}, {"chosen": "x", "rejected": "x"}]
    calls = []

    def fake_load(name, data_dir=None, split=None):
        calls.append((name, data_dir, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    loaded = load("someone/prefs", split="train", data_dir="sub", on_invalid="skip")
    assert calls == [("someone/prefs", "sub", "train")] and loaded.format == "trl"
    assert loaded.examples[0].prompt == (user("The sky is"),)
    assert loaded.report.skipped == {"identical_responses": 1}
    assert "someone/prefs[train]: record 1" in loaded.report.examples["identical_responses"][0]


def test_local_directory_picks_split_file(tmp_path):
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"}]
    write_lines(tmp_path / "train.jsonl", rows)
    write_lines(tmp_path / "validation.jsonl", rows * 2)
    assert len(load(tmp_path, split="validation").examples) == 2
    with pytest.raises(ValueError, match="found: train.jsonl, validation.jsonl"):
        load(tmp_path)
    with pytest.raises(ValueError, match="single file"):
        load(tmp_path / "train.jsonl", split="test")


# ---------------------------------------------------------------------------------------------
# Validation through real files

CONV_OK = [user("q"), assistant("a")]
VALID_TRL = {"prompt": "p", "chosen": "a", "rejected": "b"}


def _hs2(helpfulness: Any = 3, prompt: str = "p") -> dict[str, Any]:
    return {"prompt": prompt, "response": "r", "helpfulness": helpfulness, "correctness": 4, "coherence": 4,
            "complexity": 1, "verbosity": 1}


def _hs2_pref(strength: Any) -> dict[str, Any]:
    return {"split": "train", "prompt": "p", "response_1": "a", "response_2": "b", "preference_strength": strength}


def _multipref(label: str) -> dict[str, Any]:
    return {"comparison_id": "c", "text": "p", "completion_a": "a", "completion_b": "b",
            "normal_worker_annotations": [{"overall_pref": label}], "expert_worker_annotations": []}


def _nemo_text(answer: str = "a") -> str:
    return f"<extra_id_0>System\n\n<extra_id_1>User\nq\n<extra_id_1>Assistant\n{answer}\n<extra_id_2>"


# (format, rows, record index of the error, field or None, reason)
BAD_CASES = {
    "missing_field": ("trl", [{"prompt": "p", "chosen": "a"}], 0, "rejected", "missing_field"),
    "wrong_type": ("trl", [{"prompt": "p", "chosen": 3, "rejected": "b"}], 0, "chosen", "wrong_type"),
    "empty_response": ("trl", [{"prompt": "p", "chosen": "  ", "rejected": "b"}], 0, "chosen", "empty_response"),
    "identical": ("trl", [{"prompt": "p", "chosen": "a", "rejected": "a"}], 0, "rejected", "identical_responses"),
    "identical_implicit": ("trl", [{"chosen": CONV_OK, "rejected": CONV_OK}], 0, "rejected", "identical_responses"),
    "nan_strength": ("trl", ['{"prompt": "p", "chosen": "a", "rejected": "b", "margin": NaN}'], 0, "margin",
                     "bad_value"),
    "negative_margin": ("trl", [{**VALID_TRL, "margin": -1.0}], 0, "margin", "bad_value"),
    "strength_out_of_range": ("helpsteer2_preference", [_hs2_pref(4)], 0, "preference_strength", "bad_value"),
    "inf_score": ("ultrafeedback", ['{"prompt_id": "1", "chosen": [{"role": "user", "content": "q"}, '
                                    '{"role": "assistant", "content": "a"}], "rejected": [{"role": "user", '
                                    '"content": "q"}, {"role": "assistant", "content": "b"}], '
                                    '"score_chosen": Infinity, "score_rejected": 1}'], 0, "score_chosen", "bad_value"),
    "rating_out_of_range": ("helpsteer2", [_hs2(5), _hs2(3)], 0, "helpfulness", "bad_value"),
    "annotator_out_of_range": ("helpsteer2_disagreements", [_hs2([3, 7])], 0, "helpfulness[1]", "bad_value"),
    "nemo_nan_label": ("nemo_regression", ['{"text": "' + _nemo_text().replace("\n", "\\n") + '", "label": '
                                           '[-100, -100, -100, -100, NaN, 1, 1, 1, 1]}'], 0, "label[4]", "bad_value"),
    "nemo_label_length": ("nemo_regression", [{"text": _nemo_text(), "label": [1, 2]}], 0, "label", "bad_value"),
    "unknown_role": ("trl", [{"chosen": [{"role": "robot", "content": "q"}, assistant("a")],
                              "rejected": [{"role": "robot", "content": "q"}, assistant("b")]}], 0,
                     "chosen[0].role", "unknown_role"),
    "message_without_content": ("trl", [{"prompt": [user("q")], "chosen": [{"role": "assistant"}],
                                         "rejected": [assistant("b")]}], 0, "chosen[0]", "malformed_messages"),
    "messages_not_a_list": ("trl", [{"prompt": [user("q")], "chosen": "a", "rejected": [assistant("b")]}], 0,
                            "chosen", "malformed_messages"),
    "two_turn_completion": ("trl", [{"chosen": [user("q"), assistant("a")], "rejected": [user("r"), assistant("b")]}],
                            0, "chosen", "malformed_messages"),
    "user_completion": ("trl", [{"prompt": [user("q")], "chosen": [user("a")], "rejected": [assistant("b")]}], 0,
                        "chosen", "malformed_messages"),
    "hh_no_assistant_turn": ("hh_rlhf", [{"chosen": "\n\nHuman: a", "rejected": "\n\nHuman: b"}], 0, "chosen",
                             "malformed_messages"),
    "nemo_no_assistant": ("nemo_regression", [{"text": "<extra_id_0>System\n\n<extra_id_1>User\nq\n<extra_id_2>",
                                               "label": [1] * 9}], 0, "text", "malformed_messages"),
    "undecodable_line": ("trl", [VALID_TRL, '{"prompt": "p", "chosen": '], 1, None, "undecodable_line"),
    "not_an_object": ("trl", [[1, 2]], 0, None, "wrong_type"),
    "multipref_label": ("multipref", [_multipref("A-is-much-better")], 0, "normal_worker_annotations[0].overall_pref",
                        "bad_value"),
    "helpsteer2_pair_mismatch": ("helpsteer2", [_hs2(prompt="p1"), _hs2(prompt="p2")], 0, "prompt", "pair_mismatch"),
    "helpsteer2_odd_rows": ("helpsteer2", [_hs2(), _hs2(), _hs2()], 2, "prompt", "unpaired_row"),
    "nemo_bt_odd_lines": ("nemo_bt", [{"text": _nemo_text("a")}, {"text": _nemo_text("b")}, {"text": _nemo_text()}],
                          2, None, "unpaired_row"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_invalid_record_raises_with_source_index_field(tmp_path, case):
    fmt, rows, index, field, reason = BAD_CASES[case]
    path = write_lines(tmp_path / f"{case}.jsonl", rows)
    with pytest.raises(DataError) as info:
        load(path, format=fmt)
    err = info.value
    assert (err.source, err.index, err.field, err.reason) == (str(path), index, field, reason)
    assert str(path) in str(err) and f"record {index}" in str(err)
    if field:
        assert f"field '{field}'" in str(err)


def test_undecodable_line_names_the_line(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", [VALID_TRL, "", "not json at all", VALID_TRL])
    records = list(read_records(path))
    assert [i for i, _ in records] == [0, 1, 2]
    assert isinstance(records[1][1], DataError) and "line 3" in str(records[1][1])
    (tmp_path / "bytes.jsonl").write_bytes(b'{"prompt": "\xff"}\n')
    assert next(read_records(tmp_path / "bytes.jsonl"))[1].reason == "undecodable_line"


def test_skip_counts_every_reason_exactly(tmp_path):
    rows = [
        VALID_TRL,
        {"prompt": "p", "chosen": "a"},                                          # missing_field
        {"prompt": "p", "chosen": 3, "rejected": "b"},                           # wrong_type
        {"prompt": "p", "chosen": " ", "rejected": "b"},                         # empty_response
        {"prompt": "p", "chosen": "a", "rejected": "a"},                         # identical_responses
        '{"prompt": "p", "chosen": "a", "rejected": "b", "margin": NaN}',        # bad_value
        {**VALID_TRL, "margin": -2},                                             # bad_value
        {"chosen": [{"role": "robot", "content": "q"}, assistant("a")],
         "rejected": [{"role": "robot", "content": "q"}, assistant("b")]},       # unknown_role
        {"prompt": [user("q")], "chosen": [assistant("a"), assistant("c")],
         "rejected": [assistant("b")]},                                          # malformed_messages
        "{undecodable",                                                          # undecodable_line
        {"chosen": CONV_OK, "rejected": [user("q"), assistant("b")], "margin": 1},
    ]
    path = write_lines(tmp_path / "mixed.jsonl", rows)
    loaded = load(path, format="trl", on_invalid="skip", max_examples=1)
    report = loaded.report
    assert report.skipped == {"missing_field": 1, "wrong_type": 1, "empty_response": 1, "identical_responses": 1,
                              "bad_value": 2, "unknown_role": 1, "malformed_messages": 1, "undecodable_line": 1}
    assert (report.seen, report.kept, len(loaded.examples)) == (11, 2, 2)
    assert len(report.examples["bad_value"]) == 1 and "record 5" in report.examples["bad_value"][0]
    assert loaded.examples[1].strength == 1.0
    with pytest.raises(DataError, match=r"mixed\.jsonl: record 1: field 'rejected'"):
        load(path, format="trl")


def test_skip_helpsteer2_pairs(tmp_path):
    rows = [_hs2(prompt="a"), _hs2(prompt="a"), _hs2(prompt="b"), _hs2(prompt="c"), "{bad", _hs2(prompt="d")]
    loaded = load(write_lines(tmp_path / "hs2.jsonl", rows), format="helpsteer2", on_invalid="skip")
    assert loaded.report.skipped == {"pair_mismatch": 2, "undecodable_line": 1, "unpaired_row": 1}
    assert [e.meta["pair_id"] for e in loaded.examples] == [0, 0]


def test_minus_100_means_missing_in_every_ratings_reader(tmp_path):
    """NeMo-Aligner's loss_mask_val (-100) is "not rated" wherever it appears, so the loss masks it
    instead of training towards -100 (rmlib_ratings) or rejecting the row as out of range (0..4)."""
    first = json.loads((SAMPLES / "helpsteer2.jsonl").read_text().splitlines()[0])
    second = json.loads((SAMPLES / "helpsteer2.jsonl").read_text().splitlines()[1])
    first["verbosity"] = -100
    hs = tmp_path / "hs.jsonl"
    hs.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    row = load(hs, "helpsteer2").examples[0]
    assert row.attributes["verbosity"] is None and row.attributes["helpfulness"] == first["helpfulness"]
    own = tmp_path / "own.jsonl"
    own.write_text(json.dumps({"prompt": [{"role": "user", "content": "q"}], "response": "a",
                               "attributes": {"helpfulness": 3, "verbosity": -100}}))
    assert load(own, "rmlib_ratings").examples[0].attributes == {"helpfulness": 3.0, "verbosity": None}
    # out-of-range values other than the marker still fail, naming the field
    first["verbosity"] = -99
    hs.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    with pytest.raises(DataError, match="verbosity"):
        load(hs, "helpsteer2")
