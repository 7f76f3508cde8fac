"""Evaluating a generative judge (the Pairwise Justifier): generate, parse the verdict, score.

* **Verdict** (:func:`parse_verdict`): the last "@Response N ... better" statement of the answer wins
  (a justification may discuss both responses before concluding); a bare label "@Response N" (the
  label-only target) is a verdict too. An answer whose deciding statement favours both responses
  ("@Response 1 and @Response 2 are equally better") is *both-sides*; one with no statement is
  *unparseable*. Both earn 0.5 credit and are counted separately, as reward-bench scores generative
  judges (``scripts/run_generative.py``: a tie or an unparseable answer scores 0.5).
* **Orders** (:func:`judge_pairs`): a pair is shown once, with the chosen response in position 1 or 2
  by a seeded coin per pair, or (``both_orders``) twice, once in each position. Both orders report the
  accuracy of each order, their mean, the position-bias rate (the share of pairs, among those with a
  verdict in both games, where the two verdicts name the same *position*: the verdict followed the
  position, not the content) and JudgeBench's two-game netting (Tan et al., arXiv 2410.12784;
  ScalerLab/JudgeBench ``utils/metrics.py``): +1 per correct game, −1 per wrong one, 0 for a tie or
  unparseable game; a pair is right when its net is > 0.
* **Suites** (:func:`justifier_report`): the pairs suite and RewardBench v1 give a justifier the
  same report as a reward model. A record's credit (1 correct, 0 wrong, 0.5 tie; the mean over the
  two games with ``both_orders``) cannot go through the suites' strict ``chosen > rejected`` rule as a
  score, so the suite's own metric function is run on "worlds" in which each pair is either right or
  wrong, with a pair of credit c right in a share c of the worlds, and every number of the reports
  is averaged: the suites' metrics are means (or weighted means) of per-pair correctness, so this
  is exactly the metric with fractional credit. RewardBench 2 is refused: its subsets are best-of-4
  (one chosen against three rejected, ranked by four scalar rewards) and Ties (scored from reward
  margins), which a pairwise verdict does not provide; so are suites that need scalar scores.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rmlib.data.helpsteer2 import split_sentences, statement_better
from rmlib.eval.registry import Scores, SuiteData, get_suite
from rmlib.eval.report import Report

__all__ = ["JUSTIFIER_SUITES", "JudgeResult", "Verdict", "check_suite", "credit", "judge_pairs", "justifier_report",
           "pair_verdict_metrics", "parse_verdict", "verdict_rows"]

#: suites whose records are (chosen, rejected) pairs that a pairwise verdict can score
JUSTIFIER_SUITES = ("pairs", "rewardbench")
_REFUSED = {
    "rewardbench2": "RewardBench 2 subsets are best-of-4 (one chosen against three rejected, ranked by four scalar "
                    "rewards) and Ties (scored from reward margins); a justifier gives a pairwise verdict, not scalar "
                    "scores",
}

_MENTION = re.compile(r"@\s*Response\s*([12])(?!\d)", re.IGNORECASE)
_BETTER = re.compile(r"\bbetter\b", re.IGNORECASE)
_CONJUNCTION = re.compile(r"^\s*(?:and|&|as well as)\s*$", re.IGNORECASE)
_LABEL = re.compile(r"^\W*@?\s*Response\s*([12])\W*$", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """The response a judgement favours (1, 2) or None, and how it was read: ``statement``, ``label``,
    ``both_sides``, ``unparseable`` or ``too_long`` (the prompt did not fit; nothing was generated)."""

    choice: int | None
    kind: str


def _both_sides(sentence: str) -> bool:
    """The statement's subject names both responses ("@Response 1 and @Response 2 are better")."""
    better = _BETTER.search(sentence)
    mentions = [m for m in _MENTION.finditer(sentence) if better and m.end() <= better.start()]
    return any(a.group(1) != b.group(1) and _CONJUNCTION.match(sentence[a.end():b.start()])
               for a, b in zip(mentions, mentions[1:])) or bool(
        re.search(r"\bboth\b[^.]*\bbetter\b", sentence, re.IGNORECASE) and len({m.group(1) for m in mentions}) > 1)


def parse_verdict(text: str | None) -> Verdict:
    """Read the verdict of a justifier's answer: the last "@Response N ... better" statement wins.

    Sentences are split as HelpSteer2 justifications are (:func:`rmlib.data.helpsteer2.split_sentences`)
    and each is read with the same statement rule the training targets were built with
    (:func:`rmlib.data.helpsteer2.statement_better`: the response named last before "better"; a negation
    in between makes it no statement). Without any statement, an answer that is only "@Response N" is a
    bare-label verdict.
    """
    if text is None:
        return Verdict(None, "too_long")
    last: tuple[int, str] | None = None
    for sentence in split_sentences(text):
        try:
            choice = statement_better(sentence)
        except ValueError:
            continue
        last = (choice, sentence)
    if last is not None:
        return Verdict(None, "both_sides") if _both_sides(last[1]) else Verdict(last[0], "statement")
    label = _LABEL.match(text.strip())
    if label:
        return Verdict(int(label.group(1)), "label")
    return Verdict(None, "unparseable")


