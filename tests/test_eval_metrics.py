"""Benchmark metrics on hand-computed cases: pairwise accuracy, RewardBench v1/v2, RM-Bench, best-of-N."""

import math

import numpy as np
import pytest

from rmlib.eval import (
    EXAMPLE_COUNTS,
    SUBSET_MAPPING,
    bon_accuracy_at,
    bon_curve,
    bon_prompt_credit,
    bon_row_score,
    pairwise_accuracy,
    rewardbench2_scores,
    rewardbench_v1_scores,
    rmbench_difficulty,
    rmbench_matrix,
    rmbench_scores,
    ties_score,
)

# allenai/reward-bench `rewardbench/constants.py` (EXAMPLE_COUNTS), typed again from the table (not imported) so a typo in the library cannot hide
SPEC_COUNTS = {
    "Chat": {"alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28,
             "mt-bench-med": 40},
    "Chat Hard": {"mt-bench-hard": 37, "llmbar-natural": 100, "llmbar-adver-neighbor": 134,
                  "llmbar-adver-GPTInst": 92, "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46},
    "Safety": {"refusals-dangerous": 100, "refusals-offensive": 100, "xstest-should-refuse": 154,
               "xstest-should-respond": 250, "donotanswer": 136},
    "Reasoning": {"math-prm": 984, **{f"hep-{x}": 164 for x in ("cpp", "go", "java", "js", "python", "rust")}},
}


# ------------------------------------------------------------------------------------- pairwise
def test_pairwise_accuracy_tie_counts_wrong_and_groups():
    res = pairwise_accuracy([2.0, 1.0, 3.0, 0.5], [1.0, 1.0, 4.0, 0.0], groups=["a", "a", "b", "b"])
    assert res["accuracy"] == 0.5 and res["correct"] == 2 and res["n"] == 4
    assert res["groups"]["a"] == {"accuracy": 0.5, "correct": 1, "n": 2}
    assert res["groups"]["b"] == {"accuracy": 0.5, "correct": 1, "n": 2}
    assert pairwise_accuracy([1.0, 1.0], [1.0, 1.0])["accuracy"] == 0.0  # constant scorer: 0%, not 50%


# ------------------------------------------------------------------------------------- RewardBench v1
def test_constants_match_spec_table():
    assert {s: sorted(v) for s, v in SUBSET_MAPPING.items()} == {s: sorted(v) for s, v in SPEC_COUNTS.items()}
    assert EXAMPLE_COUNTS == {k: v for sec in SPEC_COUNTS.values() for k, v in sec.items()}
    assert sum(SPEC_COUNTS["Chat"].values()) == 358 and sum(SPEC_COUNTS["Reasoning"].values()) == 1968


def test_v1_sections_match_independent_computation_on_random_accuracies():
    rng = np.random.default_rng(42)
    for _ in range(20):
        acc = {s: float(rng.random()) for sec in SPEC_COUNTS.values() for s in sec}
        ours = rewardbench_v1_scores(acc)
        expected = {}
        for sec, counts in SPEC_COUNTS.items():
            expected[sec] = sum(acc[s] * n for s, n in counts.items()) / sum(counts.values())
            assert ours[sec] == pytest.approx(expected[sec], abs=1e-12)
        assert ours["overall"] == pytest.approx(sum(expected.values()) / 4, abs=1e-12)


def test_reasoning_is_half_math_half_mean_code():
    acc = {"math-prm": 0.9, "hep-cpp": 0.2, "hep-go": 0.4, "hep-java": 0.6, "hep-js": 0.8, "hep-python": 1.0,
           "hep-rust": 0.0}
    # ½·0.9 + ½·mean(0.2, 0.4, 0.6, 0.8, 1.0, 0.0) = 0.45 + 0.25 = 0.70
    assert rewardbench_v1_scores(acc)["Reasoning"] == pytest.approx(0.70)


def test_missing_section_scores_zero_and_unknown_subset_raises():
    res = rewardbench_v1_scores({"alpacaeval-easy": 1.0})
    assert res["Chat"] == 1.0 and res["Safety"] == 0.0 and res["overall"] == 0.25
    with pytest.raises(ValueError, match="unknown"):
        rewardbench_v1_scores({"alpaca-easy": 1.0})
    with pytest.raises(ValueError, match="percentage"):
        rewardbench_v1_scores({"alpacaeval-easy": 95.0})


def test_legacy_prior_sets_weighting():
    # ArmoRM worked check (RLHFlow/RLHF-Reward-Modeling, ArmoRM-Llama3-8B-v0.1 README): sections 96.9, 76.8, 92.2, 97.3 and prior sets 74.3 → 88.97
    acc = {"alpacaeval-easy": 0.969, "mt-bench-hard": 0.768, "donotanswer": 0.922, "math-prm": 0.973}
    prior = {"anthropic_helpful": 0.70, "anthropic_hhh": 0.80, "shp": 0.743, "summarize": 0.729}
    res = rewardbench_v1_scores(acc, prior_sets=prior)
    assert res["Prior Sets"] == pytest.approx(0.743)
    assert res["overall_legacy"] == pytest.approx((2 * (0.969 + 0.768 + 0.922 + 0.973) + 0.743) / 9)
    assert round(100 * res["overall_legacy"], 2) == 88.97
    assert res["overall"] == pytest.approx((0.969 + 0.768 + 0.922 + 0.973) / 4)
    # a model without prior-set results gets the plain 4-section mean
    nan_prior = rewardbench_v1_scores(acc, prior_sets={"shp": float("nan")})
    assert nan_prior["overall_legacy"] == pytest.approx(nan_prior["overall"])


# ------------------------------------------------------------------------------------- RewardBench 2
def test_bon_row_score_shared_credit():
    assert bon_row_score([3.0, 1.0, 2.0, 0.0]) == 1.0
    assert bon_row_score([3.0, 3.0, 2.0, 0.0]) == 0.5          # 2-way tie at the top
    assert bon_row_score([3.0, 3.0, 3.0, 0.0]) == pytest.approx(1 / 3)
    assert bon_row_score([1.0, 1.0, 1.0, 1.0]) == 0.25
    assert bon_row_score([1.0, 3.0, 2.0, 0.0]) == 0.0
    assert bon_row_score([0.0, 5.0, 5.0], correct_index=2) == 0.5
    assert bon_row_score([float("nan"), 1.0, 0.0, 0.0]) == 0.0


def test_bon_row_score_matches_upstream_best_of_4_rule():
    # reward-bench reroll_and_score_dataset: 1/k when the chosen (first) shares the max with k − 1 others, else 0
    for k in (1, 2, 3, 4):
        row = [7.0] * k + [1.0] * (4 - k)
        assert bon_row_score(row) == pytest.approx(1 / k)
        assert bon_row_score([0.0] + row[1:]) == 0.0  # chosen below the max: 0 however many share it


def test_ties_composite_hand_example_with_zero_spread():
    # prompt 1: ref correct [5] vs [2, 3] → cim 2; tied correct [5, 5] vs [2, 3] → cim 2, dcm 0
    #   cp: 2 > 0 ✓; hard min(2, 2) = 2 > 0 ✓; margin: dcm = 0 is not > 0 → left out of the margin mean
    # prompt 2: ref [3] vs [3, 1] → cim 0 (not accurate); tied [6, 3] vs [2, 1] → cim 1, dcm 3
    #   cp: 1 > 3 ✗; hard 0 > 3 ✗; margin tanh(0/3 − 1) = tanh(−1)
    # prompt 3: ref [4] vs [4] → cim 0 ✗; tied [4, 4] vs [4] → cim 0 ✗, dcm 0
    #   cp: 0 > 0 ✗; hard ✗; margin: left out (dcm 0)
    ids = ["ref:1", "tied:1", "ref:2", "tied:2", "ref:3", "tied:3"]
    scores = [[5, 2, 3], [5, 5, 2, 3], [3, 3, 1], [6, 3, 2, 1], [4, 4], [4, 4, 4]]
    res = ties_score(ids, scores, [1, 2, 1, 2, 1, 2])
    assert res["ref_accuracy"] == pytest.approx(1 / 3)
    assert res["tied_accuracy"] == pytest.approx(2 / 3)
    assert res["correctness_preferred"] == pytest.approx(1 / 3)
    assert res["correctness_preferred_hard"] == pytest.approx(1 / 3)
    assert res["correctness_margin"] == pytest.approx(math.tanh(-1.0))
    expected = 0.3 * 2 / 3 + 0.3 * 1 / 3 + 0.2 / 3 + 0.2 / 3 + 0.01 * math.tanh(-1.0)
    assert res["score"] == pytest.approx(expected)


def test_ties_single_correct_tied_group_is_left_out_of_cp():
    # prompt 1: ref [4] vs [1] → cim 3 ✓; tied [4, 3] vs [1] → cim 2 ✓, dcm 1: cp 2 > 1 ✓, hard min(3, 2) > 1 ✓,
    #   margin tanh(2/1 − 1) = tanh(1)
    # prompt 2: ref [4] vs [1] ✓; tied with ONE correct answer [4] vs [1] ✓ but dcm undefined → not in cp
    #   (rmlib used to count it as a failure: cp would be ½)
    res = ties_score(["ref:1", "tied:1", "ref:2", "tied:2"], [[4, 1], [4, 3, 1], [4, 1], [4, 1]], [1, 2, 1, 1])
    assert res["ref_accuracy"] == 1.0 and res["tied_accuracy"] == 1.0
    assert res["correctness_preferred"] == 1.0 and res["correctness_preferred_hard"] == 1.0
    assert res["correctness_margin"] == pytest.approx(math.tanh(1.0))
    assert res["n_paired_prompts"] == 2 and res["n_defined_spread"] == 1
    assert res["score"] == pytest.approx(0.3 + 0.3 + 0.2 + 0.2 + 0.01 * math.tanh(1.0))


def test_ties_positive_over_zero_spread_is_not_plus_one():
    # ref [5] vs [1] → cim 4; tied [3, 3] vs [1] → cim 2, dcm 0: cp 2 > 0 ✓, hard 2 > 0 ✓; the margin term
    # needs dcm > 0, so no prompt enters it and it is 0 (numpy's 2/0 → inf → tanh 1 is not upstream's rule)
    res = ties_score(["ref:1", "tied:1"], [[5, 1], [3, 3, 1]], [1, 2])
    assert res["correctness_margin"] == 0.0
    assert res["score"] == pytest.approx(0.3 + 0.3 + 0.2 + 0.2)


def test_ties_without_matching_prompts_scores_zero_terms_and_bad_ids_raise():
    # only a ref group (accurate) and a tied group of another prompt (not accurate: 1 < 2): no common prompt,
    # so cp = cp_hard = margin = 0 (upstream's else branch), not NaN
    res = ties_score(["ref:1", "tied:2"], [[2, 1], [1, 1, 2]], [1, 2])
    assert res["ref_accuracy"] == 1.0 and res["tied_accuracy"] == 0.0
    assert (res["correctness_preferred"], res["correctness_preferred_hard"], res["correctness_margin"]) == (0, 0, 0)
    assert res["score"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="ref:<int>"):
        ties_score(["7"], [[2, 1]], [1])


def test_ties_group_without_incorrect_or_correct_answers():
    # tied group where every answer is correct ([3, 2], num_correct 2): accurate False, cim 0, dcm undefined.
    # ref group with no incorrect answer ([5], num_correct 1): accurate False, cim 0.
    # prompt 1 = ref [5] (no incorrect) + tied [4, 3] vs [1] (cim 2, dcm 1): hard min(0, 2) = 0 > 1 ✗,
    #   cp 2 > 1 ✓, margin tanh(0/1 − 1) = tanh(−1)
    # prompt 2 = ref [4] vs [1] ✓ + tied [3, 2] all correct → dcm undefined: out of cp and margin
    res = ties_score(["ref:1", "tied:1", "ref:2", "tied:2"], [[5], [4, 3, 1], [4, 1], [3, 2]], [1, 2, 1, 2])
    assert res["ref_accuracy"] == 0.5 and res["tied_accuracy"] == 0.5
    assert res["correctness_preferred"] == 1.0 and res["correctness_preferred_hard"] == 0.0
    assert res["correctness_margin"] == pytest.approx(math.tanh(-1.0))
    assert res["score"] == pytest.approx(0.15 + 0.15 + 0.2 + 0.01 * math.tanh(-1.0))


def test_ties_no_defined_spread_gives_nan_like_upstream():
    # one common prompt whose tied group has one correct answer: the cp means run over an empty list (NaN
    # upstream, numpy's mean of []), the margin term is 0
    res = ties_score(["ref:1", "tied:1"], [[2, 1], [2, 1]], [1, 1])
    assert math.isnan(res["correctness_preferred"]) and math.isnan(res["correctness_preferred_hard"])
    assert res["correctness_margin"] == 0.0 and math.isnan(res["score"])


def test_ties_rows_sharing_an_id_are_merged():
    # tied:1 split over two rows: [4 correct | 1 incorrect] and [3 correct | 2 incorrect] pool into one group
    # correct {4, 3}, incorrect {1, 2}: cim 3 − 2 = 1 ✓, dcm 1 → cp 1 > 1 ✗; ref [5] vs [0] → cim 5,
    # hard min(5, 1) = 1 > 1 ✗; margin tanh(1/1 − 1) = 0
    res = ties_score(["ref:1", "tied:1", "tied:1"], [[5, 0], [4, 1], [3, 2]], [1, 1, 1])
    assert res["n_tied"] == 1 and res["tied_accuracy"] == 1.0
    assert res["correctness_preferred"] == 0.0 and res["correctness_preferred_hard"] == 0.0
    assert res["score"] == pytest.approx(0.6)


def test_rewardbench2_overall_is_unweighted_mean_of_subsets():
    rows = [{"subset": "Math", "id": "1", "num_correct": 1, "scores": [2, 1, 1, 1]},
            {"subset": "Math", "id": "2", "num_correct": 1, "scores": [2, 2, 1, 1]},
            {"subset": "Focus", "id": "1", "num_correct": 1, "scores": [0, 1, 1, 1]}]
    res = rewardbench2_scores(rows)
    assert res["subsets"] == {"Math": 0.75, "Focus": 0.0}
    assert res["overall"] == pytest.approx(0.375)  # not the per-row mean 0.5


# ------------------------------------------------------------------------------------- RM-Bench
def test_rmbench_hard_is_upper_triangle():
    m = np.array([[0.1, 0.2, 0.3],
                  [0.4, 0.5, 0.6],
                  [0.7, 0.8, 0.9]])
    d = rmbench_difficulty(m)
    assert d["hard"] == pytest.approx((0.2 + 0.3 + 0.6) / 3)
    assert d["normal"] == pytest.approx((0.1 + 0.5 + 0.9) / 3)
    assert d["easy"] == pytest.approx((0.4 + 0.7 + 0.8) / 3)
    assert d["score"] == pytest.approx(m.mean())


def test_rmbench_matrix_strict_and_safety_pooled_by_example():
    # one example: chosen [2, 4, 6] vs rejected [1, 4, 5] → rows: [1,0,0], [1,0,0], [1,1,1] (4 vs 4 is a tie)
    m = rmbench_matrix(np.array([[2, 4, 6]]), np.array([[1, 4, 5]]))
    assert m.tolist() == [[1, 0, 0], [1, 0, 0], [1, 1, 1]]
    c = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 1]], dtype=float)
    r = np.array([[0, 0, 0], [2, 2, 2], [2, 2, 2]], dtype=float)
    res = rmbench_scores(c, r, ["safety-refuse", "safety-response", "safety-response"])
    assert set(res["domains"]) == {"safety"}
    assert res["domains"]["safety"]["score"] == pytest.approx(1 / 3)  # 1 of 3 pooled examples, not mean(1, 0)
    with pytest.raises(ValueError, match="domain"):
        rmbench_scores(c[:1], r[:1], ["poetry"])


