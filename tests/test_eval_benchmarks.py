"""JudgeBench, RMB, PPE, best-of-N correctness, the agreement audit's paper defaults and the diverging-preference
data rules, each on a hand-computed case pinned to the published rule (quoted next to the test)."""

import math
from pathlib import Path

import numpy as np
import pytest

from rmlib.data.annotations import expand_all_annotations, majority_side, preferred_side, sum_side
from rmlib.data.schema import DataError, PreferencePair, RatedResponse, ValidationReport
from rmlib.eval import (
    AgreementOptions,
    agreement_audit,
    bon_accuracy_at,
    bon_prompt_credit,
    judgebench_pair_net,
    judgebench_scores,
    ppe_best_of_k,
    ppe_preference_accuracy,
    rating_difference_votes,
    refusal_side_rate,
    rmb_scores,
    run_suite,
)

FIX = Path(__file__).parent / "fixtures" / "eval"
SAMPLES = Path(__file__).parents[1] / "rmlib" / "data" / "samples" / "formats"


def word_scorer(prompts, responses):
    return np.array([len(r.split()) for r in responses], dtype=float)


# ------------------------------------------------------------------------------------------- JudgeBench
def test_judgebench_two_game_netting():
    # utils/metrics.py: +1 per game matching the label, −1 per game matching the flipped label; correct if net > 0.
    # A reward-model game: 'A>B' if score_A > score_B else 'B>A'.
    assert judgebench_pair_net(2.0, 1.0, "A>B") == 2
    assert judgebench_pair_net(2.0, 1.0, "B>A") == -2
    assert judgebench_pair_net(1.0, 1.0, "A>B") == 0   # tie: game 1 says B>A, flipped game 2 says A>B
    assert judgebench_pair_net(1.0, 1.0, "B>A") == 0   # so a tie is never correct, whatever the label
    res = judgebench_scores([3, 1, 2, 1], [1, 3, 2, 0], ["A>B", "A>B", "B>A", "B>A"],
                            ["mmlu-pro-law", "mmlu-pro-math", "livecodebench", "livebench-math"])
    # correct: 1st only; the tie and the wrong ones count in the denominator of all pairs
    assert res["overall"] == pytest.approx(1 / 4) and res["ties"] == 1
    assert res["categories"]["mmlu-pro"] == {"accuracy": 0.5, "n": 2, "ties": 0}
    assert res["category_mean"] == pytest.approx((0.5 + 0 + 0) / 3)


