"""Preference-data curation as in Skywork-Reward-V2 (Liu et al., arXiv 2507.01352), end to end.

The model-free steps live in the data layer (:mod:`rmlib.data.curation`: dedup, n-gram decontamination,
the consistency filter on given scores, the retrieval arithmetic and search); this package adds what needs
a layer above it: benchmark prompts read by the evaluation suites (:func:`benchmark_index`), pairs scored by
rmlib reward models (:func:`consistency_filter`) and error-driven retrieval with sentence embeddings
(:func:`retrieve_pairs`). ``rmlib data dedup|decontaminate|overlap|ngram-index|filter|retrieve`` are the
commands; docs/curation.md describes every rule and report.
"""

from rmlib.curation.benchmarks import benchmark_index, benchmark_prompts
from rmlib.curation.embed import Embedder
from rmlib.curation.steps import consistency_filter, retrieve_pairs
from rmlib.data.curation import (
    RULES,
    NgramIndex,
    StepReport,
    decontaminate,
    dedup_pairs,
    overlap_report,
    parse_rule,
    retrieval_k,
)

__all__ = ["RULES", "Embedder", "NgramIndex", "StepReport", "benchmark_index", "benchmark_prompts",
           "consistency_filter", "decontaminate", "dedup_pairs", "overlap_report", "parse_rule", "retrieval_k",
           "retrieve_pairs"]