# ------------------------------------------------------------------------------------- best-of-N
def test_bon_credit_tie_rules():
    assert bon_prompt_credit([1, 3, 2], 3, gold_scores=[0, 1, 0]) == 1.0
    assert bon_prompt_credit([3, 3, 2], 3, gold_scores=[0, 1, 0]) == 0.5         # RM tie: shared credit
    assert bon_prompt_credit([3, 3, 3], 3, gold_scores=[0, 1, 0]) == pytest.approx(1 / 3)
    assert bon_prompt_credit([3, 1, 2], 3, gold_scores=[1, 1, 0]) == 1.0         # gold tie: either counts
    assert bon_prompt_credit([1, 3, 2], 2, gold_scores=[5, 0, 9]) == 0.0         # only the first 2 count
    assert bon_prompt_credit([1, 3], 3, gold_scores=[0, 1]) is None              # too few candidates
    assert bon_prompt_credit([1, 3, 2], 2, best_index=2) is None                 # best not among first 2
    assert bon_prompt_credit([1, 3, 2], 3, best_index=1) == 1.0


def test_bon_curve_averages_over_prompts_that_count():
    scores = [[1, 3, 2, 5], [4, 4, 1, 2]]
    gold = [[0.1, 0.9, 0.5, 0.2], [0.2, 0.8, 0.1, 0.3]]
    curve = bon_curve(scores, gold_scores=gold)
    assert [p["accuracy"] for p in curve] == pytest.approx([1.0, 0.75, 0.75, 0.25])
    at4 = bon_accuracy_at(scores, 4, gold_scores=gold)
    assert at4["gold_of_pick"] == pytest.approx((0.2 + 0.5) / 2)
