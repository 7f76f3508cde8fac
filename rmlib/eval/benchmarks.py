"""The names this module held, imported from where they live now: rmlib.eval.suites.judgebench,
rmlib.eval.suites.rmb and rmlib.eval.suites.ppe (one module per benchmark, each with its suite). Kept so
that old imports work."""

from rmlib.eval.suites.judgebench import (
    JUDGEBENCH_CATEGORIES,
    judgebench_pair_net,
    judgebench_scores,
)
from rmlib.eval.suites.ppe import (
    ppe_best_of_k,
    ppe_preference_accuracy,
)
from rmlib.eval.suites.rmb import (
    rmb_scores,
)

__all__ = ["JUDGEBENCH_CATEGORIES", "judgebench_pair_net", "judgebench_scores", "ppe_best_of_k",
           "ppe_preference_accuracy", "rmb_scores"]
