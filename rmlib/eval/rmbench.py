"""The names this module held, imported from where they live now: rmlib.eval.suites.rmbench (one module per
benchmark, each with its suite). Kept so that old imports work."""

from rmlib.eval.suites.rmbench import (
    RMBENCH_DOMAINS,
    rmbench_difficulty,
    rmbench_matrix,
    rmbench_scores,
)

__all__ = ["RMBENCH_DOMAINS", "rmbench_difficulty", "rmbench_matrix", "rmbench_scores"]
