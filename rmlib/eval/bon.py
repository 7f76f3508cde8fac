"""The names this module held, imported from where they live now: rmlib.eval.suites.bon (one module per
benchmark, each with its suite). Kept so that old imports work."""

from rmlib.eval.suites.bon import (
    bon_accuracy_at,
    bon_curve,
    bon_prompt_credit,
    is_correctness,
)

__all__ = ["bon_accuracy_at", "bon_curve", "bon_prompt_credit", "is_correctness"]
