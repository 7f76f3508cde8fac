"""The suite registry: each benchmark suite is one :class:`Suite` object, registered by name.

A suite is a name, a typed options dataclass (defaults and help text in ``field(metadata={"help": ...})``),
a record parser (one raw record → one parsed record whose items are to be scored) and a metric function
(parsed records + scores → :class:`~rmlib.eval.report.Report`; a pure function, it never sees a model).
``rmlib eval``'s ``--suite`` choices, its option validation and its help all come from here, so adding a
suite is one object and one :func:`register_suite` call (docs/evaluation.md, "Adding a suite").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rmlib.data.schema import DataError, check_messages, check_text

__all__ = ["Record", "Scores", "Suite", "SuiteData", "get_suite", "list_suites", "make_options", "option_help",
           "register_suite", "unregister_suite"]

Messages = list[dict[str, str]]


@dataclass
class SuiteData:
    """Parsed records of one suite plus the flat list of items to score.

    ``items[i]`` is ``{"prompt": [messages], "response": str}``; ``records[j]["slots"]`` lists the item
    indices that belong to record j, in the order its metric needs them (e.g. chosen, rejected).
    ``options`` are the suite options the data was read with (the metric function gets the same ones);
    ``info`` holds what a reader counted while reading (e.g. rows it had to skip), for the report.
    """

    suite: str
    records: list[dict[str, Any]]
    items: list[dict[str, Any]]
    source: str
    options: Any = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scores:
    """What a metric function gets besides the records: the reward per item and, for a multi-head model,
    every head.

    ``reward`` is (N,): the only head, or ``heads @ weights`` (``weighted``). A suite registered with
    ``per_head=True`` also gets a multi-head model without weights; ``reward`` is then the first head
    (for plots) and ``heads`` holds them all.
    """

    reward: np.ndarray
    heads: np.ndarray | None = None
    head_names: list[str] = field(default_factory=lambda: ["score"])
    weighted: bool = False
    #: a distributional model's kind ("mean_var", "rating_ce"; :mod:`rmlib.models.distribution`) and its
    #: outputs beside the reward (its mean): ``std`` (N,), and ``probs`` (N, levels) of a rating model
    distribution: str | None = None
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


class Record:
    """One raw record while a suite parses it: getters that raise :class:`DataError` naming the source,
    the record index and the field, and :meth:`add` to append the record's items to the scoring list."""

    def __init__(self, raw: Mapping[str, Any], source: str, index: int, items: list[dict[str, Any]]) -> None:
        self.raw, self.source, self.index, self._items = raw, source, index, items

    def error(self, name: str | None, message: str, reason: str = "bad_value") -> DataError:
        return DataError(self.source, self.index, name, message, reason)

    def get(self, *keys: str) -> Any:
        """The first of ``keys`` present and not null; a ``missing_field`` error naming ``keys[0]`` else."""
        for k in keys:
            if self.raw.get(k) is not None:
                return self.raw[k]
        raise self.error(keys[0], "missing; present keys: " + ", ".join(sorted(map(str, self.raw))),
                         "missing_field")

    def prompt(self, *keys: str) -> Messages:
        """A prompt given as text (one user turn) or as a list of chat messages."""
        value = self.get(*keys)
        if isinstance(value, str):
            return [{"role": "user", "content": check_text(value, self.source, self.index, keys[0])}]
        return list(check_messages(value, self.source, self.index, keys[0]))

    def text(self, *keys: str) -> str:
        return check_text(self.get(*keys), self.source, self.index, keys[0], allow_empty=True)

    def texts(self, key: str, length: int | None = None) -> list[str]:
        value = self.get(key)
        if not isinstance(value, (list, tuple)):
            raise self.error(key, f"expected a list of strings, got {type(value).__name__}", "wrong_type")
        if length is not None and len(value) != length:
            raise self.error(key, f"expected {length} entries, got {len(value)}")
        return [check_text(v, self.source, self.index, f"{key}[{i}]", allow_empty=True) for i, v in enumerate(value)]

    def response(self, key: str) -> tuple[str, Messages | None]:
        """A response given as text, or as a conversation ending in the assistant turn (the turns before it
        are then the prompt, returned second)."""
        value = self.get(key)
        if isinstance(value, str):
            return check_text(value, self.source, self.index, key, allow_empty=True), None
        msgs = list(check_messages(value, self.source, self.index, key))
        if not msgs or msgs[-1]["role"] != "assistant":
            raise self.error(key, "a conversation must end with an assistant message", "malformed_messages")
        return msgs[-1]["content"], msgs[:-1]

    def add(self, prompt: Messages, responses: Sequence[str]) -> list[int]:
        """Append one item per response (all with ``prompt``); their indices, the record's ``slots``."""
        start = len(self._items)
        self._items.extend({"prompt": prompt, "response": r} for r in responses)
        return list(range(start, len(self._items)))


