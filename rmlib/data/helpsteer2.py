"""HelpSteer2 / HelpSteer2-Preference: strength aggregation, agreement, justification preprocessing.

Three things live here because they share the raw HelpSteer2-Preference record (the
``preference/`` folder of the ``nvidia/HelpSteer2`` dataset; fields in docs/data.md):

* :func:`aggregate_strength` / :func:`aggregate_file` re-derive the overall ``preference_strength``
  from the raw per-annotator votes with the rule of HelpSteer2-Preference (Wang et al., arXiv
  2410.01257, §2), so the paper's 7,118-pair filtered set can be reproduced and every dropped pair
  is counted by the rule that dropped it.
* :func:`weighted_kappa` is the (quadratic-)weighted Cohen's κ of sklearn's ``cohen_kappa_score``,
  implemented in numpy because the library must not depend on scikit-learn; the tests check it
  against sklearn.
* :func:`split_justification` splits a free-text justification into (statement, elaboration), the
  rule :func:`rmlib.data.judge.judge_examples` builds a pairwise judge's training targets with
  (paper appendix C).

:func:`parse_helpsteer2_prompt` converts HelpSteer2's single-string prompts (multi-turn joined
with ``<extra_id_1>`` markers, as the HelpSteer2 card describes) into chat messages; the dataset
readers reuse it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from rmlib.data.schema import (
    DataError,
    Message,
    OnInvalid,
    PreferencePair,
    RatedResponse,
    ValidationReport,
    make_pair,
    require,
)

NEITHER_VALID = -100
"""Annotator strength meaning "neither response is valid"; never part of an aggregate."""

SCALE = tuple(range(-3, 4))
"""The full preference scale by position; κ categories use it so that distances are |a − b|."""

MAX_SPREAD = 2

__all__ = [
    "NEITHER_VALID", "SCALE", "AggregationReport", "aggregate_file", "aggregate_strength",
    "aggregate_strength_explained", "annotation_strengths", "annotator_pairs", "parse_helpsteer2_prompt",
    "kappa_from_confusion", "pick_most_similar", "rating_pairs", "split_justification", "split_sentences",
    "statement_better",
    "weighted_kappa", "ABBREVIATIONS",
]


# ---------------------------------------------------------------------------------------------
# Prompt format


_TURN_MARKER = re.compile(r"\n<extra_id_1>(User|Assistant)\n")


def parse_helpsteer2_prompt(prompt: str) -> list[Message]:
    """Split a HelpSteer2 ``prompt`` string into ``[{"role", "content"}, ...]`` messages.

    Multi-turn prompts hold every turn but the last assistant one, joined by
    ``"\\n<extra_id_1>Assistant\\n"`` / ``"\\n<extra_id_1>User\\n"`` (HelpSteer2 card); the text before
    the first marker is the first user turn. Content is kept verbatim (no stripping), so the
    conversion is lossless for well-formed prompts.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"expected a string prompt, got {type(prompt).__name__}")
    parts = _TURN_MARKER.split(prompt)
    messages: list[Message] = [{"role": "user", "content": parts[0]}]
    for role, content in zip(parts[1::2], parts[2::2]):
        messages.append({"role": role.lower(), "content": content})
    return messages


# ---------------------------------------------------------------------------------------------
# Strength aggregation (HelpSteer2-Preference, arXiv 2410.01257, §2)


def _check_annotation(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"annotation must be an int, got {type(value).__name__} {value!r}")
    v = int(value)
    if v != NEITHER_VALID and not -3 <= v <= 3:
        raise ValueError(f"annotation {v} is outside -3..3 (and is not {NEITHER_VALID} 'neither valid')")
    return v


def pick_most_similar(valid: Sequence[int]) -> tuple[int, ...]:
    """Indices (into ``valid``) of the three most similar annotations; all of them if fewer than 3.

    Among all index triples i<j<k, minimise (range, sum of squared deviations from the triple's own
    mean), and among equal keys take the first triple in lexicographic index order. The squared
    deviation is compared as ``3·Σx² − (Σx)²`` (= 3·SSD), which is an exact integer, so float
    rounding can never decide a tie.
    """
    if len(valid) <= 3:
        return tuple(range(len(valid)))
    best: tuple[int, ...] = ()
    best_key: tuple[int, int] | None = None
    for triple in itertools.combinations(range(len(valid)), 3):  # lexicographic order
        xs = [valid[i] for i in triple]
        key = (max(xs) - min(xs), 3 * sum(x * x for x in xs) - sum(xs) ** 2)
        if best_key is None or key < best_key:  # strict: the earliest triple wins ties
            best, best_key = triple, key
    return best


