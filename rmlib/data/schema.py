"""Canonical examples every reader produces, and the one error type for bad data.

Readers differ wildly (transcripts, message lists, Likert columns, per-annotator votes); everything
after them sees only the three dataclasses below. Validation happens once, here, so that a bad
record is reported with its source, index and field instead of surfacing later as a shape error
in the middle of a training run.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Message = dict[str, str]
ROLES = frozenset({"system", "user", "assistant", "tool"})
OnInvalid = Literal["error", "skip"]

T = TypeVar("T")


class DataError(ValueError):
    """A record that cannot become a canonical example.

    ``reason`` is a short stable code used to group skipped records in a :class:`ValidationReport`
    (``missing_field``, ``wrong_type``, ``empty_response``, ``identical_responses``, ``bad_value``,
    ``unknown_role``, ``malformed_messages``, ``undecodable_line``, ...).
    """

    def __init__(self, source: str, index: int | None, field: str | None, message: str, reason: str):
        self.source, self.index, self.field, self.reason, self.detail = source, index, field, reason, message
        self.message = message
        where = source if index is None else f"{source}: record {index}"
        if field:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")

    def renamed(self, names: Mapping[str, str]) -> DataError:
        """The same error under the user's column names (``names``: format's name → user's name)."""
        if not self.field:
            return self
        head, dot, rest = self.field.partition(".")
        root, bracket, tail = head.partition("[")
        if root not in names:
            return self
        return DataError(self.source, self.index, names[root] + bracket + tail + dot + rest, self.message, self.reason)


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: the same conversation answered twice, one answer preferred.

    ``strength`` is the preference magnitude used by margin/scaled BT (HelpSteer2: 1..3).
    ``votes`` holds per-annotator signed preferences on the source's scale, oriented so that
    > 0 prefers ``chosen``, 0 is a tie and < 0 prefers ``rejected``; it feeds soft targets and the
    diverging-preference analysis.
    """

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    strength: float | None = None
    votes: tuple[float, ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": list(self.prompt), "chosen": self.chosen, "rejected": self.rejected,
                "strength": self.strength, "votes": None if self.votes is None else list(self.votes),
                "meta": dict(self.meta)}


MISSING_SCORE = -100  # NeMo-Aligner's ``loss_mask_val``: read as a missing score (None)


@dataclass(frozen=True)
class RatedResponse:
    """One response with named attribute scores; ``None`` marks a missing score (masked in the loss).

    Readers turn ``-100`` (:data:`MISSING_SCORE`) into ``None`` as well, so "missing" has one
    spelling from here on.
    """

    prompt: tuple[Message, ...]
    response: str
    attributes: Mapping[str, float | None]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": list(self.prompt), "response": self.response,
                "attributes": dict(self.attributes), "meta": dict(self.meta)}


@dataclass(frozen=True)
class JudgeExample:
    """A written pairwise judgement: ``better`` is 1 or 2, the response the justification prefers."""

    prompt: tuple[Message, ...]
    response_1: str
    response_2: str
    justification: str
    better: int
    strength: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": list(self.prompt), "response_1": self.response_1, "response_2": self.response_2,
                "justification": self.justification, "better": self.better, "strength": self.strength,
                "meta": dict(self.meta)}


@dataclass(frozen=True)
class RankedList:
    """One prompt answered k times (k >= 2), every response rated: higher ``scores`` is better.

    Why scores and not only a ranking: UltraFeedback rates, RewardBench 2 marks correct and incorrect,
    a ranking is scores by another name (rank 1 → score -1). Equal scores are a tie: the responses
    form one tied group, which the listwise losses treat by their stated tie rule
    (docs/losses_plackett_luce.md). A list whose responses are all tied carries no ranking and is
    filtered by the readers (reason ``all_tied``).
    """

    prompt: tuple[Message, ...]
    responses: tuple[str, ...]
    scores: tuple[float, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": list(self.prompt), "responses": list(self.responses), "scores": list(self.scores),
                "meta": dict(self.meta)}


Example = PreferencePair | RatedResponse | JudgeExample | RankedList


# ---------------------------------------------------------------------------------------------
# Field validators: each raises DataError naming source, index and field.


def require(record: Mapping[str, Any], key: str, source: str, index: int | None) -> Any:
    if not isinstance(record, Mapping):
        raise DataError(source, index, None, f"expected a JSON object, got {type(record).__name__}", "wrong_type")
    if key not in record or record[key] is None:
        raise DataError(source, index, key, "missing; present keys: " + ", ".join(sorted(map(str, record))),
                        "missing_field")
    return record[key]


def check_text(value: Any, source: str, index: int | None, name: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise DataError(source, index, name, f"expected a string, got {type(value).__name__}", "wrong_type")
    if not allow_empty and not value.strip():
        raise DataError(source, index, name, "is empty (or only whitespace)", "empty_response")
    return value


def check_messages(value: Any, source: str, index: int | None, name: str) -> tuple[Message, ...]:
    """A chat as a list of {"role", "content"} with known roles and string contents."""
    if not isinstance(value, (list, tuple)):
        raise DataError(source, index, name, f"expected a list of messages, got {type(value).__name__}",
                        "malformed_messages")
    out = []
    for i, m in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise DataError(source, index, where, "expected an object with 'role' and 'content'",
                            "malformed_messages")
        if not isinstance(m["role"], str) or m["role"] not in ROLES:
            raise DataError(source, index, f"{where}.role",
                            f"unknown role {m['role']!r}; expected one of {sorted(ROLES)}", "unknown_role")
        if not isinstance(m["content"], str):
            raise DataError(source, index, f"{where}.content",
                            f"expected a string, got {type(m['content']).__name__}", "wrong_type")
        out.append({"role": m["role"], "content": m["content"]})
    if not out:
        # a chat template cannot render an empty conversation: found here, not mid-tokenization
        raise DataError(source, index, name, "is empty; a prompt needs at least one message", "empty_prompt")
    return tuple(out)


def check_number(value: Any, source: str, index: int | None, name: str, *,
                 low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(source, index, name, f"expected a number, got {type(value).__name__}", "wrong_type")
    v = float(value)
    if not math.isfinite(v):
        raise DataError(source, index, name, f"must be finite, got {v}", "bad_value")
    if (low is not None and v < low) or (high is not None and v > high):
        raise DataError(source, index, name, f"{v} is outside [{low}, {high}]", "bad_value")
    return v


def make_pair(source: str, index: int | None, prompt: Any, chosen: Any, rejected: Any, *,
              strength: Any = None, votes: Any = None, meta: Mapping[str, Any] | None = None,
              strength_range: tuple[float, float] = (0.0, 1e6), strength_field: str = "strength") -> PreferencePair:
    """Validated constructor: the only way readers build a :class:`PreferencePair`.

    ``strength_field`` is the source's own name for the strength (TRL's ``margin``), so an error
    names the column the user wrote."""
    p = check_messages(prompt, source, index, "prompt")
    c = check_text(chosen, source, index, "chosen")
    r = check_text(rejected, source, index, "rejected")
    if c == r:
        raise DataError(source, index, "rejected", "is identical to 'chosen'", "identical_responses")
    s = None if strength is None else check_number(strength, source, index, strength_field,
                                                   low=strength_range[0], high=strength_range[1])
    v = None
    if votes is not None:
        if not isinstance(votes, (list, tuple)):
            raise DataError(source, index, "votes", f"expected a list, got {type(votes).__name__}", "wrong_type")
        v = tuple(check_number(x, source, index, f"votes[{i}]") for i, x in enumerate(votes))
    return PreferencePair(p, c, r, s, v, dict(meta or {}))


def make_rated(source: str, index: int | None, prompt: Any, response: Any, attributes: Mapping[str, Any], *,
               meta: Mapping[str, Any] | None = None,
               score_range: tuple[float, float] | None = None) -> RatedResponse:
    p = check_messages(prompt, source, index, "prompt")
    r = check_text(response, source, index, "response")
    attrs: dict[str, float | None] = {}
    for k, val in attributes.items():
        # -100 is how NeMo-Aligner (and HelpSteer-style exports) mark an unrated attribute: one
        # meaning everywhere downstream (tokenization, loss, metrics) needs it to be None here
        if val is None or (isinstance(val, (int, float)) and not isinstance(val, bool) and val == MISSING_SCORE):
            attrs[k] = None
            continue
        lo, hi = score_range if score_range else (None, None)
        attrs[k] = check_number(val, source, index, k, low=lo, high=hi)
    if attrs and all(v is None for v in attrs.values()):
        raise DataError(source, index, "attributes", "every attribute score is missing", "missing_field")
    return RatedResponse(p, r, attrs, dict(meta or {}))


def make_list(source: str, index: int | None, prompt: Any, responses: Any, scores: Any, *,
              meta: Mapping[str, Any] | None = None, responses_field: str = "responses",
              scores_field: str = "scores") -> RankedList:
    """Validated constructor of a :class:`RankedList`; the ``*_field`` names are the source's own
    column names, so an error names what the user wrote. All-tied lists are valid here (a reader
    filters them by rule: :func:`all_tied`)."""
    p = check_messages(prompt, source, index, "prompt")
    if not isinstance(responses, (list, tuple)):
        raise DataError(source, index, responses_field, f"expected a list of strings, got {type(responses).__name__}",
                        "wrong_type")
    if len(responses) < 2:
        raise DataError(source, index, responses_field, f"a ranked list needs at least 2 responses, got "
                        f"{len(responses)}", "too_few_responses")
    rs = tuple(check_text(r, source, index, f"{responses_field}[{i}]") for i, r in enumerate(responses))
    seen: dict[str, int] = {}
    for i, r in enumerate(rs):
        if r in seen:
            raise DataError(source, index, f"{responses_field}[{i}]", f"is identical to {responses_field}[{seen[r]}]",
                            "identical_responses")
        seen[r] = i
    if not isinstance(scores, (list, tuple)):
        raise DataError(source, index, scores_field, f"expected a list of numbers, got {type(scores).__name__}",
                        "wrong_type")
    if len(scores) != len(rs):
        raise DataError(source, index, scores_field, f"has {len(scores)} values for {len(rs)} responses", "bad_value")
    sc = tuple(check_number(v, source, index, f"{scores_field}[{i}]") for i, v in enumerate(scores))
    return RankedList(p, rs, sc, dict(meta or {}))


def all_tied(example: RankedList) -> bool:
    """Every response has the same score: the list orders nothing (readers filter it, reason ``all_tied``)."""
    return len(set(example.scores)) == 1


def make_judge(source: str, index: int | None, prompt: Any, response_1: Any, response_2: Any,
               justification: Any, better: Any, *, strength: Any = None,
               meta: Mapping[str, Any] | None = None) -> JudgeExample:
    p = check_messages(prompt, source, index, "prompt")
    r1 = check_text(response_1, source, index, "response_1")
    r2 = check_text(response_2, source, index, "response_2")
    j = check_text(justification, source, index, "justification")
    if better not in (1, 2):
        raise DataError(source, index, "better", f"expected 1 or 2, got {better!r}", "bad_value")
    s = None if strength is None else check_number(strength, source, index, "strength", low=0)
    return JudgeExample(p, r1, r2, j, int(better), s, dict(meta or {}))


# ---------------------------------------------------------------------------------------------
# The on_invalid policy and its report.


@dataclass
class ValidationReport:
    """What a pipeline stage kept and what it skipped, by reason, with a few examples of each.

    Every stage that can drop a record (reading, aggregation, truncation, curation) adds to a
    report, so "nothing is dropped silently" can be checked by reading one object.
    """

    source: str
    max_examples: int = 3
    seen: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    filtered: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, err: DataError) -> None:
        """An invalid record dropped under ``on_invalid='skip'``."""
        self.skipped[err.reason] += 1
        self._example(err.reason, str(err))

    def filter(self, reason: str, detail: str) -> None:
        """A valid record removed by a documented rule (tie, spread > 2, too long, duplicate, ...)."""
        self.filtered[reason] += 1
        self._example(reason, detail)

    def _example(self, reason: str, text: str) -> None:
        bucket = self.examples.setdefault(reason, [])
        if len(bucket) < self.max_examples:
            bucket.append(text)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def n_filtered(self) -> int:
        return sum(self.filtered.values())

    def merge(self, other: ValidationReport) -> None:
        self.seen += other.seen
        self.kept += other.kept
        self.skipped.update(other.skipped)
        self.filtered.update(other.filtered)
        for k, v in other.examples.items():
            bucket = self.examples.setdefault(k, [])
            bucket.extend(v[: max(0, self.max_examples - len(bucket))])

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "seen": self.seen, "kept": self.kept,
                "skipped": dict(self.skipped), "filtered": dict(self.filtered), "examples": self.examples}

    def format(self) -> str:
        lines = [f"{self.source}: {self.seen} records read, {self.kept} kept, "
                 f"{self.n_skipped} skipped as invalid, {self.n_filtered} filtered by rule"]
        for title, counter in (("skipped", self.skipped), ("filtered", self.filtered)):
            for reason, n in counter.most_common():
                lines.append(f"  {title} {reason}: {n}")
                lines += [f"    e.g. {e}" for e in self.examples.get(reason, [])]
        return "\n".join(lines)

    __str__ = format


def apply_policy(records: Iterable[tuple[int, Any]], convert: Callable[[int, Any], T | None],
                 policy: OnInvalid, report: ValidationReport) -> Iterator[T]:
    """Run ``convert`` on each (index, record); under ``skip`` count failures, under ``error`` raise.

    A record may itself be a :class:`DataError` (e.g. an undecodable JSONL line found by the file
    reader); it is treated like a failed conversion. ``convert`` may return None to mean "filtered
    by a documented rule" only if it has already recorded that in the report itself.
    """
    if policy not in ("error", "skip"):
        raise ValueError(f"on_invalid must be 'error' or 'skip', got {policy!r}")
    for index, record in records:
        report.seen += 1
        try:
            if isinstance(record, DataError):
                raise record
            out = convert(index, record)
        except DataError as err:
            if policy == "error":
                raise
            report.skip(err)
            continue
        if out is not None:
            report.kept += 1
            yield out
