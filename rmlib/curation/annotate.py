"""LLM annotation of preference pairs over any OpenAI-compatible server (Skywork-Reward-V2, stage 1).

Skywork-Reward-V2 (Liu et al., arXiv 2507.01352, section 3.2) has LLMs write, for every pair of its pool,
the preference attributes (task category, objectivity, controversiality, desired attributes, annotation
guideline) and, for the pairs retrieved where the reward model errs, a preference label with the two
responses shown as "Candidate 1" and "Candidate 2" in a random order and human-labelled examples in the
prompt. At that scale the LLM runs on an inference engine, so :func:`annotate_pairs` is a client of the
chat-completions protocol every engine serves (:mod:`rmlib.curation.llm_client`) and:

* renders each pair with a template (:mod:`rmlib.curation.prompts`; ``skywork_attributes`` by default,
  ``justifier`` for ``rmlib serve`` of a Pairwise Justifier, or the user's file), the input's chosen
  response in position 1 or 2 by a seeded coin per pair, or (``both_orders``) once in each position;
* keeps at most ``concurrency`` requests in flight, retried as the client allows, and journals every
  answer as it comes (:mod:`rmlib.curation.journal`): a killed run, rerun with the same command, asks only
  what it was not yet told, so no pair is annotated twice or lost;
* parses every answer (:func:`rmlib.curation.answers.parse_answer`) and accounts for every pair:
  ``data.jsonl`` holds the annotated pairs, ``unannotated.jsonl`` every other one with its reason
  (``answer:<why>`` for an unusable answer, ``request:<why>`` for a request that gave up, ``tie``,
  ``orders_disagree`` when the two orders' verdicts differ), so ``n_in = n_out + removed``.

An annotated pair carries ``meta.attributes`` (the attributes the answer gave) and
``meta.curation.annotation`` (model, template, whether the LLM agrees with the input's label, its
strength, whether the row was flipped). With ``label="llm"`` (default) the LLM's verdict is the label: a
pair it prefers the other way is written flipped, with the LLM's strength. With ``label="keep"`` the input's
label stays and ``judge.jsonl`` (rows ``{index, agrees}``) holds the verdicts in the form
``rmlib data filter --judge`` reads, indexed by position in ``data.jsonl``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rmlib.curation.answers import Answer, parse_answer
from rmlib.curation.journal import Journal, journal_path
from rmlib.curation.llm_client import ChatClient, ClientOptions, wait_for_server
from rmlib.curation.prompts import DEFAULT_TEMPLATE, Template, load_template
from rmlib.curation.rules.dedup import pair_keys
from rmlib.curation.rules.table import (
    BATCH,
    DATA_FILE,
    StepReport,
    check_not_inside,
    pair_row,
    read_pairs,
    step_output,
    write_rows,
)
from rmlib.data.canonical import hash64
from rmlib.data.schema import DataError, OnInvalid
from rmlib.io import write_jsonl

__all__ = ["AnnotateAborted", "annotate_pairs", "chosen_position", "MAX_PROMPT_EXAMPLES"]

Label = Literal["llm", "keep"]
MAX_PROMPT_EXAMPLES = 8
"""Skywork-Reward-V2 shows "at most eight" human-labelled pairs before the target (appendix D.3)."""
_TIE, _AGREE, _DISAGREE, _FAILED = 0, 1, 2, 3


class AnnotateAborted(RuntimeError):
    """The endpoint kept failing; the journal keeps every answer so far and a rerun resumes."""


def chosen_position(index: int, seed: int) -> int:
    """Where pair ``index`` shows the input's chosen response (1 or 2): a coin seeded by (seed, index), the
    same in every run and whatever order the requests finish in."""
    return 1 + (hash64(f"rmlib-annotate:{seed}:{index}") & 1)


@dataclass
class _Unit:
    index: int
    position: int
    key: int
    messages: list[dict[str, str]]


def _examples(path: str | os.PathLike | None, fmt: str | None, seed: int) -> list[dict[str, Any]]:
    """The labelled pairs that may be shown in prompts, each in a seeded random order."""
    if path is None:
        return []
    from rmlib.data.formats import stream

    st = stream(path, fmt)
    if st.kind != "pairs":
        raise DataError(str(path), None, None, f"holds {st.kind} data; examples must be preference pairs", "wrong_kind")
    out = []
    for j, ex in enumerate(st.examples):
        first = chosen_position(j, seed + 1) == 1
        out.append({"prompt": list(ex.prompt), "response_a": ex.chosen if first else ex.rejected,
                    "response_b": ex.rejected if first else ex.chosen, "preferred": 1 if first else 2,
                    "attributes": dict(ex.meta).get("attributes")})
    return out


def _shown_examples(row: Mapping[str, Any], examples: Sequence[dict[str, Any]], source: str,
                    limit: int = MAX_PROMPT_EXAMPLES) -> list[dict]:
    if not examples:
        return []
    meta = json.loads(row["meta"]) if row["meta"] else {}
    by = (meta.get("curation") or {}).get("retrieved_by") or []
    if not isinstance(by, list) or not all(isinstance(j, int) and not isinstance(j, bool) for j in by):
        raise DataError(source, int(row["index"]), "meta.curation.retrieved_by",
                        f"must be a list of example indices, got {by!r}", "wrong_type")
    bad = [j for j in by if not 0 <= j < len(examples)]
    if bad:
        raise DataError(source, int(row["index"]), "meta.curation.retrieved_by",
                        f"indices {bad[:5]} are outside the {len(examples)} examples: give the labelled file the "
                        "batch was retrieved with", "bad_value")
    return [examples[j] for j in by[:limit]]


def _units(table: Any, tpl: Template, journal: Journal, positions: Sequence[int] | None, seed: int,
           examples: Sequence[dict[str, Any]], source: str, limit: int) -> Iterator[_Unit]:
    """The requests not yet answered, in input order (the journal's keys are checked batch by batch)."""
    for batch in table.ds.iter(batch_size=BATCH):
        idx = np.asarray(batch["index"], dtype=np.int64)
        keys = np.array([pair_keys(p, c, r)[0] for p, c, r in zip(batch["prompt"], batch["chosen"],
                                                                   batch["rejected"])], dtype=np.int64)
        journal.check_keys(idx, keys)
        for j, i in enumerate(idx.tolist()):
            todo = [p for p in (positions or (chosen_position(i, seed),))
                    if journal.offsets[i, journal.slot_of(p)] < 0]
            if not todo:
                continue
            row = {k: batch[k][j] for k in batch}
            prompt = json.loads(row["prompt"])
            shown = _shown_examples(row, examples, source, limit)
            for p in todo:
                a, b = (row["chosen"], row["rejected"]) if p == 1 else (row["rejected"], row["chosen"])
                yield _Unit(i, p, int(keys[j]), tpl.messages(prompt, a, b, shown))


async def _ask_all(units: Iterator[_Unit], options: ClientOptions, journal: Journal,
                   failures: dict[tuple[int, int], tuple[str, str]], max_consecutive_failures: int
                   ) -> ChatClient:
    """Run every unit with at most ``options.concurrency`` in flight; answers go to the journal at once."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=2 * options.concurrency)
    state = {"consecutive": 0, "abort": None}

    async def produce() -> None:
        for u in units:
            if state["abort"]:
                break
            await queue.put(u)
        for _ in range(options.concurrency):
            await queue.put(None)

    async with ChatClient(options) as client:
        async def work(lane: int) -> None:
            while (u := await queue.get()) is not None:
                if state["abort"]:
                    continue
                reply = await client.complete(u.messages, lane)
                if reply.failure is None:
                    state["consecutive"] = 0
                    journal.append({"i": u.index, "p": u.position, "k": u.key, "content": reply.content,
                                    "finish": reply.finish_reason, "attempts": reply.attempts})
                    continue
                failures[(u.index, u.position)] = (reply.failure, reply.detail)
                state["consecutive"] += 1
                if max_consecutive_failures and state["consecutive"] >= max_consecutive_failures:
                    state["abort"] = (f"{state['consecutive']} requests in a row failed (last: {reply.failure}: "
                                      f"{reply.detail[:200]})")

        tasks = [asyncio.create_task(work(lane)) for lane in range(options.concurrency)]
        try:
            await asyncio.gather(produce(), *tasks)
        finally:
            for t in tasks:
                t.cancel()
    if state["abort"]:
        raise AnnotateAborted(f"rmlib data annotate: {options.endpoint}: {state['abort']}; the journal "
                              f"{journal.path} keeps every answer so far: rerun the same command to resume")
    return client


def _verdicts(journal: Journal, tpl: Template, failures: Mapping[tuple[int, int], tuple[str, str]]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Per pair and slot: verdict code (tie/agree/disagree/failed, -1 unasked), reason id, strength."""
    n, slots = journal.offsets.shape
    verdict = np.full((n, slots), -1, dtype=np.int8)
    reason = np.full((n, slots), -1, dtype=np.int32)
    strength = np.zeros((n, slots), dtype=np.int8)
    reasons: dict[str, int] = {}

    def fail(i: int, s: int, why: str) -> None:
        verdict[i, s] = _FAILED
        reason[i, s] = reasons.setdefault(why, len(reasons))

    for offset, rec in journal.lines():
        i, p = rec["i"], rec["p"]
        s = journal.slot_of(p)
        if journal.offsets[i, s] != offset:
            continue  # a duplicate line: the first answer stands
        ans = parse_answer(rec.get("content"), answer=tpl.answer, required=tpl.required,
                           finish_reason=rec.get("finish"))
        if not ans.ok:
            fail(i, s, f"answer:{ans.failure}")
        elif ans.preferred == 0:
            verdict[i, s] = _TIE
        else:
            verdict[i, s] = _AGREE if ans.preferred == p else _DISAGREE
            strength[i, s] = ans.strength or 0
    for (i, p), (why, _) in failures.items():
        s = journal.slot_of(p)
        if journal.offsets[i, s] < 0:
            fail(i, s, f"request:{why}")
    names = [""] * len(reasons)
    for why, k in reasons.items():
        names[k] = why
    return verdict, reason, strength, names


def _decide(verdict: np.ndarray, reason: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Per pair: -1 annotated, else an index into the returned reason names (first failed slot wins)."""
    names = [*names, "tie", "orders_disagree"]
    tie, disagree = len(names) - 2, len(names) - 1
    out = np.full(verdict.shape[0], -1, dtype=np.int32)
    failed = verdict == _FAILED
    any_failed = failed.any(axis=1)
    first = np.argmax(failed, axis=1)
    out[any_failed] = reason[np.flatnonzero(any_failed), first[any_failed]]
    ok = ~any_failed
    if verdict.shape[1] == 1:
        out[ok & (verdict[:, 0] == _TIE)] = tie
    else:
        both_tie = (verdict == _TIE).all(axis=1)
        out[ok & both_tie] = tie
        out[ok & ~both_tie & (verdict[:, 0] != verdict[:, 1])] = disagree
    return out, names


def annotate_pairs(source: str | os.PathLike, out_dir: str | os.PathLike, *, endpoint: str, model: str,
                   template: str | os.PathLike = DEFAULT_TEMPLATE, both_orders: bool = False, label: Label = "llm",
                   examples: str | os.PathLike | None = None, prompt_examples: int = MAX_PROMPT_EXAMPLES,
                   seed: int = 0, concurrency: int = 8, wait_for: float = 0.0,
                   timeout: float = 120.0, max_retries: int = 6, deadline: float = 900.0,
                   backoff_base: float = 1.0, backoff_max: float = 60.0, temperature: float = 0.0,
                   max_tokens: int = 1024, api_key: str | None = None, extra_body: Mapping[str, Any] | None = None,
                   max_consecutive_failures: int = 64, fsync_every: int = 64, format: str | None = None,
                   examples_format: str | None = None, on_invalid: OnInvalid = "error",
                   max_examples: int = 3) -> StepReport:
    """Annotate every pair of ``source`` with the LLM behind ``endpoint`` (see the module docstring).

    A run killed at any point (SIGKILL included) is resumed by calling it again with the same arguments:
    the journal ``<out_dir>.journal.jsonl`` holds the answers so far and is removed once the output is
    published. :class:`AnnotateAborted` is raised (journal kept) after ``max_consecutive_failures`` requests
    in a row gave up (0: never), since a dead server would otherwise turn the whole input into failures.
    ``examples`` (with ``prompt_examples``, at most that many per pair) and ``wait_for`` (seconds to wait for
    the server to answer ``GET /models`` first) are described with the command in docs/curation.md.
    """
    if label not in ("llm", "keep"):
        raise ValueError(f"label must be 'llm' or 'keep', got {label!r}")
    check_not_inside(source, out_dir)
    tpl = load_template(template)
    options = ClientOptions(endpoint=endpoint, model=model, concurrency=concurrency, timeout=timeout,
                            max_retries=max_retries, deadline=deadline, backoff_base=backoff_base,
                            backoff_max=backoff_max, temperature=temperature, max_tokens=max_tokens, api_key=api_key,
                            extra_body=dict(extra_body or {}))
    if not 0 <= prompt_examples <= MAX_PROMPT_EXAMPLES:
        raise ValueError(f"prompt_examples must be in [0, {MAX_PROMPT_EXAMPLES}], got {prompt_examples}")
    shown = _examples(examples, examples_format, seed)
    if wait_for:
        wait_for_server(endpoint, wait_for, api_key=api_key)
    positions = (1, 2) if both_orders else None
    header = {"source": str(source), "model": model, "template": tpl.sha256, "both_orders": both_orders,
              "seed": seed, "temperature": temperature, "max_tokens": max_tokens,
              "examples": None if examples is None else str(examples), "prompt_examples": prompt_examples,
              "extra_body": dict(extra_body or {})}
    report = StepReport("annotate", str(source), {
        "endpoint": endpoint, "model": model, "template": tpl.name, "template_source": tpl.source,
        "template_sha256": tpl.sha256, "answer": tpl.answer, "both_orders": both_orders, "label": label,
        "examples": header["examples"], "prompt_examples": prompt_examples, "seed": seed, "concurrency": concurrency,
        "temperature": temperature,
        "max_tokens": max_tokens, "timeout": timeout, "max_retries": max_retries, "deadline": deadline},
        max_examples=max_examples)
    jpath = journal_path(out_dir)
    with step_output(out_dir, report) as (stage, work):
        table = read_pairs(source, work, format=format, on_invalid=on_invalid, max_examples=max_examples)
        report.source, report.read = table.source, table.report.to_dict()
        n = report.n_in = len(table)
        journal = Journal(jpath, {**header, "n": n}, n, 2 if both_orders else 1, fsync_every=fsync_every)
        failures: dict[tuple[int, int], tuple[str, str]] = {}
        start = time.perf_counter()
        try:
            resumed = journal.resumed
            client = asyncio.run(_ask_all(_units(table, tpl, journal, positions, seed, shown, str(source), prompt_examples),
                                          options, journal, failures, max_consecutive_failures))
            asked = time.perf_counter() - start
            journal.sync()
            report.extra["requests"] = {
                "from_journal": resumed, "torn_line_cut": journal.torn, "attempts": client.attempts,
                "answered": client.answered, "retried": dict(sorted(client.retried.items())),
                "failed": dict(sorted(client.failed.items())), "seconds": round(asked, 3),
                "answered_per_second": round(client.answered / asked, 3) if asked > 0 else None}
            _write_outputs(table, journal, tpl, report, stage, failures, label, both_orders, seed, model)
        finally:
            journal.close()
    journal.remove()
    return report


def _excerpt(journal: Journal, i: int, slot: int, failures: Mapping, position: int) -> str:
    if journal.offsets[i, slot] >= 0:
        return (journal.read(int(journal.offsets[i, slot])).get("content") or "")[:300]
    return failures.get((i, position), ("", ""))[1][:300]


def _write_outputs(table: Any, journal: Journal, tpl: Template, report: StepReport, stage: Path,
                   failures: Mapping[tuple[int, int], tuple[str, str]], label: Label, both_orders: bool, seed: int,
                   model: str) -> None:
    verdict, reason, strength, names = _verdicts(journal, tpl, failures)
    decision, names = _decide(verdict, reason, names)
    n = len(table)
    ok = decision < 0
    # the verdict in the input's terms: the first slot's (both orders agree when the pair is kept)
    agrees = verdict[:, 0] == _AGREE
    llm_strength = np.where((strength > 0).all(axis=1), strength.min(axis=1), 0)

    def positions(i: int) -> tuple[int, ...]:
        return (1, 2) if both_orders else (chosen_position(i, seed),)

    def first_failed(i: int) -> int:
        slots = np.flatnonzero(verdict[i] == _FAILED)
        return int(slots[0]) if slots.size else 0

    counts = Counter(decision[~ok].tolist())
    for k in sorted(counts):
        report.remove(names[k], counts[k])
        for i in np.flatnonzero(decision == k)[:report.max_examples]:
            s = first_failed(int(i))
            report.example(names[k], table.ds[int(i)], answer=_excerpt(journal, int(i), s, failures,
                                                                       positions(int(i))[s]))

    def annotated(row: dict[str, Any]) -> dict[str, Any]:
        i = int(row["index"])
        rec = journal.read(int(journal.offsets[i, 0]))
        ans: Answer = parse_answer(rec.get("content"), answer=tpl.answer, required=tpl.required,
                                   finish_reason=rec.get("finish"))
        flip = label == "llm" and not agrees[i]
        s = int(llm_strength[i]) or None
        out = pair_row(row, flip=flip, curation={"annotation": {
            "model": model, "template": tpl.name, "agrees": bool(agrees[i]), "strength": s, "flipped": flip,
            "llm_prefers": "chosen" if (agrees[i] or flip) else "rejected", "positions": list(positions(i))}})
        if ans.attributes:
            out["meta"]["attributes"] = ans.attributes
        if label == "llm" and s is not None:
            out["strength"] = float(s)
        return out

    report.n_out = write_rows(table, stage / DATA_FILE, ok, make=annotated)

    def unannotated(row: dict[str, Any]) -> dict[str, Any]:
        i = int(row["index"])
        s = first_failed(i)
        return pair_row(row, curation={"annotation_failed": names[decision[i]],
                                       "answer": _excerpt(journal, i, s, failures, positions(i)[s])})

    write_rows(table, stage / "unannotated.jsonl", ~ok, make=unannotated)
    if label == "keep":
        write_jsonl(({"index": j, "agrees": bool(a)} for j, a in enumerate(agrees[ok].tolist())),
                    stage / "judge.jsonl")
    kept = int(ok.sum())
    report.extra["label_agreement"] = {
        "annotated": kept, "agrees_with_input": int(agrees[ok].sum()),
        "rate": round(float(agrees[ok].mean()), 6) if kept else None}
    if both_orders:
        two = ((verdict >= _TIE) & (verdict <= _DISAGREE)).all(axis=1)
        same = two & (verdict[:, 0] == verdict[:, 1])
        report.extra["both_orders"] = {"pairs_with_two_verdicts": int(two.sum()), "same_verdict": int(same.sum()),
                                       "agreement": round(float(same.sum() / two.sum()), 6) if two.any() else None}
    strengths = Counter(int(v) for v in llm_strength[ok].tolist())
    report.extra["strength_counts"] = {str(k): strengths[k] for k in sorted(strengths)}
    report.extra["pairs"] = n