def _round_half_away(total: int, n: int) -> int:
    """``total / n`` rounded to the nearest integer, halves away from zero, in exact integer maths."""
    q = (2 * abs(total) + n) // (2 * n)
    return q if total >= 0 else -q


def aggregate_strength_explained(annotations: Sequence[int]) -> tuple[int | None, str]:
    """:func:`aggregate_strength` plus the rule that decided it.

    The reason is ``"ok"`` for a kept value, else ``"too_few_valid"``, ``"spread_gt_2"`` or
    ``"zero_mean"`` (checked in that order), so a file-level report can count each rule.
    """
    valid = [v for v in map(_check_annotation, annotations) if v != NEITHER_VALID]
    if len(valid) < 2:
        return None, "too_few_valid"
    picked = [valid[i] for i in pick_most_similar(valid)]
    if max(picked) - min(picked) > MAX_SPREAD:
        return None, "spread_gt_2"
    value = _round_half_away(sum(picked), len(picked))
    if value == 0:
        return None, "zero_mean"
    return value, "ok"


def aggregate_strength(annotations: Sequence[int]) -> int | None:
    """Overall HelpSteer2-Preference strength from per-annotator strengths, or None to drop the task.

    The rule (HelpSteer2-Preference, arXiv 2410.01257, §2, with rmlib's own choices where the paper is
    silent; also in docs/data.md):

    1. Drop ``-100`` ("neither response is valid") entries; the rest must be ints in −3..3.
    2. Pick the three most similar annotations: the index triple with the smallest range
       (max − min); ties are broken by the smallest sum of squared deviations from the triple's own
       mean, then by the earliest indices in lexicographic order of index triples. The paper does
       not document "most similar" or any tie-break — this ordering is **rmlib's choice**.
       With fewer than three valid annotations, use all of them; with fewer than two, return None
       (one annotator is not an agreement).
    3. Return None if the spread (max − min) of the picked annotations is greater than 2.
    4. Otherwise take their mean rounded to the nearest integer. A mean of three integers is never
       a half; with two it can be, and halves are rounded **away from zero** (``[1, 2] → 2``,
       ``[-1, -2] → -2``) — not Python's banker's ``round``, which would turn 2.5 into 2 — again
       our choice, since the paper does not say. Return None when the result is 0 (the paper drops
       low-confidence, "about the same" tasks).

    Negative values prefer ``response_1``, positive ``response_2`` (``nvidia/HelpSteer2`` dataset card).
    """
    return aggregate_strength_explained(annotations)[0]


# ---------------------------------------------------------------------------------------------
# Weighted Cohen's κ (as sklearn.metrics.cohen_kappa_score)


Weights = Literal["quadratic", "linear"] | None


def _weight_matrix(k: int, weights: Weights) -> np.ndarray:
    idx = np.arange(k)
    diff = idx[:, None] - idx[None, :]
    if weights is None:
        return (diff != 0).astype(float)
    if weights == "linear":
        return np.abs(diff).astype(float)
    if weights == "quadratic":
        return (diff**2).astype(float)
    raise ValueError(f"weights must be 'quadratic', 'linear' or None, got {weights!r}")


def kappa_from_confusion(confusion: np.ndarray, *, weights: Weights = "quadratic") -> float:
    """κ = 1 − Σ w·O / Σ w·E for a K×K confusion matrix ``O`` (rows: rater 1, columns: rater 2).

    ``E_ij = r_i·c_j / N`` and ``w`` depends only on index positions (see :func:`weighted_kappa`).
    Returns NaN when the denominator is 0 (no observations, or both raters used a single and the
    same category), where κ is undefined — exactly as sklearn does without ``replace_undefined_by``.
    """
    o = np.asarray(confusion, dtype=float)
    if o.ndim != 2 or o.shape[0] != o.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {o.shape}")
    w = _weight_matrix(o.shape[0], weights)
    n = o.sum()
    if n == 0:
        return float("nan")
    expected = np.outer(o.sum(axis=1), o.sum(axis=0)) / n
    denominator = float((w * expected).sum())
    if denominator == 0:
        return float("nan")
    return 1.0 - float((w * o).sum()) / denominator