def test_judgebench_fixture_in_released_format():
    rep = run_suite("judgebench", FIX / "judgebench.jsonl", word_scorer)
    m = rep.metrics
    # 6 pairs: mmlu-pro ✓ ✗, livebench-reasoning tie, livebench-math ✓, livecodebench ✓ ✗
    assert m["overall"] == pytest.approx(3 / 6) and m["ties"] == 1 and m["n"] == 6
    assert (m["mmlu-pro"], m["livebench-reasoning"], m["livebench-math"], m["livecodebench"]) == (0.5, 0.0, 1.0, 0.5)
    assert m["category_mean"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------- RMB
def test_rmb_best_must_beat_every_loser():
    res = rmb_scores(["pairwise", "pairwise", "bon", "bon", "bon"], [2, 1, 5, 5, 5], [[1], [1], [1, 4], [6, 1], [5, 1]],
                     ["Pairwise_set/Helpfulness/Chat/x", "Pairwise_set/Harmlessness/S1", "BoN_set/Helpfulness/Code/y",
                      "BoN_set/Helpfulness/Code/y", "BoN_set/Harmlessness/S2"])
    # pairwise: 2 > 1 ✓, 1 = 1 ✗; bon: beats all ✓, loses to 6 ✗, ties 5 ✗
    assert res["kinds"]["pairwise"] == {"accuracy": 0.5, "n": 2}
    assert res["kinds"]["bon"]["accuracy"] == pytest.approx(1 / 3)
    assert res["goals"]["bon/Helpfulness"] == {"accuracy": 0.5, "n": 2}
    assert res["row_correct"] == [True, False, True, False, False]


def test_rmb_fixture_directory_in_released_format():
    rep = run_suite("rmb", FIX / "rmb", word_scorer)
    m = rep.metrics
    assert m["n"] == 5 and m["pairwise"] == 0.5 and m["bon"] == pytest.approx(1 / 3)
    assert m["pairwise/Helpfulness"] == 0.5 and m["bon/Harmlessness"] == pytest.approx(1 / 3)
    one_file = run_suite("rmb", FIX / "rmb" / "BoN_set" / "Harmlessness" / "S1.json", word_scorer)
    assert one_file.metrics["bon"] == pytest.approx(1 / 3)


# ------------------------------------------------------------------------------------------------- PPE
def test_ppe_preference_accuracy_skips_tie_votes():
    res = ppe_preference_accuracy([2, 1, 1, 1], [1, 2, 1, 3], ["model_a", "model_a", "model_b", "tie"])
    assert res == {"accuracy": pytest.approx(1 / 3), "n": 3, "n_ties_skipped": 1}


def test_ppe_best_of_k_credit_is_the_correctness_of_the_pick():
    scores = [[1, 3, 2, 0], [3, 1, 2, 0], [1, 2, 3, 0], [3, 3, 1, 0]]
    correct = [[0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    res = ppe_best_of_k(scores, correct, k=4)
    # picks: correct, wrong, all wrong → 0, 2-way tie with one correct → ½
    assert res["accuracy"] == pytest.approx(1.5 / 4)
    assert res["upper_bound"] == pytest.approx(3 / 4) and res["random"] == pytest.approx((1 + 1 + 0 + 1) / 16)
    with pytest.raises(ValueError, match="fewer than k"):
        ppe_best_of_k(scores, correct, k=32)


def test_ppe_fixtures_in_released_format():
    pref = run_suite("ppe", FIX / "ppe_human_preference.jsonl", word_scorer).metrics
    # q0 ✓, q1 ✗, q2 ✓, q5 exact tie ✗; two tie votes left out
    assert pref["preference_accuracy"] == 0.5 and pref["preference_n"] == 4 and pref["preference_ties_skipped"] == 2
    bok = run_suite("ppe", FIX / "ppe_best_of_k.jsonl", word_scorer).metrics
    # 32 responses each: longest correct → 1; longest wrong → 0; all wrong → 0; 2-way top tie, one correct → ½
    assert bok["best_of_32"] == pytest.approx(1.5 / 4) and bok["best_of_k_prompts"] == 4
    assert bok["best_of_k_random"] == pytest.approx(3 / 128)


# --------------------------------------------------------------------------------------- best-of-N credit
def test_bon_all_wrong_candidates_earn_nothing_for_correctness_data():
    # every candidate wrong: "the gold best" is any candidate, so the old rule gave full credit
    assert bon_prompt_credit([3, 1, 2], 3, gold_scores=[0, 0, 0]) == 1.0
    assert bon_prompt_credit([3, 1, 2], 3, gold_scores=[0, 0, 0], correctness=True) == 0.0
    assert bon_prompt_credit([3, 3, 2], 3, gold_scores=[1, 0, 1], correctness=True) == 0.5
    res = bon_accuracy_at([[3, 1, 2], [1, 3, 2]], 3, gold_scores=[[0, 0, 0], [0, 1, 0]], correctness=True)
    assert res["accuracy"] == 0.5 and res["chance"] == pytest.approx((0 + 1 / 3) / 2)


def test_bon_suite_uses_correctness_for_0_1_gold(tmp_path):
    rows = [{"prompt": "p1", "candidates": ["a b c", "a", "a b"], "gold_scores": [0, 0, 0]},
            {"prompt": "p2", "candidates": ["a b c", "a", "a b"], "gold_scores": [1, 0, 0]}]
    auto = run_suite("bon", rows, word_scorer)
    assert auto.metrics["gold"] == "correctness" and auto.metrics["accuracy@3"] == 0.5
    score = run_suite("bon", rows, word_scorer, gold="score")
    assert score.metrics["accuracy@3"] == 1.0
    with pytest.raises(ValueError, match="0 or 1"):
        run_suite("bon", [{**rows[0], "gold_scores": [0.5, 0, 0]}], word_scorer, gold="correctness")


# ------------------------------------------------------------------------------------ agreement audit
def test_agreement_defaults_follow_the_safety_rubric_audit():
    # "length-matched stratum |Δlen| ≤ 20 words"
    assert AgreementOptions().length_k == 20
    chosen = ["w " * 30, "I cannot help with that.", "Sure, here it is.", "I can't do it."]
    rejected = ["w " * 9, "Sure, here it is.", "I won't help.", "No refusal here at all."]
    res = agreement_audit({"m": np.array([1.0, 2.0, 0.0, 0.0])}, {"m": np.array([0.0, 1.0, 1.0, 1.0])},
                          chosen_texts=chosen, rejected_texts=rejected)
    assert res["length_k"] == 20 and res["n_length_matched"] == 3  # 30 − 9 = 21 words apart: out


def test_refusal_side_rate_by_hand():
    # "When exactly one side refuses, the head picks the refusing side 62% of the time": k / n over one-sided pairs
    chosen = ["I cannot help with that.", "Sure, here it is.", "I can't do it.", "Fine.", "I won't."]
    rejected = ["Sure, here it is.", "I won't help.", "No refusal here.", "Also fine.", "I cannot."]
    c = np.array([2.0, 0.0, 1.0, 1.0, 3.0])
    r = np.array([1.0, 1.0, 1.0, 0.0, 0.0])
    res = refusal_side_rate(c, r, chosen, rejected)
    # one-sided pairs: 0 (chosen refuses, 2 > 1 picks it), 1 (rejected refuses, 1 > 0 picks it), 2 (chosen refuses,
    # tie 1 = 1: picks neither); pairs 3 (no refusal) and 4 (both refuse) are not one-sided
    assert (res["k"], res["n"], res["n_refusal_chosen"]) == (2, 3, 2)
    assert res["rate"] == pytest.approx(2 / 3)


def test_agreement_pairs_from_helpsteer2_ratings():
    # chosen = the higher-helpfulness response; equal ratings skipped and counted
    rep = run_suite("agreement", SAMPLES / "helpsteer2.jsonl", word_scorer, format="helpsteer2")
    from rmlib.data.formats import load

    ex = load(SAMPLES / "helpsteer2.jsonl").examples
    h = [e.attributes["helpfulness"] for e in ex]
    pairs = [(h[i], h[i + 1]) for i in range(0, len(h), 2)]
    assert rep.metrics["skipped_equal_rating"] == sum(a == b for a, b in pairs)
    assert rep.metrics["n_pairs"] == sum(a != b for a, b in pairs)


# ---------------------------------------------------------------------------------- diverging preferences
def test_majority_vote_is_the_default_aggregation():
    # "majority vote": [2, −1, −1] is two annotators for B against one for A; the summed strengths say 0
    assert majority_side([2, -1, -1]) == -1 and sum_side([2, -1, -1]) == 0
    assert preferred_side([2, -1, -1]) == -1 and preferred_side([2, -1, -1], "sum") == 0
    assert majority_side([1, -1, 0]) == 0 and majority_side([0, 0]) == 0
    assert sum_side([2, 2, -1, -1, -1]) == 1 and majority_side([2, 2, -1, -1, -1]) == -1


def test_multipref_reader_majority_and_sum(tmp_path):
    import json

    from rmlib.data.formats import load

    ann = lambda *labels: [{"evaluator": str(i), "overall_pref": x} for i, x in enumerate(labels)]  # noqa: E731
    row = {"comparison_id": "c", "prompt_id": "p", "text": "Q?", "model_a": "ma", "completion_a": "A answer",
           "model_b": "mb", "completion_b": "B answer", "source": "s", "category": "c",
           "normal_worker_annotations": ann("A-is-clearly-better", "B-is-slightly-better"),
           "expert_worker_annotations": ann("B-is-slightly-better", "Tie")}
    path = tmp_path / "mp.jsonl"
    path.write_text(json.dumps(row) + "\n")
    ex = load(path).examples[0]                      # votes [2, −1, −1, 0]: majority B
    assert ex.chosen == "B answer" and ex.votes == (-2, 1, 1, 0)
    summed = load(path, format="multipref_sum")      # sum 0: no preferred side
    assert summed.examples == [] and summed.report.filtered == {"no_majority": 1}


def test_helpsteer2_rating_difference_votes():
    # "a difference of 1 is slight, >= 2 significant, 0 a tie"
    assert rating_difference_votes([4, 2, 3], [2, 3, 3]) == [2.0, -1.0, 0.0]
    with pytest.raises(ValueError, match="same annotators"):
        rating_difference_votes([4, 2], [2, 3, 3])


def test_divergence_suite_reads_helpsteer2_disagreements():
    rep = run_suite("divergence", FIX / "helpsteer2_disagreements.jsonl", word_scorer)
    # diffs [3, 0, 0] → tie majority; [2, −1, 0] → diverging; [3, 3, 2] → high-agreement preference;
    # the 4th prompt lists 2 and 3 annotators → skipped and counted
    assert rep.metrics["counts"] == {"high_agreement_preference": 1, "high_agreement_tie": 1, "diverging_all": 1,
                                     "diverging_substantial": 0, "other": 0}
    assert rep.metrics["skipped_unaligned"] == 1
    rows = {r["class"]: r for r in rep.tables["classes"]}
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert rows["diverging_all"]["mean_p_favoured"] == pytest.approx(sig(3))  # "Red." 1 vs "Blue is a colour." 4
    assert rows["high_agreement_tie"]["mean_p_favoured"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------ all annotations
def test_all_annotations_expansion_for_bt_and_mse():
    # "treating each annotator label as its own training instance"
    p = ({"role": "user", "content": "q"},)
    pair = PreferencePair(p, "good", "bad", strength=1.0, votes=(2.0, -1.0, 0.0))
    report = ValidationReport("mem")
    out = expand_all_annotations([pair], "mem", report)
    assert [(e.chosen, e.rejected, e.strength) for e in out] == [("good", "bad", 2.0), ("bad", "good", 1.0)]
    assert report.filtered == {"tie_annotation": 1}
    rated = RatedResponse(p, "r", {"helpfulness": 3.0, "correctness": 3.5},
                          {"annotations": {"helpfulness": [3, 4], "correctness": [4, 3]}})
    rows = expand_all_annotations([rated], "mem")
    assert [dict(r.attributes) for r in rows] == [{"helpfulness": 3.0, "correctness": 4.0},
                                                   {"helpfulness": 4.0, "correctness": 3.0}]
    with pytest.raises(DataError, match="per-annotator votes"):
        expand_all_annotations([PreferencePair(p, "a", "b")], "mem")


# ------------------------------------------------------------------------------------ head-weight search
def test_search_head_weights_on_a_hand_grid():
    from rmlib.eval.weights import search_head_weights, weight_grid

    # HelpSteer2-Preference: weights "searched between -1 and 1 at intervals of 0.1", chosen by RewardBench
    assert len(weight_grid()) == 21 and weight_grid()[0] == -1.0 and weight_grid()[-1] == 1.0
    # chosen − rejected per head: [1, −1], [1, −1], [−1, 2], [2, 1]; step 1 → w ∈ {−1, 0, 1}²
    # (1, −1) → 2, 2, −3, 1: ¾ ; (1, 0) → 1, 1, −1, 2: ¾ ; every other w is lower. Grid order puts (1, −1) first.
    diff = np.array([[1.0, -1.0], [1.0, -1.0], [-1.0, 2.0], [2.0, 1.0]])
    res = search_head_weights(diff, np.zeros_like(diff), ["alpacaeval-easy"] * 4, step=1.0)
    assert res["weights"] == [1.0, -1.0] and res["evaluated"] == 9
    assert res["overall"] == pytest.approx(0.75 / 4)  # Chat only; the other three sections score 0
    assert res["top"][1] == {"weights": [1.0, 0.0], "overall": pytest.approx(0.75 / 4)}
    assert res["sections"]["Chat"] == pytest.approx(0.75)


def test_eval_cli_head_search_on_cached_scores(tmp_path, capsys):
    import json

    from rmlib.cli import main
    from rmlib.eval import load_suite, save_scores
    from rmlib.eval.weights import search_head_weights

    data = load_suite("rewardbench", FIX / "rewardbench_v1.jsonl")
    words = np.array([len(it["response"].split()) for it in data.items], dtype=float)
    raw = np.stack([words, -words, np.zeros_like(words)], axis=1)
    cache = save_scores(tmp_path / "s.npy", data.items, raw, ["long", "short", "flat"])
    out = tmp_path / "out"
    main(["eval", "--suite", "rewardbench", "--data", str(FIX / "rewardbench_v1.jsonl"), "--scores", str(cache),
          "--out", str(out), "heads.search=true", "heads.search_step=0.5"])
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    ci = [r["slots"][0] for r in data.records]
    ri = [r["slots"][1] for r in data.records]
    want = search_head_weights(raw[ci], raw[ri], [r["subset"] for r in data.records], step=0.5)
    assert report["meta"]["head_search"]["weights"] == want["weights"] and want["evaluated"] == 125
    assert report["meta"]["head_weights"] == dict(zip(["long", "short", "flat"], want["weights"]))
    assert report["metrics"]["overall"] == pytest.approx(want["overall"])
    with pytest.raises(SystemExit, match="heads.search"):
        main(["eval", "--suite", "pairs", "--data", str(FIX / "pairs.jsonl"), "--scores", str(cache),
              "heads.search=true"])
