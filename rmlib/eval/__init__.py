"""Evaluation: pure metric functions of scores, benchmark suites, reports and plots.

Scoring a dataset with a model is one step (:func:`score_items`: ``model.score`` or a ``score_fn``
callable); everything else turns score arrays into tables, confidence intervals and plots without touching
a model. Each benchmark suite is one :class:`Suite` object in a registry (:func:`register_suite`,
:func:`get_suite`, :func:`list_suites`). Importing this package loads only numpy and the standard library
(no torch, transformers, datasets or matplotlib).
"""

from rmlib.eval.pairwise import pair_results, pairwise_accuracy
from rmlib.eval.registry import (
    Record,
    Scores,
    Suite,
    SuiteData,
    get_suite,
    list_suites,
    make_options,
    register_suite,
    unregister_suite,
)
from rmlib.eval.report import Report, compare_reports
from rmlib.eval.runner import (
    combine_heads,
    evaluate,
    load_scores,
    load_suite,
    model_outputs,
    model_scores,
    run_suite,
    save_scores,
    score_items,
)
from rmlib.eval.stats import agreement_test, bonferroni, logistic_regression, wilson_interval
from rmlib.eval.suites import (
    AgreementOptions,
    BonOptions,
    DivergenceOptions,
    NoOptions,
    PairsOptions,
    PPEOptions,
    RewardBenchOptions,
)
from rmlib.eval.suites.agreement import (
    DEFAULT_REFUSAL_LEXICON,
    DEFAULT_SAFETY_KEYWORDS,
    agreement_audit,
    agreement_stats,
    agreement_table,
    is_refusal,
    keyword_groups,
    length_matched_mask,
    length_regression,
    one_sided_refusal_mask,
    refusal_side_rate,
    word_count,
)
from rmlib.eval.suites.bon import bon_accuracy_at, bon_curve, bon_prompt_credit, is_correctness
from rmlib.eval.suites.divergence import (
    DIVERGENCE_CLASSES,
    IDENTIFICATION_NEGATIVES,
    MULTIPREF_VOTES,
    auroc,
    calibration,
    classify_votes,
    divergence_identification,
    divergence_table,
    is_substantial,
    multipref_vote,
    observed_fraction,
    pair_preference,
    preferred_side,
    rating_difference_votes,
)
from rmlib.eval.suites.judgebench import JUDGEBENCH_CATEGORIES, judgebench_pair_net, judgebench_scores
from rmlib.eval.suites.ppe import ppe_best_of_k, ppe_preference_accuracy
from rmlib.eval.suites.rewardbench import (
    EXAMPLE_COUNTS,
    PRIOR_SETS,
    SECTIONS,
    SUBSET_MAPPING,
    rewardbench_v1_scores,
    rewardbench_v1_subset_accuracy,
)
from rmlib.eval.suites.rewardbench2 import (
    REWARDBENCH2_SUBSETS,
    bon_row_score,
    rewardbench2_scores,
    ties_score,
)
from rmlib.eval.suites.rmb import rmb_scores
from rmlib.eval.suites.rmbench import RMBENCH_DOMAINS, rmbench_difficulty, rmbench_matrix, rmbench_scores

__all__ = [
    "JUDGEBENCH_CATEGORIES", "PPEOptions", "is_correctness", "judgebench_pair_net", "judgebench_scores",
    "ppe_best_of_k", "ppe_preference_accuracy", "preferred_side", "rating_difference_votes", "refusal_side_rate",
    "rmb_scores",
    "DEFAULT_REFUSAL_LEXICON", "DEFAULT_SAFETY_KEYWORDS", "EXAMPLE_COUNTS", "PRIOR_SETS", "REWARDBENCH2_SUBSETS",
    "SUBSET_MAPPING", "AgreementOptions", "BonOptions", "DivergenceOptions", "NoOptions", "PairsOptions",
    "Record", "Report", "RewardBenchOptions", "Scores", "Suite", "SuiteData",
    "agreement_audit", "agreement_stats", "agreement_table", "agreement_test", "bon_accuracy_at", "bon_curve",
    "bon_prompt_credit", "bon_row_score", "bonferroni", "classify_votes", "combine_heads", "divergence_table",
    "evaluate", "get_suite", "is_refusal", "is_substantial", "keyword_groups", "length_matched_mask", "length_regression",
    "list_suites", "load_scores", "load_suite", "logistic_regression", "make_options", "model_scores", "multipref_vote", "one_sided_refusal_mask",
    "pair_results", "pairwise_accuracy", "register_suite", "rewardbench2_scores", "rewardbench_v1_scores",
    "rewardbench_v1_subset_accuracy", "rmbench_difficulty", "rmbench_matrix", "rmbench_scores", "run_suite",
    "save_scores", "score_items", "ties_score", "unregister_suite", "wilson_interval", "word_count",
    # distributional reward models: do they know when annotators split?
    "auroc", "calibration", "compare_reports", "divergence_identification", "model_outputs", "pair_preference",
    # the constants the per-benchmark modules held before they moved into rmlib.eval.suites
    "DIVERGENCE_CLASSES", "IDENTIFICATION_NEGATIVES", "MULTIPREF_VOTES", "RMBENCH_DOMAINS", "SECTIONS",
    "observed_fraction",
]