def weighted_kappa(y1: Sequence[Any], y2: Sequence[Any], *, labels: Sequence[Any] | None = None,
                   weights: Weights = "quadratic") -> float:
    """Cohen's κ between two raters, weighted by category **index position**.

    Same definition as ``sklearn.metrics.cohen_kappa_score``: categories are ``labels`` in the
    order given, or else the sorted union of values seen in ``y1``/``y2``; distances are between
    positions in that list (``w_ij = (i−j)²`` quadratic, ``|i−j|`` linear, ``1−δ_ij`` for None),
    not between the values. So observed labels with uneven gaps ({0, 1, 4}) give a different κ than
    the full scale — pass ``labels`` for a fixed Likert scale. NaN when undefined.

    One deliberate difference: a value absent from an explicit ``labels`` raises ``ValueError``
    instead of being silently ignored as sklearn's confusion matrix does (fail loudly).
    """
    a, b = list(y1), list(y2)
    if len(a) != len(b):
        raise ValueError(f"y1 and y2 must have the same length, got {len(a)} and {len(b)}")
    cats = sorted(set(a) | set(b)) if labels is None else list(labels)
    position = {c: i for i, c in enumerate(cats)}
    if len(position) != len(cats):
        raise ValueError(f"labels must be unique, got {cats}")
    unknown = (set(a) | set(b)) - set(position)
    if unknown:
        raise ValueError(f"values {sorted(unknown, key=repr)} are not in labels {cats}")
    confusion = np.zeros((len(cats), len(cats)))
    np.add.at(confusion, ([position[v] for v in a], [position[v] for v in b]), 1)
    return kappa_from_confusion(confusion, weights=weights)


def annotator_pairs(valid: Sequence[int]) -> list[tuple[int, int]]:
    """The κ observations of one task: every unordered pair i<j of valid annotations, both ways.

    Annotators of a task are interchangeable (there is no "rater 1"), so each pair is added as
    (a_i, a_j) and (a_j, a_i); the confusion matrix is then symmetric and κ does not depend on
    the order the annotations happen to be stored in.
    """
    out: list[tuple[int, int]] = []
    for x, y in itertools.combinations(valid, 2):
        out += [(x, y), (y, x)]
    return out


