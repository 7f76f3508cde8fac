"""The names this module held, imported from where they live now: rmlib.eval.suites.divergence (one module per
benchmark, each with its suite). Kept so that old imports work."""

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

__all__ = ["DIVERGENCE_CLASSES", "IDENTIFICATION_NEGATIVES", "MULTIPREF_VOTES", "auroc", "calibration",
           "classify_votes", "divergence_identification", "divergence_table", "is_substantial",
           "multipref_vote", "observed_fraction", "pair_preference", "preferred_side",
           "rating_difference_votes"]
