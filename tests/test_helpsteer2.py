"""HelpSteer2-Preference aggregation, weighted κ and justification preprocessing.

Every expected value below is derived by hand in the comment next to it; sklearn is used only as
an independent reference for κ on random inputs.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from rmlib.data.helpsteer2 import (
    AggregationReport,
    aggregate_file,
    aggregate_strength,
    aggregate_strength_explained,
    annotator_pairs,
    parse_helpsteer2_prompt,
    pick_most_similar,
    split_justification,
    split_sentences,
    statement_better,
    weighted_kappa,
)
from rmlib.data.judge import judge_examples
from rmlib.data.schema import DataError

# ---------------------------------------------------------------------------------------------
# aggregate_strength


@pytest.mark.parametrize("annotations, expected, reason", [
    # Only one triple has range 2: (1, 3, 2) at indices (2, 3, 4); mean 2.
    ([-3, -1, 1, 3, 2], 2, "ok"),
    # The outlier 3 is left out: (-2, -2, -1) at indices (0, 2, 3) has range 1; mean -5/3 → -2.
    ([-2, 3, -2, -1], -2, "ok"),
    # Three annotations are used as they are: mean 7/3 = 2.33 → 2; 8/3 = 2.67 → 3.
    ([2, 2, 3], 2, "ok"),
    ([2, 3, 3], 3, "ok"),
    # −100 entries are dropped before anything else: valid [1, 2] → 1.5 → 2 (half away from zero).
    ([1, -100, 2, -100], 2, "ok"),
    # Two-annotation halves round away from zero, not to even: 2.5 → 3 (banker's would give 2).
    ([1, 2], 2, "ok"),
    ([-1, -2], -2, "ok"),
    ([2, 3], 3, "ok"),
    ([-2, -3], -3, "ok"),
    # Mean 0 is dropped: [1, -1] → 0; [-1, -1, 1] → -1/3 → 0.
    ([1, -1], None, "zero_mean"),
    ([-1, -1, 1], None, "zero_mean"),
    # Spread > 2: [-1, 2] spans 3; [-3, -1, 1, 3]: every triple spans 4 or 6.
    ([-1, 2], None, "spread_gt_2"),
    ([-3, -1, 1, 3], None, "spread_gt_2"),
    ([3, -3], None, "spread_gt_2"),
    # Spread exactly 2 is kept: (1, 2, 3) → 2.
    ([1, 3, 2], 2, "ok"),
    # Fewer than two valid annotations.
    ([], None, "too_few_valid"),
    ([3], None, "too_few_valid"),
    ([-100, -100, 2], None, "too_few_valid"),
    ([-100, -100, -100], None, "too_few_valid"),
])
def test_aggregate_strength(annotations, expected, reason):
    assert aggregate_strength(annotations) == expected
    assert aggregate_strength_explained(annotations) == (expected, reason)


def test_range_tie_broken_by_earliest_indices():
    # Range-1 triples: (0, 2, 4) = [1, 1, 2] and (1, 3, 4) = [3, 3, 2]; both have SSD 2/3, so the
    # lexicographically first index triple wins: mean 4/3 → 1 (the other would give 8/3 → 3).
    assert pick_most_similar([1, 3, 1, 3, 2]) == (0, 2, 4)
    assert aggregate_strength([1, 3, 1, 3, 2]) == 1
    # Swapping the roles flips the answer, so order (not value) decided it.
    assert aggregate_strength([3, 1, 3, 1, 2]) == 3


def test_range_tie_broken_by_squared_deviation_before_index():
    # Valid [-3, -3, -1, 1, 2, 3]: no triple has range < 2. Range-2 triples are (0, 1, 2) =
    # [-3, -3, -1] with SSD 8/3 and (3, 4, 5) = [1, 2, 3] with SSD 2. The smaller SSD wins although
    # its indices come later: mean 2 → 2 (the earliest triple would give -7/3 → -2).
    valid = [-3, -3, -1, 1, 2, 3]
    assert pick_most_similar(valid) == (3, 4, 5)
    assert aggregate_strength([-3, -100, -3, -1, 1, 2, 3]) == 2


def test_fewer_than_three_uses_all():
    assert pick_most_similar([2, -1]) == (0, 1)
    assert pick_most_similar([]) == ()


@pytest.mark.parametrize("bad", [[4], [-4, 1], [1.0, 2], [True, 1], ["2", 1], [-99, 1]])
def test_aggregate_strength_rejects_values_off_the_scale(bad):
    with pytest.raises(ValueError):
        aggregate_strength(bad)


# ---------------------------------------------------------------------------------------------
# weighted_kappa


def _sklearn(y1, y2, labels, weights):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UndefinedMetricWarning / divide-by-zero on undefined κ
        return cohen_kappa_score(y1, y2, labels=labels, weights=weights)


def test_kappa_uneven_gap_gotcha():
    y1, y2 = [0, 1, 4, 4, 1, 0], [0, 4, 4, 1, 1, 1]
    # Categories {0, 1, 4} at positions 0, 1, 2: rows r = (2, 2, 2), columns c = (1, 3, 2), N = 6.
    # Σ w·O: (0,0)=0, (1,2)=1, (2,2)=0, (2,1)=1, (1,1)=0, (0,1)=1 → 3.
    # Σ w·E = Σ r_i c_j (i−j)² / 6 = 2·[1·(0+1+4) + 3·(1+0+1) + 2·(4+1+0)] / 6 = 2·21/6 = 7.
    # κ = 1 − 3/7 = 4/7 ≈ 0.571.
    assert weighted_kappa(y1, y2) == pytest.approx(4 / 7)
    # Over 0..4 the value 4 sits at position 4: Σ w·O = 0+9+0+9+0+1 = 19 and
    # Σ w·E = 2·[1·(0+1+16) + 3·(1+0+9) + 2·(16+9+0)] / 6 = 2·97/6 = 97/3, so κ = 1 − 57/97 = 40/97.
    assert weighted_kappa(y1, y2, labels=range(5)) == pytest.approx(40 / 97)
    assert weighted_kappa(y1, y2) == pytest.approx(_sklearn(y1, y2, None, "quadratic"))
    assert weighted_kappa(y1, y2, labels=list(range(5))) == pytest.approx(
        _sklearn(y1, y2, list(range(5)), "quadratic"))


def test_kappa_unweighted_by_hand():
    # p_o = 3/4; r = (2, 2), c = (1, 3): p_e = (2·1 + 2·3)/16 = 1/2; κ = (3/4 − 1/2)/(1/2) = 1/2.
    assert weighted_kappa([0, 0, 1, 1], [0, 1, 1, 1], weights=None) == pytest.approx(0.5)
    # Two categories: linear and quadratic weights coincide with the unweighted ones.
    assert weighted_kappa([0, 0, 1, 1], [0, 1, 1, 1], weights="linear") == pytest.approx(0.5)


@pytest.mark.parametrize("weights", ["quadratic", "linear", None])
@pytest.mark.parametrize("with_labels", [False, True])
def test_kappa_matches_sklearn_on_random_inputs(weights, with_labels):
    rng = np.random.default_rng(1234)
    for _ in range(150):
        pool = sorted(rng.choice(np.arange(-6, 12), size=rng.integers(1, 8), replace=False).tolist())
        n = int(rng.integers(1, 40))
        y1 = rng.choice(pool, size=n).tolist()
        y2 = rng.choice(pool, size=n).tolist()
        labels = None
        if with_labels:
            extra = rng.choice(np.arange(20, 25), size=rng.integers(0, 3), replace=False).tolist()
            labels = pool + extra
            rng.shuffle(labels)  # positions follow the given order, not the values
        ours = weighted_kappa(y1, y2, labels=labels, weights=weights)
        ref = _sklearn(y1, y2, labels, weights)
        if math.isnan(ref):
            assert math.isnan(ours), (y1, y2, labels)
        else:
            assert ours == pytest.approx(ref, abs=1e-12), (y1, y2, labels)


def test_kappa_string_labels_and_symmetry():
    y1, y2 = ["a", "b", "c", "c", "a"], ["a", "c", "c", "b", "b"]
    assert weighted_kappa(y1, y2) == pytest.approx(_sklearn(y1, y2, None, "quadratic"))
    assert weighted_kappa(y1, y2) == pytest.approx(weighted_kappa(y2, y1))


def test_kappa_undefined_and_errors():
    assert math.isnan(weighted_kappa([2, 2, 2], [2, 2, 2]))  # one shared category: 0/0
    assert math.isnan(weighted_kappa([], [], labels=[0, 1]))
    with pytest.raises(ValueError, match="same length"):
        weighted_kappa([1, 2], [1])
    with pytest.raises(ValueError, match="not in labels"):
        weighted_kappa([1, 5], [1, 1], labels=[0, 1, 2])
    with pytest.raises(ValueError, match="weights"):
        weighted_kappa([1, 2], [1, 2], weights="cubic")


# ---------------------------------------------------------------------------------------------
# aggregate_file


def _record(strengths, justifications=None, **extra):
    justifications = justifications or ["x"] * len(strengths)
    return {"split": "train", "prompt": "Say hi.", "response_1": "Hi.", "response_2": "Hello there!",
            "preference_strength": 0,
            "all_preferences_unprocessed": [{"strength": s, "justification": j}
                                            for s, j in zip(strengths, justifications)], **extra}


def test_aggregate_file_counts_each_rule():
    records = [
        _record([2, 2, 3]),             # 7/3 → 2, kept
        _record([-3, 3, 1]),            # single triple spans 6 → spread_gt_2
        _record([1, -1, -100]),         # valid [1, -1] → 0 → zero_mean
        _record([-100, -100, 2]),       # one valid → too_few_valid
        _record([-2, -2, -1, 3]),       # picks (-2, -2, -1) → -5/3 → -2, kept
        _record([3, -3]),               # spread_gt_2
    ]
    kept, report = aggregate_file(records, "pref.jsonl")
    assert [r["preference_strength"] for r in kept] == [2, -2]
    assert records[0]["preference_strength"] == 0  # the input is not modified
    assert kept[1]["all_preferences_unprocessed"] == records[4]["all_preferences_unprocessed"]
    assert (report.seen, report.kept, report.n_skipped) == (6, 2, 0)
    assert dict(report.filtered) == {"spread_gt_2": 2, "zero_mean": 1, "too_few_valid": 1}
    assert "record 1" in report.examples["spread_gt_2"][0]
    text = report.format()
    assert "filtered spread_gt_2: 2" in text and "quadratic κ" in text


def test_aggregate_file_kappa_before_and_after_by_hand():
    records = [_record([1, 2]), _record([-2, -2]), _record([-3, 3])]  # the last is discordant
    kept, report = aggregate_file(records, "pref.jsonl")
    assert len(kept) == 2 and dict(report.filtered) == {"spread_gt_2": 1}
    # Before: symmetric pairs (1,2) (2,1) (-2,-2)×2 (-3,3) (3,-3); N = 6. On the full scale the
    # quadratic weight is (a−b)², so Σ w·O = 1 + 1 + 36 + 36 = 74. Marginals r = c (each value
    # counted once per appearance): Σ r·v = -1, Σ r·v² = 31, and
    # Σ w·E = (2·N·Σ r v² − 2·(Σ r v)²)/N = (372 − 2)/6 = 370/6; κ = 1 − 74·6/370 = -0.2.
    assert report.kappa_before == pytest.approx(-0.2)
    # After: (1,2) (2,1) (-2,-2)×2; N = 4, Σ w·O = 2, Σ r v = -1, Σ r v² = 13,
    # Σ w·E = (2·4·13 − 2)/4 = 25.5; κ = 1 − 2/25.5 = 47/51.
    assert report.kappa_after == pytest.approx(47 / 51)
    assert report.kappa_before < report.kappa_after
    assert report.to_dict()["n_pairs_before"] == 3 and report.to_dict()["n_pairs_after"] == 2
    # Same numbers from the documented pair construction with the full −3..3 scale as labels.
    pairs = [p for a in ([1, 2], [-2, -2], [-3, 3]) for p in annotator_pairs(a)]
    y1, y2 = zip(*pairs)
    assert report.kappa_before == pytest.approx(_sklearn(y1, y2, list(range(-3, 4)), "quadratic"))


def test_aggregate_file_kappa_three_stages_the_papers_way():
    # HelpSteer2-Preference: 0.489 raw → 0.843 "using the three most similar annotations per task and removing
    # samples with a preference spread of more than two" → 0.878 "excluding samples with an overall preference of 0"
    records = [_record([2, 2, 3, -3]),   # picks (2, 2, 3): spread 1, 7/3 → 2, kept
               _record([1, -1, 0]),      # spread 2, mean 0: in stage 2, not in stage 3
               _record([-3, 3])]         # spread 6: raw only
    kept, report = aggregate_file(records, "pref.jsonl")
    assert len(kept) == 1

    def kappa(tasks):
        y1, y2 = zip(*[p for a in tasks for p in annotator_pairs(a)])
        return _sklearn(y1, y2, list(range(-3, 4)), "quadratic")

    assert report.kappa_before == pytest.approx(kappa([[2, 2, 3, -3], [1, -1, 0], [-3, 3]]))
    assert report.kappa_similar == pytest.approx(kappa([[2, 2, 3], [1, -1, 0]]))   # the -3 of task 1 is not picked
    assert report.kappa_after == pytest.approx(kappa([[2, 2, 3]]))
    # stage 3 by hand: pairs (2,2)×2, (2,3)×2, (3,2)×2; N = 6, Σ w·O = 4; marginals r = c: 2 → 4, 3 → 2;
    # Σ w·E = Σ r_i c_j (i − j)² / N = 2·4·2·1/6 = 8/3; κ = 1 − 4/(8/3) = −0.5
    assert report.kappa_after == pytest.approx(-0.5)
    d = report.to_dict()
    assert (d["n_pairs_before"], d["n_pairs_similar"], d["n_pairs_after"]) == (10, 6, 3)
    assert "three most similar" in report.format()


def test_aggregate_file_kappa_rises_when_discordant_tasks_are_removed():
    concordant = [[2, 2, 3], [-1, -1, -2], [3, 3, 2, -100], [1, 2, 1], [-3, -2, -3]]
    discordant = [[-3, 3, 1], [2, -2, -100, 3], [-1, 3], [3, -3, 0]]
    records = [_record(a) for a in concordant + discordant]
    kept, report = aggregate_file(records, "pref.jsonl")
    assert len(kept) == len(concordant)
    assert report.kappa_before < 0.5 < report.kappa_after
    # Merging per-file reports gives the report of the concatenated file.
    _, first = aggregate_file(records[:4], "a")
    _, second = aggregate_file(records[4:], "b")
    first.merge(second)
    assert (first.kappa_before, first.kappa_after) == pytest.approx((report.kappa_before, report.kappa_after))
    assert first.filtered == report.filtered and first.kept == report.kept


def test_aggregate_file_invalid_records():
    bad = [_record([2, 2]), {"prompt": "no annotations"}, _record([2, 5]),
           {"all_preferences_unprocessed": [{"justification": "no strength"}]}]
    with pytest.raises(DataError, match="record 1: field 'all_preferences_unprocessed'"):
        aggregate_file(bad, "pref.jsonl")
    kept, report = aggregate_file(bad, "pref.jsonl", on_invalid="skip")
    assert len(kept) == 1
    assert dict(report.skipped) == {"missing_field": 2, "bad_value": 1}
    assert isinstance(report, AggregationReport) and report.seen == 4


# ---------------------------------------------------------------------------------------------
# Justifications


def test_split_sentences_keeps_abbreviations_decimals_and_response_tags():
    text = ("@Response 1 cites version 3.5, e.g. the old API, i.e. one that was removed. "
            "It lists apples, pears, etc. The tone of @Response 2 is fine etc. and calm!\nIt ends with @Response 1.")
    assert split_sentences(text) == [
        "@Response 1 cites version 3.5, e.g. the old API, i.e. one that was removed.",
        "It lists apples, pears, etc.",
        "The tone of @Response 2 is fine etc. and calm!",
        "It ends with @Response 1.",
    ]


def test_split_justification_drops_connective_and_trailing_duplicate():
    text = ("@Response 2 is slightly better than @Response 1 because it gives a working example. "
            "@Response 1 uses an API that was removed in version 3.5, e.g. the old `connect` call. "
            "Therefore, @Response 2 is slightly better.")
    assert split_justification(text) == (
        "@Response 2 is slightly better than @Response 1 because it gives a working example.",
        "@Response 1 uses an API that was removed in version 3.5, e.g. the old `connect` call.")


def test_split_justification_statement_in_the_middle():
    text = ("Both responses answer the question, i.e. they list the three steps. "
            "Overall, @Response 1 is much better as it is concise. @Response 2 repeats itself.")
    assert split_justification(text) == (
        "@Response 1 is much better as it is concise.",
        "Both responses answer the question, i.e. they list the three steps. @Response 2 repeats itself.")


def test_split_justification_keeps_line_breaks_and_stacked_connectives():
    text = ("In conclusion, @Response 2 is better than @Response 1.\nIt explains the 2.5% fee.\n\n"
            "@Response 1 omits it. So, overall, @Response 2 is better.")
    assert split_justification(text) == ("@Response 2 is better than @Response 1.",
                                         "It explains the 2.5% fee.\n\n@Response 1 omits it.")


def test_split_justification_statement_last_is_not_a_duplicate_of_itself():
    text = "The code in @Response 1 runs. The other does not. Thus, @Response 1 is much better."
    assert split_justification(text) == ("@Response 1 is much better.",
                                         "The code in @Response 1 runs. The other does not.")


def test_split_justification_keeps_trailing_statement_for_the_other_response():
    # Not a duplicate (it contradicts the first statement), so it is kept as elaboration.
    text = "@Response 1 is better. It is short. @Response 2 is better for experts."
    assert split_justification(text) == ("@Response 1 is better.", "It is short. @Response 2 is better for experts.")


@pytest.mark.parametrize("text,statement,better", [
    # "we remove all prefixes before the first '@Response 1/2 … better' is encountered"
    ("For these reasons, @Response 2 is better.", "@Response 2 is better.", 2),
    ("@Response 2 is the better response because it cites the source.",
     "@Response 2 is the better response because it cites the source.", 2),
    ("All things considered @Response 1 is far better than @Response 2.",
     "@Response 1 is far better than @Response 2.", 1),
    ("Because of the missing step, @Response 1 is clearly not as good; @Response 2 is better.",
     "@Response 1 is clearly not as good; @Response 2 is better.", 2),
])
def test_split_justification_deletes_every_prefix_before_the_statement(text, statement, better):
    assert split_justification(text) == (statement, "")
    assert statement_better(statement) == better


def test_split_justification_statement_only():
    assert split_justification("@Response 1 is better than @Response 2.") == (
        "@Response 1 is better than @Response 2.", "")


@pytest.mark.parametrize("text", [
    "Both responses are equally good and accurate.",
    "@Response 1 is not better than @Response 2; they are about the same.",
    "@Response 1 and @Response 2 are both fine.",
    "I think the first response is better.",
    "",
])
def test_split_justification_without_statement(text):
    assert split_justification(text) is None


def test_statement_better():
    assert statement_better("@Response 2 is slightly better than @Response 1 because it is shorter.") == 2
    assert statement_better("@Response 1 is much better") == 1
    assert statement_better("Overall, @Response 1 is a little bit better.") == 1
    with pytest.raises(ValueError, match="not a preference statement"):
        statement_better("Both are fine.")


def test_parse_helpsteer2_prompt():
    assert parse_helpsteer2_prompt("Say hi.") == [{"role": "user", "content": "Say hi."}]
    prompt = "What is 2+2?\n<extra_id_1>Assistant\n4.\n<extra_id_1>User\nAnd 3+3?\nShow work."
    assert parse_helpsteer2_prompt(prompt) == [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?\nShow work."},
    ]


def test_judge_examples():
    prompt = "Write a haiku.\n<extra_id_1>Assistant\nAbout what?\n<extra_id_1>User\nThe sea."
    record = _record(
        [2, -100, 1, -1, 3],
        ["@Response 2 is better than @Response 1 because it follows 5-7-5. @Response 1 has 6 syllables "
         "in line one. Therefore, @Response 2 is better.",
         "Neither response is valid.",
         "Both are nice poems.",
         "@Response 2 is slightly better.",  # says 2 but the strength (−1) says 1
         "Overall, @Response 2 is much better."],
        prompt=prompt)
    examples, report = judge_examples([record], "pref.jsonl")
    assert [(e.better, e.strength) for e in examples] == [(2, 2.0), (2, 3.0)]
    first = examples[0]
    assert first.justification == ("@Response 1 has 6 syllables in line one. "
                                   "@Response 2 is better than @Response 1 because it follows 5-7-5.")
    assert first.justification.endswith("because it follows 5-7-5.")  # ends with the statement
    assert examples[1].justification == "@Response 2 is much better."
    assert [m["role"] for m in first.prompt] == ["user", "assistant", "user"]
    assert (first.response_1, first.response_2) == ("Hi.", "Hello there!")
    assert first.meta == {"index": 0, "annotation": 0, "split": "train"}
    assert (report.seen, report.kept) == (5, 2)
    assert dict(report.filtered) == {"neither_valid": 1, "no_statement": 1, "statement_contradicts_strength": 1}


def test_judge_examples_invalid_records():
    records = [{"all_preferences_unprocessed": []}, _record([1], ["@Response 2 is better."])]
    with pytest.raises(DataError, match="field 'prompt'"):
        judge_examples(records, "pref.jsonl")
    examples, report = judge_examples(records, "pref.jsonl", on_invalid="skip")
    assert len(examples) == 1 and dict(report.skipped) == {"missing_field": 1}
    assert (report.seen, report.kept) == (2, 1)


def test_rating_pairs_chosen_is_the_higher_helpfulness_and_ties_are_counted():
    from rmlib.data.helpsteer2 import rating_pairs
    from rmlib.data.schema import RatedResponse

    p = ({"role": "user", "content": "q"},)
    rows = [RatedResponse(p, "a1", {"helpfulness": 2.0}, {"pair_id": 0}),
            RatedResponse(p, "b1", {"helpfulness": 4.0}, {"pair_id": 0}),
            RatedResponse(p, "a2", {"helpfulness": 3.0}, {"pair_id": 1}),
            RatedResponse(p, "b2", {"helpfulness": 3.0}, {"pair_id": 1}),
            RatedResponse(p, "a3", {"helpfulness": None}, {"pair_id": 2}),
            RatedResponse(p, "b3", {"helpfulness": 1.0}, {"pair_id": 2})]
    pairs, counts = rating_pairs(rows)
    assert [(x.chosen, x.rejected, x.strength) for x in pairs] == [("b1", "a1", 2.0)]
    assert counts == {"skipped_equal_rating": 1, "skipped_missing_rating": 1}
    with pytest.raises(DataError, match="not 2"):
        rating_pairs(rows[:3])