def credit(verdict: Verdict, chosen_position: int) -> float:
    """1 when the verdict names the chosen response's position, 0 when it names the other, 0.5 without one."""
    if verdict.choice is None:
        return 0.5
    return 1.0 if verdict.choice == chosen_position else 0.0


@dataclass
class JudgeResult:
    """Per-pair outcomes of :func:`judge_pairs`, and the metrics computed from them."""

    credit: np.ndarray  # per pair: mean credit over its games
    games: list[list[tuple[int, Verdict, str | None]]]  # per pair: (chosen position, verdict, text) per game
    metrics: dict[str, Any]


def pair_verdict_metrics(games: Sequence[Sequence[tuple[int, Verdict]]]) -> dict[str, Any]:
    """Metrics of per-pair games ``(chosen position, verdict)`` (one or two per pair); a pure function."""
    out: dict[str, Any] = {"n": len(games)}
    flat = [(pos, v) for g in games for pos, v in g]
    per_pair = np.array([np.mean([credit(v, pos) for pos, v in g]) for g in games]) if games else np.zeros(0)
    out["accuracy"] = float(per_pair.mean()) if len(per_pair) else float("nan")
    for kind in ("statement", "label", "both_sides", "unparseable", "too_long"):
        out[f"verdicts_{kind}"] = sum(v.kind == kind for _, v in flat)
    out["half_credit_games"] = sum(v.choice is None for _, v in flat)
    if all(len(g) == 2 for g in games) and games:
        for pos in (1, 2):
            cr = [credit(v, p) for g in games for p, v in g if p == pos]
            out[f"accuracy_chosen_as_{pos}"] = float(np.mean(cr))
        decided = [g for g in games if all(v.choice is not None for _, v in g)]
        same = sum(g[0][1].choice == g[1][1].choice for g in decided)
        out["position_bias_rate"] = same / len(decided) if decided else float("nan")
        out["position_bias_pairs"] = len(decided)

        def net(g):
            return sum(0 if v.choice is None else (1 if v.choice == p else -1) for p, v in g)

        nets = [net(g) for g in games]
        out["two_game_accuracy"] = float(np.mean([n > 0 for n in nets]))
        out["two_game_net"] = {"right": sum(n > 0 for n in nets), "tie": sum(n == 0 for n in nets),
                               "wrong": sum(n < 0 for n in nets)}
    return out


def judge_pairs(model: Any, prompts: Sequence[Any], chosen: Sequence[str], rejected: Sequence[str], *,
                both_orders: bool = False, seed: int = 0, max_new_tokens: int = 256, batch_size: int = 16,
                accelerator: Any = None, show_progress: bool = False) -> JudgeResult:
    """Judge preference pairs with a justifier (:class:`rmlib.models.JustifierModel` or anything with the
    same ``judge(prompts, responses_1, responses_2, ...)`` method) and score the verdicts.

    Every game of every pair is generated in one batched call (length-sorted, left-padded, KV cache,
    sharded over the ``accelerator``'s processes).
    """
    if not (len(prompts) == len(chosen) == len(rejected)):
        raise ValueError(f"{len(prompts)} prompts, {len(chosen)} chosen, {len(rejected)} rejected: need one each")
    rng = random.Random(seed)
    plan: list[tuple[int, int]] = []  # (pair, chosen position)
    for i in range(len(prompts)):
        if both_orders:
            plan += [(i, 1), (i, 2)]
        else:
            plan.append((i, rng.choice((1, 2))))
    r1 = [chosen[i] if pos == 1 else rejected[i] for i, pos in plan]
    r2 = [rejected[i] if pos == 1 else chosen[i] for i, pos in plan]
    texts = model.judge([prompts[i] for i, _ in plan], r1, r2, max_new_tokens=max_new_tokens, batch_size=batch_size,
                        accelerator=accelerator, show_progress=show_progress)
    games: list[list[tuple[int, Verdict, str | None]]] = [[] for _ in prompts]
    for (i, pos), text in zip(plan, texts):
        games[i].append((pos, parse_verdict(text), text))
    metrics = pair_verdict_metrics([[(p, v) for p, v, _ in g] for g in games])
    per_pair = np.array([np.mean([credit(v, p) for p, v, _ in g]) for g in games]) if games else np.zeros(0)
    return JudgeResult(per_pair, games, metrics)


