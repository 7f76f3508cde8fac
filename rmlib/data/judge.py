"""Pairwise Justifier data: the judge prompt, its target text, flip augmentation and token ids.

The Pairwise Justifier of HelpSteer2-Preference (Wang et al., arXiv 2410.01257, §3.2 and appendix C)
is a causal LM fine-tuned with cross-entropy to read a prompt and two responses and write why one is
better, ending in a statement "@Response N is ... better". This module turns a
:class:`~rmlib.data.schema.JudgeExample` into that training sequence:

* **input** (:func:`judge_input`): ``{prompt} @Response 1:\\n{response_1}\\n@Response 2:\\n{response_2}\\n
  Between @Response 1 and @Response 2, which is better?``, the paper's template, sent as the *user turn*
  of the model's chat template when the tokenizer has one (plain text followed by a newline when it does
  not). ``{prompt}`` is the conversation being judged: a single user message is its text; a multi-turn
  conversation (or one with a system message) is written out as a transcript, one ``Role: content``
  paragraph per turn. HelpSteer2 itself stores multi-turn prompts as one string with the turns joined
  by ``<extra_id_1>User`` / ``<extra_id_1>Assistant`` markers and the paper formats ``{prompt}`` from that
  string, so the judge sees the whole conversation as text inside one user turn; rmlib writes the
  turns with readable role names instead of NeMo's markers.
* **target** (:data:`TARGETS`): the paper's default, the elaboration followed by the statement, or its
  two ablations, the statement only and the bare label ``@Response N``.
* **flip augmentation** (:func:`flip_example`): the responses swapped and every name in the target
  rewritten consistently (:func:`swap_response_names`).

Token ids: the target is the assistant turn (the chat template's own rendering, end-of-turn token
included, so the model learns to stop); without a chat template the prompt ends with a newline and
the target ends with the eos token. Only target tokens carry loss: :class:`JudgeFeatures` stores each
sequence with its number of prompt tokens, and the collator builds labels from that.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from rmlib.data.helpsteer2 import (
    NEITHER_VALID,
    aggregate_strength,
    annotation_strengths,
    parse_helpsteer2_prompt,
    pick_most_similar,
    split_justification,
    statement_better,
)
from rmlib.data.schema import (
    DataError,
    JudgeExample,
    Message,
    OnInvalid,
    ValidationReport,
    check_text,
    make_judge,
    require,
)
from rmlib.data.tokenize import Encoded

__all__ = ["JUDGE_TEMPLATE", "JUSTIFICATION_SETS", "TARGETS", "JudgeEncoder", "JudgeFeatures", "flip_example",
           "judge_examples", "judge_input", "justifier_examples", "overall_justification", "record_justifications",
           "render_conversation", "swap_response_names", "target_text"]

JUDGE_TEMPLATE = ("{prompt} @Response 1:\n{response_1}\n@Response 2:\n{response_2}\n"
                  "Between @Response 1 and @Response 2, which is better?")
"""The Pairwise Justifier's input (arXiv 2410.01257, §3.2)."""

Target = Literal["elaboration_statement", "statement", "label"]
TARGETS: tuple[str, ...] = ("elaboration_statement", "statement", "label")
"""What the justifier learns to write: the paper's default (reason first, then the statement) and its two
ablations (the statement alone; the bare label ``@Response N``)."""

JUSTIFICATION_SETS: tuple[str, ...] = ("overall", "all")


