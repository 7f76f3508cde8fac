"""The ``pairs`` suite: pairwise accuracy on preference pairs, overall and per group (the metric is
:func:`rmlib.eval.pairwise.pairwise_accuracy`, shared with training-time evaluation), and the pair parser and
format reader it shares with the ``agreement`` suite."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rmlib.eval.pairwise import pairwise_accuracy
from rmlib.eval.registry import Record, Scores, Suite, SuiteData
from rmlib.eval.report import Report
from rmlib.eval.suites._common import TIE_NOTE, pair_scores

if TYPE_CHECKING:
    from rmlib.eval.suites.agreement import AgreementOptions

__all__ = ["FORMAT_HELP", "PairsOptions", "parse_pair", "read_pairs"]

_GROUP_HELP = ("column (of the record, or of its 'meta') to group pairs by; without it a 'group' column is used "
               "when present")
FORMAT_HELP = ("read the file with a dataset format of rmlib.data.formats (a name such as hh_rlhf, or 'auto') "
               "instead of plain prompt/chosen/rejected records")


@dataclass
class PairsOptions:
    group_column: str | None = field(default=None, metadata={"help": _GROUP_HELP})
    format: str | None = field(default=None, metadata={"help": FORMAT_HELP})


def _user_text(prompt: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in prompt if m["role"] == "user")


def parse_pair(rec: Record, opts: PairsOptions | AgreementOptions) -> dict[str, Any]:
    """One preference pair (the ``pairs`` and ``agreement`` suites): chosen and rejected as text or as a
    conversation ending in the assistant turn, the group from the record or its ``meta``."""
    c, implicit = rec.response("chosen")
    r, _ = rec.response("rejected")
    p = rec.prompt("prompt") if rec.raw.get("prompt") is not None else implicit
    if p is None:
        raise rec.error("prompt", "missing (and chosen is not a conversation)", "missing_field")
    gcol = opts.group_column or "group"
    meta = rec.raw.get("meta") if isinstance(rec.raw.get("meta"), Mapping) else {}
    if opts.group_column is not None and gcol not in rec.raw and gcol not in meta:
        raise rec.error(gcol, "group column missing (looked in the record and its meta)", "missing_field")
    group = rec.raw[gcol] if gcol in rec.raw else meta.get(gcol)
    return {"id": rec.raw.get("id", rec.index), "group": group, "slots": rec.add(p, [c, r]),
            "prompt_text": _user_text(p)}


def read_pairs(suite: Suite, data: Any, split: str | None, opts: PairsOptions | AgreementOptions, *,
               rating_attribute: str | None = None) -> SuiteData | None:
    """With ``options.format``: pairs through :func:`rmlib.data.formats.load` (hh-rlhf, UltraFeedback,
    HelpSteer2-Preference, ...); the group is read from the example's ``meta``. With ``rating_attribute``
    (the agreement suite) a ratings format gives pairs by that attribute
    (:func:`rmlib.data.helpsteer2.rating_pairs`)."""
    if opts.format is None:
        return None
    from rmlib.data.formats import load
    from rmlib.data.schema import DataError

    loaded = load(data, None if opts.format == "auto" else opts.format, split=split)
    examples = loaded.examples
    info: dict[str, Any] = {}
    if loaded.kind == "ratings" and rating_attribute is not None:
        from rmlib.data.helpsteer2 import rating_pairs

        examples, info = rating_pairs(examples, rating_attribute, str(data))
    elif loaded.kind != "pairs":
        raise ValueError(f"{suite.name}: format {loaded.format!r} gives {loaded.kind}, not preference pairs"
                         + (" (the agreement suite builds pairs from ratings)" if loaded.kind == "ratings" else ""))
    items: list[dict[str, Any]] = []
    gcol = opts.group_column or "group"
    records = []
    for i, ex in enumerate(examples):
        if opts.group_column is not None and gcol not in ex.meta:
            raise DataError(str(data), i, gcol, "group column missing", "missing_field")
        p = list(ex.prompt)
        slots = Record({}, str(data), i, items).add(p, [ex.chosen, ex.rejected])
        records.append({"id": ex.meta.get("id", i), "group": ex.meta.get(gcol), "slots": slots,
                        "prompt_text": _user_text(p)})
    return SuiteData(suite.name, records, items, f"{data} ({loaded.format})", opts, info=info)


def _metrics_pairs(d: SuiteData, scores: Scores, opts: PairsOptions) -> Report:
    c, r_ = pair_scores(d, scores.reward)
    groups = [r["group"] for r in d.records]
    res = pairwise_accuracy(c, r_, groups if any(g is not None for g in groups) else None)
    tables = {}
    if "groups" in res:
        tables["groups"] = [{"group": k, **v} for k, v in res["groups"].items()]
    return Report("pairs", metrics={k: v for k, v in res.items() if k != "groups"}, tables=tables,
                  notes=[TIE_NOTE, "Every pair weighs 1, overall and inside its group."],
                  plots={"reward_histogram": {"kind": "reward_histogram", "chosen": c, "rejected": r_}})


SUITE = Suite("pairs", "pairwise accuracy on preference pairs, overall and per group", PairsOptions, parse_pair,
              _metrics_pairs, read=read_pairs)