@dataclass(frozen=True)
class Suite:
    """One benchmark suite.

    * ``options``: a dataclass; each field has a default and ``metadata={"help": ...}``. Checks beyond
      types go in its ``__post_init__`` (raise ``ValueError``).
    * ``parse(record, options) -> dict``: one raw record (a :class:`Record`) → one parsed record holding
      at least ``slots`` (from ``record.add``).
    * ``metrics(data, scores, options) -> Report``: :class:`SuiteData` + :class:`Scores` → the report
      (headline metrics, tables, notes, and the data of its plots in ``Report.plots``).
    * ``hub_split``: the split read when the data is a hub dataset name and no split is given.
    * ``per_head``: the metrics handle a multi-head model without head weights (see :class:`Scores`).
    * ``read(suite, source, split, options) -> SuiteData | None``: reads the whole source another way
      (e.g. through a dataset format of :mod:`rmlib.data.formats`) when it returns a :class:`SuiteData`.
    * ``lists``: records hold k responses to one prompt (best-of-k, RewardBench 2): a decoder reward model
      scores each record's list in one packed call, the prompt computed once (shared-prompt scoring, equal
      to separate encoding to float rounding).
    """

    name: str
    help: str
    options: type
    parse: Callable[[Record, Any], dict[str, Any]]
    metrics: Callable[[SuiteData, Scores, Any], Any]
    hub_split: str | None = None
    per_head: bool = False
    read: Callable[[Suite, Any, str | None, Any], SuiteData | None] | None = None
    lists: bool = False

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.options):
            raise TypeError(f"suite {self.name!r}: options must be a dataclass, got {self.options!r}")


_SUITES: dict[str, Suite] = {}


def register_suite(suite: Suite, *, replace: bool = False) -> Suite:
    """Add ``suite`` to the registry (a second suite of the same name is an error unless ``replace``)."""
    if suite.name in _SUITES and not replace:
        raise ValueError(f"a suite named {suite.name!r} is already registered")
    _SUITES[suite.name] = suite
    return suite


def unregister_suite(name: str) -> None:
    _SUITES.pop(name, None)


def get_suite(name: str | Suite) -> Suite:
    if isinstance(name, Suite):
        return name
    if name not in _SUITES:
        raise ValueError(f"unknown suite {name!r}; choose from {list_suites()}")
    return _SUITES[name]


def list_suites() -> list[str]:
    """Registered suite names, in registration order."""
    return list(_SUITES)


def make_options(suite: str | Suite, options: Any = None, **kwargs: Any) -> Any:
    """The suite's options object from an instance, a mapping and/or keyword arguments.

    A key the suite does not take is a ``TypeError`` naming it and the keys the suite does take.
    """
    s = get_suite(suite)
    if isinstance(options, s.options):
        if not kwargs:
            return options
        options = dataclasses.asdict(options)
    given = {**dict(options or {}), **kwargs}
    names = [f.name for f in dataclasses.fields(s.options)]
    bad = sorted(set(given) - set(names))
    if bad:
        raise TypeError(f"suite {s.name!r} does not take options {bad}; it takes {names}")
    return s.options(**given)


def option_help(suite: str | Suite) -> list[tuple[str, str, str]]:
    """(name, default, help) for every option of the suite, from the dataclass fields."""
    s = get_suite(suite)
    out = []
    for f in dataclasses.fields(s.options):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        out.append((f.name, default, f.metadata.get("help", "")))
    return out