def judge_examples(records: Iterable[Mapping[str, Any]], source: str, *,
                   on_invalid: OnInvalid = "error") -> tuple[list[JudgeExample], ValidationReport]:
    """One :class:`JudgeExample` per raw annotation justification of HelpSteer2-Preference records.

    We use each raw ``all_preferences_unprocessed[k].justification`` (not the published aggregated
    statement) because every annotator's argument is a distinct training target and its strength
    and wording agree with each other. The training text is ``elaboration + " " + statement``:
    it **ends with the preference statement**, as the Pairwise Justifier is trained to reason
    first and conclude last. ``better`` comes from the statement and ``strength`` is the
    annotation's |strength|.

    Filtered by rule (``report.filtered``): ``neither_valid`` (strength −100), ``no_statement``
    (no "@Response X is ... better" sentence) and ``statement_contradicts_strength`` (the statement
    favours the response the strength sign does not; a 0 strength contradicts any statement).
    Task-level filtering is not done here: pass the records kept by :func:`aggregate_file` to train
    only on tasks that survive the paper's rule. ``report.seen`` counts annotations, plus one per
    record that could not be read at all (counted in ``skipped``).
    """
    if on_invalid not in ("error", "skip"):
        raise ValueError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")
    report = ValidationReport(source)
    out: list[JudgeExample] = []
    for index, record in enumerate(records):
        try:
            strengths = annotation_strengths(record, source, index)
            prompt_text = require(record, "prompt", source, index)
            if not isinstance(prompt_text, str):
                raise DataError(source, index, "prompt", f"expected a string, got {type(prompt_text).__name__}",
                                "wrong_type")
            prompt = parse_helpsteer2_prompt(prompt_text)
            r1 = require(record, "response_1", source, index)
            r2 = require(record, "response_2", source, index)
            built: list[JudgeExample] = []
            local = ValidationReport(source)
            for k, (strength, entry) in enumerate(zip(strengths, record["all_preferences_unprocessed"])):
                local.seen += 1
                where = f"{source}: record {index}: annotation {k}"
                if strength == NEITHER_VALID:
                    local.filter("neither_valid", where)
                    continue
                justification = check_text(require(entry, "justification", source, index), source, index,
                                           f"all_preferences_unprocessed[{k}].justification", allow_empty=True)
                split = split_justification(justification)
                if split is None:
                    local.filter("no_statement", f"{where}: {justification[:80]!r}")
                    continue
                statement, elaboration = split
                better = statement_better(statement)
                if strength == 0 or (strength < 0) != (better == 1):
                    local.filter("statement_contradicts_strength",
                                 f"{where}: strength {strength} but {statement[:60]!r}")
                    continue
                text = f"{elaboration} {statement}" if elaboration else statement
                built.append(make_judge(source, index, prompt, r1, r2, text, better, strength=abs(strength),
                                        meta={"index": index, "annotation": k, "split": record.get("split")}))
                local.kept += 1
        except DataError as err:
            if on_invalid == "error":
                raise
            report.seen += 1
            report.skip(err)
            continue
        report.merge(local)
        out += built
    return out, report


def render_conversation(prompt: Sequence[Message]) -> str:
    """The ``{prompt}`` of the template: one user message as is, anything longer as a transcript."""
    if len(prompt) == 1 and prompt[0]["role"] == "user":
        return prompt[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)


def judge_input(prompt: Sequence[Message], response_1: str, response_2: str) -> str:
    """The user turn the justifier reads (the paper's template)."""
    return JUDGE_TEMPLATE.format(prompt=render_conversation(prompt), response_1=response_1, response_2=response_2)


