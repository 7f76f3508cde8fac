"""rmlib: train and evaluate reward models for LLM alignment.

Importing rmlib is cheap: the heavy pieces (torch models, the trainer) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "RewardModel": ("rmlib.models", "RewardModel"),
    "Trainer": ("rmlib.training", "Trainer"),
    "train": ("rmlib.training", "train"),
    "Preempted": ("rmlib.training", "Preempted"),  # raised by fit() after a SIGTERM-triggered checkpoint
    "Config": ("rmlib.config", "Config"),
    "load_config": ("rmlib.config", "load_config"),
    "get_loss": ("rmlib.losses", "get_loss"),
    "PreferencePair": ("rmlib.data.schema", "PreferencePair"),
    "RatedResponse": ("rmlib.data.schema", "RatedResponse"),
    "JudgeExample": ("rmlib.data.schema", "JudgeExample"),
    # ranked lists (one prompt, k rated responses) and the conversions to and from pairs
    "RankedList": ("rmlib.data.schema", "RankedList"),
    "lists_from_pairs": ("rmlib.data.lists", "lists_from_pairs"),
    "pairs_from_lists": ("rmlib.data.lists", "pairs_from_lists"),
    "DataError": ("rmlib.data.schema", "DataError"),
    "load_data": ("rmlib.data.formats", "load"),
    # the Pairwise Justifier (HelpSteer2-Preference): a causal LM that writes its verdict
    "JustifierModel": ("rmlib.models", "JustifierModel"),
    "judge_pairs": ("rmlib.eval.generative", "judge_pairs"),
    "parse_verdict": ("rmlib.eval.generative", "parse_verdict"),
    "justifier_examples": ("rmlib.data.judge", "justifier_examples"),
    # preference-data curation (Skywork-Reward-V2): each step writes a new dataset plus a report
    "dedup_pairs": ("rmlib.curation", "dedup_pairs"),
    "decontaminate": ("rmlib.curation", "decontaminate"),
    "overlap_report": ("rmlib.curation", "overlap_report"),
    "benchmark_index": ("rmlib.curation", "benchmark_index"),
    "score_and_filter": ("rmlib.curation", "score_and_filter"),
    "filter_on_scores": ("rmlib.curation", "filter_on_scores"),
    "retrieve_pairs": ("rmlib.curation", "retrieve_pairs"),
    "annotate_pairs": ("rmlib.curation", "annotate_pairs"),
    "review_sample": ("rmlib.curation", "review_sample"),
    "review_import": ("rmlib.curation", "review_import"),
}
_SUBMODULES = {"data", "eval", "expo", "losses", "models", "training", "config", "testing", "plan", "curation"}

__all__ = sorted([*_LAZY, *_SUBMODULES])

if TYPE_CHECKING:  # pragma: no cover
    from rmlib.config import Config, load_config  # noqa: F401
    from rmlib.curation import (  # noqa: F401
        annotate_pairs,
        benchmark_index,
        decontaminate,
        dedup_pairs,
        filter_on_scores,
        overlap_report,
        retrieve_pairs,
        review_import,
        review_sample,
        score_and_filter,
    )
    from rmlib.data.formats import load as load_data  # noqa: F401
    from rmlib.data.judge import justifier_examples  # noqa: F401
    from rmlib.data.lists import lists_from_pairs, pairs_from_lists  # noqa: F401
    from rmlib.data.schema import DataError, JudgeExample, PreferencePair, RankedList, RatedResponse  # noqa: F401
    from rmlib.eval.generative import judge_pairs, parse_verdict  # noqa: F401
    from rmlib.losses import get_loss  # noqa: F401
    from rmlib.models import JustifierModel, RewardModel  # noqa: F401
    from rmlib.training import Preempted, Trainer, train  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"rmlib.{name}")
    raise AttributeError(f"module 'rmlib' has no attribute {name!r}")
