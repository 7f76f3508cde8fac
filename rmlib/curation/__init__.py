"""Preference-data curation as in Skywork-Reward-V2 (Liu et al., arXiv 2507.01352), end to end, in two layers.

:mod:`rmlib.curation.rules` is the model-free half (dedup, n-gram decontamination, the consistency filter
on rewards already computed, the retrieval arithmetic and search); the modules directly in this package are
the half that loads models or reads benchmarks: benchmark prompts read by the evaluation suites
(:func:`benchmark_index`), pairs scored by rmlib reward models and then filtered (:func:`score_and_filter`)
and error-driven retrieval with sentence embeddings (:func:`retrieve_pairs`). They import ``rules``, never
the reverse. LLM annotation over OpenAI-compatible servers (:func:`annotate_pairs`) and the human gold-set
round trip (:func:`review_sample`, :func:`review_import`) complete Skywork-Reward-V2's loop.
``rmlib data dedup|decontaminate|overlap|ngram-index|filter|retrieve|annotate|review`` are the commands;
docs/curation.md describes every rule and report.
"""

from rmlib.curation.annotate import annotate_pairs
from rmlib.curation.benchmarks import benchmark_index, benchmark_prompts
from rmlib.curation.embed import Embedder
from rmlib.curation.review import review_import, review_sample
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

__all__ = ["RULES", "Embedder", "NgramIndex", "StepReport", "annotate_pairs", "benchmark_index", "benchmark_prompts",
           "decontaminate", "dedup_pairs", "filter_on_scores", "overlap_report", "parse_rule", "retrieval_k",
           "retrieve_pairs", "review_import", "review_sample", "score_and_filter"]
