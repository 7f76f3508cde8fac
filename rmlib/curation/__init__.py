"""Preference-data curation as in Skywork-Reward-V2 (Liu et al., arXiv 2507.01352), end to end, in two layers.

:mod:`rmlib.curation.rules` is the model-free half (dedup, n-gram decontamination, the consistency filter
on rewards already computed, the retrieval arithmetic and search); the modules directly in this package are
the half that loads models or reads benchmarks: benchmark prompts read by the evaluation suites
(:func:`benchmark_index`), pairs scored by rmlib reward models and then filtered (:func:`score_and_filter`)
and error-driven retrieval with sentence embeddings (:func:`retrieve_pairs`). They import ``rules``, never
the reverse. ``rmlib data dedup|decontaminate|overlap|ngram-index|filter|retrieve`` are the commands;
docs/curation.md describes every rule and report.
"""

from rmlib.curation.benchmarks import benchmark_index, benchmark_prompts
from rmlib.curation.embed import Embedder
from rmlib.curation.rules import (
    RULES,
    NgramIndex,
    StepReport,
    decontaminate,
    dedup_pairs,
    filter_on_scores,
    overlap_report,
    parse_rule,
    retrieval_k,
)
from rmlib.curation.steps import retrieve_pairs, score_and_filter

__all__ = ["RULES", "Embedder", "NgramIndex", "StepReport", "benchmark_index", "benchmark_prompts",
           "decontaminate", "dedup_pairs", "filter_on_scores", "overlap_report", "parse_rule", "retrieval_k",
           "retrieve_pairs", "score_and_filter"]
