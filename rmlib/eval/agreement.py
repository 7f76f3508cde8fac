"""The names this module held, imported from where they live now: rmlib.eval.suites.agreement (one module per
benchmark, each with its suite). Kept so that old imports work."""

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

__all__ = ["DEFAULT_REFUSAL_LEXICON", "DEFAULT_SAFETY_KEYWORDS", "agreement_audit", "agreement_stats",
           "agreement_table", "is_refusal", "keyword_groups", "length_matched_mask", "length_regression",
           "one_sided_refusal_mask", "refusal_side_rate", "word_count"]