def _empty_confusion() -> np.ndarray:
    return np.zeros((len(SCALE), len(SCALE)), dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# File-level aggregation


@dataclass(eq=False)
class AggregationReport(ValidationReport):
    """A :class:`ValidationReport` whose ``filtered`` counts the aggregation rules, plus agreement.

    ``filtered`` keys are ``too_few_valid``, ``spread_gt_2`` and ``zero_mean``. The three 7×7 symmetric
    annotator-pair confusion matrices over the scale −3..3 (see :func:`aggregate_file`) are the three
    stages of HelpSteer2-Preference's agreement (arXiv 2410.01257, §2): ``confusion_before`` (all valid
    annotations of every readable task), ``confusion_similar`` (the three most similar annotations of the
    tasks whose spread is ≤ 2) and ``confusion_after`` (the same, also without overall-0 tasks). Keeping
    the matrices rather than the κ values lets reports of several files be merged exactly.
    """

    confusion_before: np.ndarray = field(default_factory=_empty_confusion)
    confusion_similar: np.ndarray = field(default_factory=_empty_confusion)
    confusion_after: np.ndarray = field(default_factory=_empty_confusion)

    @property
    def kappa_before(self) -> float:
        """Quadratic-weighted κ between annotators over all readable tasks."""
        return kappa_from_confusion(self.confusion_before, weights="quadratic")

    @property
    def kappa_similar(self) -> float:
        """κ of the paper's second stage (0.843 there): "using the three most similar annotations per task
        and removing samples with a preference spread of more than two"."""
        return kappa_from_confusion(self.confusion_similar, weights="quadratic")

    @property
    def kappa_after(self) -> float:
        """κ of the paper's third stage (0.878 there): the second stage, also "excluding samples with an
        overall preference of 0" — the three picked annotations of the tasks the rule kept."""
        return kappa_from_confusion(self.confusion_after, weights="quadratic")

    def merge(self, other: ValidationReport) -> None:
        super().merge(other)
        if isinstance(other, AggregationReport):
            self.confusion_before = self.confusion_before + other.confusion_before
            self.confusion_similar = self.confusion_similar + other.confusion_similar
            self.confusion_after = self.confusion_after + other.confusion_after

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(kappa_before=self.kappa_before, kappa_similar=self.kappa_similar, kappa_after=self.kappa_after,
                   n_pairs_before=int(self.confusion_before.sum()) // 2,
                   n_pairs_similar=int(self.confusion_similar.sum()) // 2,
                   n_pairs_after=int(self.confusion_after.sum()) // 2)
        return out

    def format(self) -> str:
        d = self.to_dict()
        return (super().format() + f"\n  annotator agreement (quadratic κ): {d['kappa_before']:.3f} over "
                f"{d['n_pairs_before']} pairs raw, {d['kappa_similar']:.3f} over {d['n_pairs_similar']} with the "
                f"three most similar and spread <= 2, {d['kappa_after']:.3f} over {d['n_pairs_after']} also "
                "without overall 0")

    __str__ = format


def annotation_strengths(record: Any, source: str, index: int) -> list[int]:
    """A record's per-annotator strengths (``all_preferences_unprocessed[k].strength``), each checked."""
    raw = require(record, "all_preferences_unprocessed", source, index)
    if not isinstance(raw, list):
        raise DataError(source, index, "all_preferences_unprocessed",
                        f"expected a list, got {type(raw).__name__}", "wrong_type")
    out = []
    for k, entry in enumerate(raw):
        name = f"all_preferences_unprocessed[{k}].strength"
        if not isinstance(entry, Mapping) or "strength" not in entry:
            raise DataError(source, index, name, "missing (each entry needs a 'strength')", "missing_field")
        try:
            out.append(_check_annotation(entry["strength"]))
        except ValueError as err:
            raise DataError(source, index, name, str(err), "bad_value") from err
    return out


def aggregate_file(records: Iterable[Mapping[str, Any]], source: str, *,
                   on_invalid: OnInvalid = "error") -> tuple[list[dict[str, Any]], AggregationReport]:
    """Apply :func:`aggregate_strength` to raw HelpSteer2-Preference records (fields in docs/data.md).

    Annotations are ``all_preferences_unprocessed[*].strength``. A kept record is returned as a
    shallow copy with ``preference_strength`` replaced by the re-derived value (the published
    value is not trusted, since the released file still holds rows the paper's filter drops).
    Each dropped record is counted in ``report.filtered`` under its rule; a malformed record
    raises :class:`DataError` (``on_invalid="error"``) or is counted in ``report.skipped``.

    Agreement, three stages as HelpSteer2-Preference reports them (quadratic-weighted Cohen's κ 0.489
    → 0.843 → 0.878). How raters are paired for a multi-annotator κ: annotators of a task are
    interchangeable, so for every task every unordered pair (i<j) of the annotations in the stage is
    one observation, added symmetrically as (a_i, a_j) and (a_j, a_i), and the pairs of all tasks are
    pooled into one confusion matrix. Categories are the full scale −3..3 by position
    (``labels=list(range(-3, 4))``, see :func:`weighted_kappa`), so distances are true scale distances.

    * ``kappa_before``: all valid (non −100) annotations of every readable task ("raw");
    * ``kappa_similar``: "using the three most similar annotations per task and removing samples with a
      preference spread of more than two": the picked three (:func:`pick_most_similar`) of tasks with at
      least two valid annotations and spread ≤ 2;
    * ``kappa_after``: the same, also "excluding samples with an overall preference of 0" (the kept tasks).
    """
    if on_invalid not in ("error", "skip"):
        raise ValueError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")
    report = AggregationReport(source)
    kept: list[dict[str, Any]] = []
    position = {v: i for i, v in enumerate(SCALE)}
    for index, record in enumerate(records):
        report.seen += 1
        try:
            annotations = annotation_strengths(record, source, index)
        except DataError as err:
            if on_invalid == "error":
                raise
            report.skip(err)
            continue
        valid = [a for a in annotations if a != NEITHER_VALID]
        task = _empty_confusion()
        for x, y in annotator_pairs(valid):
            task[position[x], position[y]] += 1
        report.confusion_before += task
        picked = [valid[i] for i in pick_most_similar(valid)]
        similar = _empty_confusion()
        for x, y in annotator_pairs(picked):
            similar[position[x], position[y]] += 1
        value, reason = aggregate_strength_explained(annotations)
        if reason in ("ok", "zero_mean"):
            report.confusion_similar += similar
        if value is None:
            report.filter(reason, f"{source}: record {index}: annotations {annotations}, picked {picked}")
            continue
        report.confusion_after += similar
        out = dict(record)
        out["preference_strength"] = value
        kept.append(out)
        report.kept += 1
    return kept, report


# ---------------------------------------------------------------------------------------------
# Justifications (HelpSteer2-Preference appendix C)


ABBREVIATIONS = frozenset({
    "e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "incl.", "esp.", "viz.", "al.", "ca.",
    "mr.", "mrs.", "ms.", "dr.", "prof.", "fig.", "eq.",
})
"""Tokens whose final period does not end a sentence ("etc." does when a capital follows)."""

_CANDIDATE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")
_MENTION = re.compile(r"@Response\s*([12])\b", re.IGNORECASE)
_BETTER = re.compile(r"\bbetter\b", re.IGNORECASE)
_NEGATION = re.compile(r"\b(?:not|never|no)\b|n't", re.IGNORECASE)


@dataclass(frozen=True)
class _Sentence:
    text: str
    gap: str  # whitespace between the previous sentence and this one in the original text


def _sentences(text: str) -> list[_Sentence]:
    cuts = {len(text)}
    cuts.update(m.start() for m in re.finditer("\n", text))  # a line break always ends a sentence
    for m in _CANDIDATE_END.finditer(text):
        token = text[max(0, m.end() - 24):m.end()].split()[-1].lower().rstrip("\"')]")
        following = text[m.end():m.end() + 8].lstrip()
        if token in ABBREVIATIONS and not (token == "etc." and following[:1].isupper()):
            continue
        cuts.add(m.end())
    out: list[_Sentence] = []
    prev, gap = 0, ""
    for cut in sorted(cuts):
        chunk, prev = text[prev:cut], cut
        body = chunk.strip()
        if not body:
            gap += chunk
            continue
        out.append(_Sentence(body, gap + chunk[: len(chunk) - len(chunk.lstrip())]))
        gap = chunk[len(chunk.rstrip()):]
    return out


def split_sentences(text: str) -> list[str]:
    """Sentences of a justification, stripped.

    A sentence ends at ``.``/``!``/``?`` (plus closing quotes/brackets) followed by whitespace or
    the end of text, or at a line break. A period inside a token ("3.5", "v1.2") is never an end
    since no whitespace follows; the listed :data:`ABBREVIATIONS` ("e.g.", "i.e.", ...) are not
    ends either. "@Response 1." at the end of a sentence is an end, while "@Response 1 is" is not.
    """
    return [s.text for s in _sentences(text)]


def _statement_of(sentence: str) -> tuple[str, int] | None:
    """(statement, better) when ``sentence`` holds "@Response 1/2 … better", else None.

    HelpSteer2-Preference (arXiv 2410.01257, appendix C): statements are "frequently prefixed with terms
    like 'Therefore, ', 'Overall, ' and 'For these reasons, '", so "we remove all prefixes before the
    first '@Response 1/2 … better' is encountered". The statement is the sentence from its first
    "@Response N" mention that is followed by the word "better"; it favours the response named last
    before that "better" (the subject: "@Response 2 is better than @Response 1" → 2). A negation between
    that mention and "better" ("@Response 1 is not better") makes it no statement.
    """
    better = _BETTER.search(sentence)
    if better is None:
        return None
    mentions = [m for m in _MENTION.finditer(sentence) if m.end() <= better.start()]
    if not mentions:
        return None
    subject = mentions[-1]
    if _NEGATION.search(sentence, subject.end(), better.start()):
        return None
    return sentence[mentions[0].start():], int(subject.group(1))


def statement_better(statement: str) -> int:
    """Which response (1 or 2) a preference statement such as "@Response 2 is slightly better" favours."""
    found = _statement_of(statement.strip())
    if found is None:
        raise ValueError(f"not a preference statement ('@Response 1/2 is ... better'): {statement!r}")
    return found[1]


def split_justification(text: str) -> tuple[str, str] | None:
    """Split a justification into (preference statement, elaboration); None without a statement.

    * The statement is the first sentence holding "@Response 1/2 … better", with everything before its
      first "@Response 1/2" deleted, as the paper does ("For these reasons, @Response 2 is better." →
      "@Response 2 is better."; "@Response 2 is the better response because …" is kept whole; "is not
      better" is no statement). It keeps its "because ..." clause.
    * The elaboration is every other sentence in order, joined with the whitespace that originally
      preceded it (so paragraph breaks survive) — except a final sentence that is itself a
      statement favouring the same response, which only repeats the conclusion and is dropped.
      It may be empty.
    """
    sentences = _sentences(text)
    found = [(i, _statement_of(s.text)) for i, s in enumerate(sentences)]
    statements = [(i, st) for i, st in found if st is not None]
    if not statements:
        return None
    first, (statement, better) = statements[0]
    drop = {first}
    last = len(sentences) - 1
    if last != first and found[last][1] is not None and found[last][1][1] == better:
        drop.add(last)
    rest = [s for i, s in enumerate(sentences) if i not in drop]
    elaboration = "".join((s.gap if k else "") + s.text for k, s in enumerate(rest))
    return statement, elaboration


# ---------------------------------------------------------------------------------------------
# Ratings → pairs (for the agreement audit)


def rating_pairs(examples: Sequence[Any], attribute: str = "helpfulness",
                 source: str = "<ratings>") -> tuple[list[PreferencePair], dict[str, int]]:
    """Preference pairs from HelpSteer2 ratings: the two responses of a prompt, chosen = the one with the
    higher ``attribute`` rating.

    The safety-rubric audit builds HelpSteer2 pairs with "chosen = the higher-helpfulness response".
    Responses are paired by ``meta["pair_id"]`` (rows 2k and 2k+1 of the ratings file, as the
    ``helpsteer2`` reader verifies). Equal ratings carry no preference: those pairs are skipped and
    counted (``skipped_equal_rating``), as are pairs where either rating is missing
    (``skipped_missing_rating``). Returns ``(pairs, counts)``; each pair's ``meta`` keeps the two
    ratings and the ``pair_id``.
    """
    by_id: dict[Any, list[RatedResponse]] = {}
    for i, ex in enumerate(examples):
        if not isinstance(ex, RatedResponse):
            raise DataError(source, i, None, f"expected rated responses, got {type(ex).__name__}", "wrong_type")
        if attribute not in ex.attributes:
            raise DataError(source, i, attribute, f"not rated; attributes are {list(ex.attributes)}", "missing_field")
        by_id.setdefault(ex.meta.get("pair_id", i // 2), []).append(ex)
    pairs: list[PreferencePair] = []
    counts = {"skipped_equal_rating": 0, "skipped_missing_rating": 0}
    for pid, group in by_id.items():
        if len(group) != 2:
            raise DataError(source, None, "pair_id", f"pair {pid!r} has {len(group)} responses, not 2",
                            "unpaired_row")
        a, b = group
        ra, rb = a.attributes[attribute], b.attributes[attribute]
        if ra is None or rb is None:
            counts["skipped_missing_rating"] += 1
            continue
        if ra == rb:
            counts["skipped_equal_rating"] += 1
            continue
        hi, lo = (a, b) if ra > rb else (b, a)
        pairs.append(make_pair(source, None, list(a.prompt), hi.response, lo.response, strength=abs(ra - rb),
                               meta={"pair_id": pid, f"chosen_{attribute}": max(ra, rb),
                                     f"rejected_{attribute}": min(ra, rb)}))
    return pairs, counts
