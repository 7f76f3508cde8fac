"""Per-annotator labels: majority-vote aggregation, HelpSteer2 rating-difference votes, and the
"all annotations" expansion.

Source: Zhang et al., "Diverging Preferences: When do Annotators Disagree and do Models Know?"
(arXiv 2410.14632). The paper compares reward models trained on aggregated labels (majority vote, as
in prior work) with training on every annotation, "treating each annotator label as its own training
instance". This module holds the data side of both:

* :func:`majority_side` / :func:`sum_side` / :func:`preferred_side`: the side a pair's votes prefer.
  Majority vote is the default everywhere (the MultiPref reader and the divergence suite agree on it);
  the summed-strength rule rmlib used before is kept as ``rule="sum"``.
* :func:`rating_difference_votes`: HelpSteer2 votes built, as the paper does, from each annotator's
  1–5 (0–4 in the release) helpfulness ratings of the two responses: "a difference of 1" is a slight
  preference, "≥ 2" a significant one, "0" a tie.
* :func:`expand_all_annotations`: ``data.annotations=all``. A preference pair with ``votes`` becomes one
  pair per non-tie vote, oriented by the vote (a tie vote gives no pair and is counted); a rated
  response from the HelpSteer2 disagreements release (per-annotator lists in ``meta["annotations"]``)
  becomes one row per annotator.

Vote convention (as ``PreferencePair.votes``): one signed number per annotator, > 0 prefers the first
response (A, or ``chosen``), 0 is a tie, < 0 prefers the second; the magnitude is the strength.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from rmlib.data.schema import DataError, PreferencePair, RatedResponse, ValidationReport

__all__ = ["AGGREGATION_RULES", "expand_all_annotations", "majority_side", "preferred_side",
           "rating_difference_votes", "sum_side"]

AGGREGATION_RULES = ("majority", "sum")


def majority_side(votes: Sequence[float]) -> int:
    """+1 (A), −1 (B) or 0 (no majority) by majority vote: the side more annotators prefer.

    Tie votes abstain; equal counts on both sides (including all ties) are "no majority". The paper's
    aggregation is "majority vote"; this is rmlib's reading of it for a pair (the strengths only decide
    nothing here: [2, −1, −1] is a majority for B).
    """
    pos = sum(1 for v in votes if v > 0)
    neg = sum(1 for v in votes if v < 0)
    return 0 if pos == neg else (1 if pos > neg else -1)


def sum_side(votes: Sequence[float]) -> int:
    """+1, −1 or 0 by the sign of the summed strengths (rmlib's rule before majority vote)."""
    total = float(sum(votes))
    return 0 if total == 0 else (1 if total > 0 else -1)


def preferred_side(votes: Sequence[float], rule: str = "majority") -> int:
    """The side ``votes`` prefer under ``rule`` (``"majority"``, the default, or ``"sum"``); 0: none."""
    if rule == "majority":
        return majority_side(votes)
    if rule == "sum":
        return sum_side(votes)
    raise ValueError(f"unknown aggregation rule {rule!r}; choose from {list(AGGREGATION_RULES)}")


def rating_difference_votes(ratings_a: Sequence[float], ratings_b: Sequence[float]) -> list[float]:
    """Per-annotator votes ``r_a[i] − r_b[i]`` from two responses' helpfulness ratings by the same annotators.

    Diverging Preferences (arXiv 2410.14632) builds HelpSteer2 votes from "the overall helpfulness
    rating" each annotator gave both responses: a difference of 1 is a slight preference, ≥ 2 a
    significant one and 0 a tie, so the difference itself is the signed vote on the MultiPref scale
    (|v| = 1 slight, |v| ≥ 2 strong). Position i of both lists must be the same annotator (the
    HelpSteer2 disagreements release lists them in the same order for the two responses of a prompt);
    lists of different lengths raise ``ValueError``.
    """
    if len(ratings_a) != len(ratings_b):
        raise ValueError(f"{len(ratings_a)} ratings of response A but {len(ratings_b)} of response B: "
                         "the votes need the same annotators on both")
    return [float(a) - float(b) for a, b in zip(ratings_a, ratings_b)]


def _expand_pair(pair: PreferencePair, index: int, source: str, report: ValidationReport) -> list[PreferencePair]:
    if not pair.votes:
        raise DataError(source, index, "votes", "data.annotations=all needs per-annotator votes on every pair "
                        "(MultiPref, HelpSteer2-Preference all_preferences_unprocessed, a 'votes' list)",
                        "missing_field")
    out = []
    for k, v in enumerate(pair.votes):
        if v == 0:
            report.filter("tie_annotation", f"{source}: example {index}: annotation {k} is a tie")
            continue
        chosen, rejected = (pair.chosen, pair.rejected) if v > 0 else (pair.rejected, pair.chosen)
        out.append(PreferencePair(pair.prompt, chosen, rejected, strength=abs(v), votes=(abs(v),),
                                  meta={**pair.meta, "annotation": k}))
    return out


def _expand_rated(row: RatedResponse, index: int, source: str) -> list[RatedResponse]:
    anns = row.meta.get("annotations")
    if not isinstance(anns, Mapping) or not anns:
        raise DataError(source, index, "meta.annotations", "data.annotations=all needs per-annotator ratings "
                        "(the HelpSteer2 disagreements release)", "missing_field")
    lengths = {len(v) for v in anns.values()}
    if len(lengths) != 1:
        raise DataError(source, index, "meta.annotations", f"attributes have different numbers of annotators "
                        f"{ {k: len(v) for k, v in anns.items()} }", "bad_value")
    n = lengths.pop()
    meta = {k: v for k, v in row.meta.items() if k != "annotations"}
    return [RatedResponse(row.prompt, row.response, {a: (None if anns[a][i] is None else float(anns[a][i]))
                                                     for a in anns}, {**meta, "annotation": i})
            for i in range(n)]


def iter_all_annotations(examples: Iterable[Any], source: str, report: ValidationReport) -> Iterator[Any]:
    """:func:`expand_all_annotations` one example at a time, for sources read as a stream."""
    for i, ex in enumerate(examples):
        yield from expand_all_annotations([ex], source, report, first_index=i)


def expand_all_annotations(examples: Iterable[Any], source: str,
                           report: ValidationReport | None = None, *, first_index: int = 0) -> list[Any]:
    """``data.annotations=all``: every annotator's label as its own training instance.

    "treating each annotator label as its own training instance" (Diverging Preferences, arXiv
    2410.14632, §5). For Bradley-Terry training a pair with votes becomes one pair per non-tie vote,
    oriented by that vote, with strength |vote| (tie votes are dropped and counted in ``report`` as
    ``tie_annotation``). For MSE regression a rated response with per-annotator ratings becomes one row
    per annotator. An example without per-annotator labels is a :class:`DataError`: training on "all
    annotations" of data that has none would silently be the aggregated run.
    """
    rep = report if report is not None else ValidationReport(source)
    out: list[Any] = []
    for i, ex in enumerate(examples, start=first_index):
        if isinstance(ex, PreferencePair):
            out += _expand_pair(ex, i, source, rep)
        elif isinstance(ex, RatedResponse):
            out += _expand_rated(ex, i, source)
        else:
            raise DataError(source, i, None, f"data.annotations=all does not apply to {type(ex).__name__}",
                            "wrong_type")
    return out
