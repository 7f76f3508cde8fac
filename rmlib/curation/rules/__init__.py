"""The model-free half of preference-data curation (Skywork-Reward-V2, arXiv 2507.01352).

Each step reads a pairs dataset, writes a new directory (``data.jsonl`` + ``report.json`` + step outputs)
and never modifies its input: exact dedup (:func:`dedup_pairs`), n-gram decontamination
(:func:`decontaminate`, :func:`overlap_report`, :class:`NgramIndex`), the reward-model consistency filter on
rewards already computed (:func:`filter_on_scores`), and the retrieval arithmetic and search
(:func:`retrieval_k`, :func:`select_batch`). Nothing here loads a model or reads a benchmark through the
evaluation suites: that is the layer above, the modules of :mod:`rmlib.curation` itself (scoring,
embedding, benchmark prompts), which import this subpackage and never the reverse (an import-linter
contract in pyproject.toml). See docs/curation.md.
"""

from rmlib.curation.rules.consistency import (
           RULES,
           filter_on_scores,
           parse_rule,
           read_judge_file,
           read_score_file,
)
from rmlib.curation.rules.dedup import dedup_masks, dedup_pairs
from rmlib.curation.rules.ngrams import (
           NgramIndex,
           decontaminate,
           ngram_hashes,
           normalize_words,
           overlap_report,
)
from rmlib.curation.rules.retrieval import retrieval_k, search, select_batch
from rmlib.curation.rules.table import StepReport, read_pairs

__all__ = ["RULES", "NgramIndex", "StepReport", "decontaminate", "dedup_masks", "dedup_pairs", "filter_on_scores",
           "ngram_hashes", "normalize_words", "overlap_report", "parse_rule", "read_judge_file", "read_pairs",
           "read_score_file", "retrieval_k", "search", "select_batch"]
