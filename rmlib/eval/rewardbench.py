"""The names this module held, imported from where they live now: rmlib.eval.suites.rewardbench (v1) and
rmlib.eval.suites.rewardbench2 (one module per benchmark, each with its suite). Kept so that old imports
work."""

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

__all__ = ["EXAMPLE_COUNTS", "PRIOR_SETS", "SECTIONS", "SUBSET_MAPPING", "rewardbench_v1_scores",
           "rewardbench_v1_subset_accuracy", "REWARDBENCH2_SUBSETS", "bon_row_score",
           "rewardbench2_scores", "ties_score"]
