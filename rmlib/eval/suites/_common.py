"""What several suite modules share: the options of a suite without options, the tie note of the pair
suites, and the (first slot, second slot) scores of every record."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rmlib.eval.registry import SuiteData

__all__ = ["TIE_NOTE", "NoOptions", "pair_scores"]

TIE_NOTE = "Pairs: chosen must score strictly higher; an exact tie counts as wrong."


def pair_scores(d: SuiteData, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first slot, second slot) scores of every record: (chosen, rejected), or (A, B) for divergence."""
    return np.array([s[r["slots"][0]] for r in d.records]), np.array([s[r["slots"][1]] for r in d.records])


@dataclass
class NoOptions:
    """A suite without options."""
