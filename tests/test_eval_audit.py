"""Agreement audit (table, confound filters) and diverging-preference classes on hand-made inputs."""

import math

import numpy as np
import pytest

from rmlib.eval import (
    agreement_audit,
    agreement_stats,
    agreement_table,
    classify_votes,
    divergence_table,
    is_refusal,
    is_substantial,
    keyword_groups,
    length_matched_mask,
    length_regression,
    one_sided_refusal_mask,
    wilson_interval,
)


def test_agreement_stats_counts_ties_as_disagreement():
    s = agreement_stats(np.array([2.0, 1.0, 1.0, 3.0]), np.array([1.0, 1.0, 2.0, 0.0]))
    assert (s["k"], s["n"], s["agreement"]) == (2, 4, 0.5)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx(wilson_interval(2, 4))
    assert s["z"] == 0.0 and s["p"] == pytest.approx(1.0)


def test_agreement_table_sorted_and_bonferroni_over_scorers():
    c = {"weak": np.array([1.0] * 6 + [0.0] * 4), "strong": np.array([1.0] * 9 + [0.0])}
    r = {"weak": np.zeros(10), "strong": np.zeros(10)}
    rows = agreement_table(c, r)
    assert [row["scorer"] for row in rows] == ["strong", "weak"]
    for row in rows:
        assert row["p_bonferroni"] == pytest.approx(min(1.0, 2 * row["p"]))
    empty = agreement_table(c, r, mask=np.zeros(10, dtype=bool))
    assert all(row["n"] == 0 and math.isnan(row["agreement"]) for row in empty)


def test_refusal_lexicon_and_keyword_groups():
    assert is_refusal("I’m sorry, but I can’t help with that.")  # curly apostrophes
    assert is_refusal("As an AI, I cannot do that.")
    assert not is_refusal("Sure! Here is how to bake bread.")
    assert not is_refusal("x " * 200 + "I cannot stress this enough.")  # beyond the opening window
    assert is_refusal("Nope, not doing it.", lexicon=["nope"])          # the lexicon is replaceable
    assert keyword_groups(["How to kill a process?", "Bake bread", "KILLING time"]) == ["safety", "benign", "safety"]
    assert keyword_groups(["Bake bread"], keywords=["bread"]) == ["safety"]
    assert keyword_groups(["skill"], keywords=["kill"]) == ["benign"]  # matched at word starts only


def test_length_and_refusal_filters():
    chosen = ["one two three", "I cannot help with that.", "a b", "short"]
    rejected = ["one", "Here is the recipe you asked for.", "I won't.", "this one has many more words in it"]
    assert length_matched_mask(chosen, rejected, 2).tolist() == [True, True, True, False]
    # pair 2: only the chosen side refuses; pair 3: only the rejected side; others none
    assert one_sided_refusal_mask(chosen, rejected).tolist() == [False, True, True, False]
    audit = agreement_audit({"m": np.array([3.0, 1.0, 0.0, 1.0])}, {"m": np.array([1.0, 2.0, 1.0, 0.0])},
                            chosen_texts=chosen, rejected_texts=rejected, length_k=2)
    assert audit["table"][0]["k"] == 2 and audit["table"][0]["n"] == 4
    assert (audit["length_matched"][0]["k"], audit["length_matched"][0]["n"]) == (1, 3)
    assert (audit["no_one_sided_refusal"][0]["k"], audit["no_one_sided_refusal"][0]["n"]) == (2, 2)
    assert (audit["length_matched_no_refusal"][0]["k"], audit["length_matched_no_refusal"][0]["n"]) == (1, 1)


def test_length_regression_matches_statsmodels():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(3)
    n = 200
    lens_c = rng.integers(5, 80, size=n)
    lens_r = rng.integers(5, 80, size=n)
    chosen = ["w " * k for k in lens_c]
    rejected = ["w " * k for k in lens_r]
    dx = (lens_c - lens_r).astype(float)
    sc = rng.normal(size=n) + 0.03 * dx
    sr = np.zeros(n)
    res = length_regression(sc, sr, chosen, rejected)
    y = (~(sc > sr)).astype(float)
    ref = sm.Logit(y, sm.add_constant(dx)).fit(disp=0)
    assert res["slope"] == pytest.approx(ref.params[1], rel=1e-6)
    assert res["slope_se"] == pytest.approx(ref.bse[1], rel=1e-5)
    assert res["slope_p"] == pytest.approx(ref.pvalues[1], rel=1e-4)
    assert res["slope"] < 0  # prefers rejected less when chosen is longer


