"""Preference-data curation steps that need no model (Skywork-Reward-V2, arXiv 2507.01352).

Each step reads a pairs dataset, writes a new directory (``data.jsonl`` + ``report.json`` + step outputs)
and never modifies its input: exact dedup (:func:`dedup_pairs`), n-gram decontamination
(:func:`decontaminate`, :func:`overlap_report`, :class:`NgramIndex`), the reward-model consistency filter on
given scores (:func:`consistency_filter`), and the retrieval arithmetic and search (:func:`retrieval_k`,
:func:`select_batch`). The steps that run models (scoring pairs, embedding, reading benchmark files through
the evaluation suites) are in :mod:`rmlib.curation`, a layer above. See docs/curation.md.
"""

from rmlib.data.curation.consistency import (
           RULES,
           consistency_filter,
           parse_rule,
           read_judge_file,
           read_score_file,
)
from rmlib.data.curation.dedup import dedup_masks, dedup_pairs
from rmlib.data.curation.ngrams import (
           NgramIndex,
           decontaminate,
           ngram_hashes,
           normalize_words,
           overlap_report,
)
from rmlib.data.curation.retrieval import retrieval_k, search, select_batch
from rmlib.data.curation.table import StepReport, read_pairs

__all__ = ["RULES", "NgramIndex", "StepReport", "consistency_filter", "decontaminate", "dedup_masks", "dedup_pairs",
           "ngram_hashes", "normalize_words", "overlap_report", "parse_rule", "read_judge_file", "read_pairs",
           "read_score_file", "retrieval_k", "search", "select_batch"]
