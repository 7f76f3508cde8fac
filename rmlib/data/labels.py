"""Where each label a loss can consume comes from in a canonical example.

A loss declares the labels it consumes by name (``labels = ("margin",)``); this module is the one
place that knows how to read a label off an example, so features, batches and the load-time check
all agree. A name without a reader here is read from the example's ``meta`` (the canonical rmlib
formats keep every extra column there), which is why a new loss with a new label needs no change
outside its own class: put the label in the data, name it in the loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from rmlib.data.schema import Example

LabelReader = Callable[[Example, Sequence[str]], Any]


def votes_to_target_prob(votes: Sequence[float] | None) -> float | None:
    """Fraction of annotators preferring chosen, ties counting half (the soft-BT target)."""
    if not votes:
        return None
    return (sum(v > 0 for v in votes) + 0.5 * sum(v == 0 for v in votes)) / len(votes)


def _targets(example: Example, attributes: Sequence[str]) -> list[float] | None:
    scores = getattr(example, "attributes", None)
    if scores is None:
        return None
    return [math.nan if scores.get(a) is None else float(scores[a]) for a in attributes]


def vote_share(votes: Sequence[float] | None) -> float:
    """:func:`votes_to_target_prob`, and 1.0 for a pair without votes: one judgement that chosen is better
    (``mean_var`` trains on any preference data; with ``data.annotations=all`` each pair is one vote)."""
    p = votes_to_target_prob(votes)
    return 1.0 if p is None else p


_READERS: dict[str, LabelReader] = {
    "margin": lambda ex, attrs: getattr(ex, "strength", None),
    "target_prob": lambda ex, attrs: votes_to_target_prob(getattr(ex, "votes", None)),
    "vote_share": lambda ex, attrs: vote_share(getattr(ex, "votes", None)),
    "targets": _targets,
}


def register_label(name: str, reader: LabelReader) -> None:
    """Read label ``name`` with ``reader(example, attributes)`` instead of from ``meta[name]``."""
    _READERS[name] = reader


def read_label(example: Example, name: str, attributes: Sequence[str] = ()) -> Any:
    """The value of label ``name`` for ``example``, or None when the example has none."""
    reader = _READERS.get(name)
    if reader is not None:
        return reader(example, attributes)
    return example.meta.get(name)


def read_labels(example: Example, names: Sequence[str], attributes: Sequence[str] = ()) -> dict[str, Any]:
    return {n: read_label(example, n, attributes) for n in names}