def test_divergence_classes_follow_the_paper():
    # Diverging Preferences (arXiv 2410.14632): "all instances where annotators disagreed on which response was
    # preferred, ignoring instances where annotators only had slight preferences"
    assert classify_votes([2, -1, 1]) == "diverging"              # a significant vote and disagreement
    assert classify_votes([1, -1, 0, 0]) == "other"               # slight-only disagreement: leftover class
    assert classify_votes([1, -1, 1, 1]) == "other"               # the majority was rejected, but only slightly
    assert classify_votes([1, -1, 0]) == "other"
    # "the majority of annotators labeled the instance as a tie"
    assert classify_votes([0, 0, 0, 1]) == "high_agreement_tie"
    assert classify_votes([1, -1, 0, 0, 0]) == "high_agreement_tie"
    # "no annotators rejected the majority's chosen response"
    assert classify_votes([2, 1, 2, 0]) == "high_agreement_preference"
    assert classify_votes([-2, -2, -1]) == "high_agreement_preference"
    assert classify_votes([0, 0, 1, 2]) == "high_agreement_preference"  # majority side A (ties abstain), no B vote
    # precedence: diverging before the tie majority
    assert classify_votes([2, -1, 0, 0, 0]) == "diverging"
    assert classify_votes([2, -1, 0, 0, 0], strong=3) == "high_agreement_tie"
    # "annotators significantly preferred both responses"
    assert not is_substantial([2, -1, 0, 0])                      # strong on one side only
    assert is_substantial([2, -2, -1, 0])


def test_divergence_table_favouring_metric_is_the_models_own_pick():
    # "computing P(C > R) where C and R are the reward model's chosen and rejected responses" → σ(|r_a − r_b|)
    votes = [[2, 1, 2, 0], [0, 0, 0, 1], [1, -1, 1, 0], [2, -2, -1, 0], [-2, -2, -1, -2]]
    a = np.array([5.0, 4.0, 3.0, 2.0, 2.0])
    b = np.array([3.0, 4.5, 4.0, 5.0, 3.0])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    res = divergence_table(votes, a, b)
    rows = {r["class"]: r for r in res["rows"]}
    assert res["counts"] == {"high_agreement_preference": 2, "high_agreement_tie": 1, "diverging_all": 1,
                             "diverging_substantial": 1, "other": 1}
    assert rows["high_agreement_preference"]["mean_p_favoured"] == pytest.approx((sig(2) + sig(1)) / 2)
    # the tie pair: the model favours B by 0.5, so σ(0.5), not 0.5 by construction
    assert rows["high_agreement_tie"]["mean_p_favoured"] == pytest.approx(sig(0.5))
    # the diverging pair: the model favours B by 3; the majority (B, 2 votes to 1) agrees → same value
    assert rows["diverging_all"]["mean_p_favoured"] == pytest.approx(sig(3))
    assert rows["diverging_all"]["mean_p_majority"] == pytest.approx(sig(3))
    # the leftover pair [1, −1, 1, 0]: the model favours B by 1, against the majority A
    assert rows["other"]["mean_p_favoured"] == pytest.approx(sig(1))
    assert rows["other"]["mean_p_majority"] == pytest.approx(sig(-1))
    assert rows["diverging_substantial"]["mean_abs_diff"] == pytest.approx(3.0)
    reg = divergence_table(votes, a, b, model_type="regression")
    assert {r["class"]: r["metric"] for r in reg["rows"]}["diverging_all"] == pytest.approx(3.0)
    assert {r["class"]: r["metric"] for r in reg["rows"]}["high_agreement_tie"] == pytest.approx(0.5)