def target_text(justification: str, better: int, target: str = "elaboration_statement") -> str:
    """The text the justifier is trained to write for a justification favouring ``better``.

    ``justification`` is split into (statement, elaboration) by the paper's rule
    (:func:`rmlib.data.helpsteer2.split_justification`: everything before the first "@Response N ...
    better" goes). A justification without a statement can only train the bare label.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if target == "label":
        return f"@Response {better}"
    split = split_justification(justification)
    if split is None:
        raise ValueError(f"no '@Response 1/2 ... better' statement in the justification {justification[:80]!r}; "
                         "only target='label' can train on it")
    statement, elaboration = split
    if target == "statement" or not elaboration:
        return statement
    return f"{elaboration} {statement}"


# ---------------------------------------------------------------------------------------------
# Flip augmentation

_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.DOTALL)
_NAME = re.compile(r"(@?)(Response)(\s*)([12])(?!\d)", re.IGNORECASE)


def swap_response_names(text: str) -> str:
    """Swap every mention of response 1 and response 2, in one pass.

    A mention is "@Response 1/2" and also "Response 1/2" without "@" (annotators write both; any case,
    "Response 12" is not a mention). Both names in one sentence swap consistently because every match
    is rewritten at once. Names inside quotation marks are rewritten (a quoted "@Response 1" still names
    the response), but text inside code (`inline` or ```fenced```) is left as is: code quotes the
    responses' own content, which the flip moves wholesale, so its words must not change.
    """
    def swap(m: re.Match) -> str:
        return f"{m.group(1)}{m.group(2)}{m.group(3)}{3 - int(m.group(4))}"

    out, last = [], 0
    for code in _CODE.finditer(text):
        out.append(_NAME.sub(swap, text[last:code.start()]))
        out.append(code.group(0))
        last = code.end()
    out.append(_NAME.sub(swap, text[last:]))
    return "".join(out)


def flip_example(ex: JudgeExample) -> JudgeExample:
    """The same judgement with the responses swapped: names in the justification and ``better`` follow
    ("flipping Response 1 with Response 2 and correspondingly updating the preference label", §3.2)."""
    return replace(ex, response_1=ex.response_2, response_2=ex.response_1,
                   justification=swap_response_names(ex.justification), better=3 - ex.better,
                   meta={**ex.meta, "flipped": True})


# ---------------------------------------------------------------------------------------------
# HelpSteer2-Preference justification sets


def _signed(ex: JudgeExample) -> int:
    return int(-ex.strength if ex.better == 1 else ex.strength) if ex.strength is not None else 0


def justifier_examples(records: Iterable[Mapping[str, Any]], source: str, *, justifications: str = "overall",
                       seed: int = 0, on_invalid: OnInvalid = "error") -> tuple[list[JudgeExample], ValidationReport]:
    """Justifier training examples from raw HelpSteer2-Preference records, in one of the paper's two sets.

    Built on :func:`judge_examples` (one example per annotation that has a statement
    agreeing with its strength; prefixes before the statement removed). Then, per task:

    * ``"overall"`` (Overall Preference Justification): tasks the paper keeps (overall strength by its
      aggregation rule, not 0, spread ≤ 2); one justification per task, picked at random among the
      annotators whose own strength equals the overall strength. The pick is seeded per record
      (``Random(f"{seed}:{record index}")``), so it does not depend on the order or number of records.
    * ``"all"`` (All Justifications, "up to three"): the justifications of the three most similar
      annotations, the same three the overall strength is computed from
      (:func:`rmlib.data.helpsteer2.pick_most_similar`), of tasks the paper keeps; fewer when some of the
      three have no usable statement. The paper's own counts (24,698 from 7,118 tasks) exceed three per
      task, so it must have used more annotations on some tasks; rmlib keeps the documented "up to three".

    ``meta["split"]`` is ``"train"`` for the file's train rows and ``"validation"`` for every other value
    (NeMo-Aligner's rule, as the ``helpsteer2_preference`` format). Dropped tasks and annotations are
    counted in the report (``task_dropped``, ``no_matching_annotator``, ``not_picked``,
    ``not_in_most_similar`` and the reasons of ``judge_examples``).
    """
    if justifications not in JUSTIFICATION_SETS:
        raise ValueError(f"justifications must be one of {JUSTIFICATION_SETS}, got {justifications!r}")
    report = ValidationReport(source)
    out: list[JudgeExample] = []
    for index, record in enumerate(records):
        try:
            out += record_justifications(record, index, source, report, justifications=justifications, seed=seed)
        except DataError as err:
            if on_invalid == "error":
                raise
            report.seen += 1
            report.skip(err)
    return out, report


def record_justifications(record: Mapping[str, Any], index: int, source: str, report: ValidationReport, *,
                          justifications: str = "overall", seed: int = 0) -> list[JudgeExample]:
    """The examples one raw HelpSteer2-Preference record gives in a justification set (see
    :func:`justifier_examples`); what it drops is counted in ``report``, a bad record raises
    :class:`~rmlib.data.schema.DataError` naming ``index``."""
    try:
        found, local = judge_examples([record], source)
    except DataError as err:  # judge_examples numbers its one record 0: name the real one
        raise DataError(source, index, err.field, err.detail, err.reason) from None
    raw_split = record.get("split")
    split = None if raw_split is None else "train" if raw_split == "train" else "validation"
    found = [replace(e, meta={**e.meta, "index": index, "split": split, "raw_split": raw_split}) for e in found]
    report.merge(local)
    if not found:
        return []
    strengths = [int(e["strength"]) for e in record["all_preferences_unprocessed"]]
    overall = aggregate_strength(strengths)
    if overall is None:
        report.filter("task_dropped", f"{source}: record {index}: the paper's aggregation drops the task "
                                      f"(strengths {strengths})")
        report.kept -= len(found)
        return []
    if justifications == "overall":
        matching = [ex for ex in found if _signed(ex) == overall]
        if not matching:
            report.filter("no_matching_annotator", f"{source}: record {index}: no justification with a "
                                                   f"statement from an annotator whose strength is {overall}")
            report.kept -= len(found)
            return []
        report.kept -= len(found) - 1
        for _ in range(len(found) - 1):
            report.filter("not_picked", f"{source}: record {index}: one justification per task")
        return [random.Random(f"{seed}:{index}").choice(matching)]
    valid_k = [k for k, s in enumerate(strengths) if s != NEITHER_VALID]
    chosen = {valid_k[i] for i in pick_most_similar([strengths[k] for k in valid_k])}
    kept = []
    for ex in found:
        if int(ex.meta["annotation"]) in chosen:
            kept.append(ex)
        else:
            report.kept -= 1
            report.filter("not_in_most_similar", f"{source}: record {index}: annotation {ex.meta['annotation']} "
                                                 "is not one of the three most similar")
    return kept


def overall_justification(record: Mapping[str, Any], index: int, source: str,
                          report: ValidationReport) -> JudgeExample | None:
    """The ``helpsteer2_justifier`` format's converter: a record's Overall Preference Justification (seed 0),
    or None with the reason the task gives none counted in ``report`` (one count per record)."""
    scratch = ValidationReport(source)
    found = record_justifications(record, index, source, scratch, justifications="overall", seed=0)
    if found:
        return found[0]
    reason = next((r for r in ("task_dropped", "no_matching_annotator") if scratch.filtered[r]), "no_justification")
    report.filter(reason, f"{source}: record {index}: " + {
        "task_dropped": "the paper's aggregation drops the task (spread > 2, overall 0 or too few valid)",
        "no_matching_annotator": "no annotator whose strength equals the overall strength wrote a statement",
        "no_justification": "no justification with an '@Response N ... better' statement"}[reason])
    return None


# ---------------------------------------------------------------------------------------------
# Token ids


@dataclass
class JudgeFeatures:
    """One judge example as training sequences: the original and, with flip augmentation, the flipped one.

    ``seqs[k].prompt_len`` prompt tokens carry no loss; every token after them is target. Both orders of
    one example stay one item, so they always fall on the same side of a train/eval split.
    """

    seqs: list[Encoded]
    index: int
    labels: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return sum(len(s.ids) for s in self.seqs)

    @property
    def n_target(self) -> int:
        return sum(len(s.ids) - s.prompt_len for s in self.seqs)


class JudgeEncoder:
    """Token ids of justifier prompts (for generation) and of prompt + target (for training).

    The prompt is rendered through the chat template with ``add_generation_prompt=True``; the target is
    what the template adds when the same conversation gets the target as its assistant turn (so a
    template's end-of-turn token is part of the target). Prompt and target are tokenized separately, as
    :class:`~rmlib.data.tokenize.Featurizer` does, so prompt ids are identical at training and generation.
    """

    def __init__(self, tokenizer, max_length: int = 1024):
        self.tok = tokenizer
        self.max_length = max_length
        self.has_template = bool(getattr(tokenizer, "chat_template", None))

    def _ids_many(self, texts: list[str]) -> list[list[int]]:
        return self.tok(texts, add_special_tokens=False)["input_ids"] if texts else []

    def prompt_texts(self, inputs: Sequence[str]) -> list[str]:
        if self.has_template:
            return [self.tok.apply_chat_template([{"role": "user", "content": x}], add_generation_prompt=True,
                                                 tokenize=False) for x in inputs]
        bos = self.tok.bos_token if getattr(self.tok, "bos_token", None) else ""
        return [f"{bos}{x}\n" for x in inputs]

    def target_texts(self, inputs: Sequence[str], prompt_texts: Sequence[str], targets: Sequence[str]) -> list[str]:
        if not self.has_template:
            eos = self.tok.eos_token or ""
            return [t + eos for t in targets]
        out = []
        for x, p, t in zip(inputs, prompt_texts, targets):
            full = self.tok.apply_chat_template([{"role": "user", "content": x}, {"role": "assistant", "content": t}],
                                                tokenize=False)
            if not full.startswith(p):
                raise ValueError("the chat template renders the judge prompt differently with and without the "
                                 "answer, so the target boundary is unknown; use another template")
            out.append(full[len(p):])
        return out

    def prompts(self, inputs: Sequence[str]) -> list[list[int]]:
        """Prompt ids for generation."""
        return self._ids_many(self.prompt_texts(inputs))

    def encode_many(self, inputs: Sequence[str], targets: Sequence[str]) -> list[Encoded | None]:
        """Prompt + target ids; None when they do not fit in ``max_length`` (never truncated: cutting the
        prompt would hide part of a response the target argues about)."""
        p_texts = self.prompt_texts(inputs)
        t_texts = self.target_texts(inputs, p_texts, targets)
        p_ids, t_ids = self._ids_many(p_texts), self._ids_many(t_texts)
        out: list[Encoded | None] = []
        for p, t in zip(p_ids, t_ids):
            out.append(Encoded(p + t, len(p)) if len(p) + len(t) <= self.max_length and t else None)
        return out

    def encode_examples(self, examples: Sequence[JudgeExample], *, target: str = "elaboration_statement",
                        flip: bool = False) -> list[JudgeFeatures | None]:
        """Features of each example (None when a sequence does not fit); ``flip`` adds the flipped order."""
        views = [[ex, flip_example(ex)] if flip else [ex] for ex in examples]
        flat = [v for vs in views for v in vs]
        enc = self.encode_many([judge_input(v.prompt, v.response_1, v.response_2) for v in flat],
                               [target_text(v.justification, v.better, target) for v in flat])
        out: list[JudgeFeatures | None] = []
        k = 0
        for i, vs in enumerate(views):
            seqs, k = enc[k:k + len(vs)], k + len(vs)
            out.append(None if any(s is None for s in seqs) else JudgeFeatures(list(seqs), i))
        return out