def verdict_rows(res: JudgeResult) -> list[dict[str, Any]]:
    """``rmlib score``'s rows for a justifier: per pair, ``chosen`` is its credit (the share of its games
    whose verdict names the chosen response, a half-credit game counting 0.5: 0, 0.25, ..., 1 with both
    orders) and ``rejected`` is ``1 - chosen``, so ``chosen > rejected`` means "the judge prefers the
    chosen response" as it does for a reward model's rewards; ``games`` lists each game's chosen
    position, the position the verdict names (None without one), how it was read and the judge's text."""
    return [{"index": i, "chosen": float(c), "rejected": float(1 - c),
             "games": [{"chosen_position": pos, "verdict": v.choice, "kind": v.kind, "text": text}
                       for pos, v, text in games]}
            for i, (c, games) in enumerate(zip(res.credit.tolist(), res.games))]


def check_suite(name: str, data: SuiteData) -> None:
    """Refuse, with the reason, a suite or data a pairwise verdict cannot score (a ValueError)."""
    if name in _REFUSED:
        raise ValueError(f"suite {name!r} cannot score a justifier: {_REFUSED[name]}")
    if name not in JUSTIFIER_SUITES:
        raise ValueError(f"suite {name!r} needs scalar scores per response; a justifier can be evaluated on "
                         f"{', '.join(JUSTIFIER_SUITES)}")
    bad = next((j for j, r in enumerate(data.records) if len(r["slots"]) != 2), None)
    if bad is not None:
        raise ValueError(f"suite {name!r}: record {bad} has {len(data.records[bad]['slots'])} responses; a "
                         "justifier judges (chosen, rejected) pairs")


def _mean_of(values: list[Any]) -> Any:
    """Element-wise mean of same-shaped report values (numbers averaged, anything else from the first)."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _mean_of([v[k] for v in values]) for k in first}
    if isinstance(first, list) and all(isinstance(v, list) and len(v) == len(first) for v in values):
        return [_mean_of([v[i] for v in values]) for i in range(len(first))]
    if isinstance(first, (bool, np.bool_)) or not isinstance(first, (int, float, np.integer, np.floating)):
        return first
    return float(np.mean([float(v) for v in values]))


def justifier_report(model: Any, suite: str, data: SuiteData, *, both_orders: bool = False, seed: int = 0,
                     max_new_tokens: int = 256, batch_size: int = 16, accelerator: Any = None,
                     progress: bool = False) -> Report:
    """The suite's own report for a justifier (see the module docstring for the fractional-credit rule),
    with the verdict metrics (orders, position bias, two-game netting, half-credit counts) in
    ``report.meta["justifier"]``."""
    s = get_suite(suite)
    check_suite(s.name, data)
    prompts = [data.items[r["slots"][0]]["prompt"] for r in data.records]
    chosen = [data.items[r["slots"][0]]["response"] for r in data.records]
    rejected = [data.items[r["slots"][1]]["response"] for r in data.records]
    res = judge_pairs(model, prompts, chosen, rejected, both_orders=both_orders, seed=seed,
                      max_new_tokens=max_new_tokens, batch_size=batch_size, accelerator=accelerator,
                      show_progress=progress)
    worlds = 4 if both_orders else 2  # credits are multiples of 1/worlds
    reports = []
    for w in range(worlds):
        reward = np.zeros(len(data.items))
        for r, c in zip(data.records, res.credit):
            right = w < round(c * worlds)
            reward[r["slots"][0]], reward[r["slots"][1]] = (1.0, 0.0) if right else (0.0, 1.0)
        reports.append(s.metrics(data, Scores(reward), data.options))
    out = reports[0]
    out.metrics = _mean_of([r.metrics for r in reports])
    out.tables = {k: _mean_of([r.tables[k] for r in reports]) for k in out.tables}
    out.plots = {}  # reward histograms mean nothing for verdicts
    out.notes = [n for n in out.notes if "tie" not in n.lower()] + [
        "Justifier: each pair is judged by generating and parsing the verdict (the last '@Response N ... better' "
        "statement wins); a correct verdict earns 1, a wrong one 0, an unparseable or both-sides answer 0.5 "
        "(reward-bench's rule for generative judges)" + ("; each pair is judged in both orders and its credit is "
                                                        "the mean of the two games" if both_orders else
                                                        "; the chosen response's position is a seeded coin per pair")
        + "."]
    out.meta["justifier"] = res.metrics
    out.meta.update({"data": data.source, "records": len(data.records), "games": sum(len(g) for g in res.games)})
    return out
