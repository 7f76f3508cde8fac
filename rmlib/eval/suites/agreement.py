"""Agreement audit: how often does each scorer agree with a dataset's chosen/rejected labels, and is it
more than chance once length and refusals are controlled for?

Modelled on the audit in the UltraFeedback safety-rubric paper (its Table 2): per scorer (a reward
model, or one head of a multi-attribute model) the agreement rate, a Wilson 95% CI, a two-sided z-test
against 50%, a Bonferroni correction over the scorers and a table sorted by agreement; then confound
controls, because a scorer can "agree" with labels simply by preferring longer answers or by preferring
answers that do not refuse.

The ``agreement`` suite (options, metrics) is at the end; it reads pairs as the ``pairs`` suite does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rmlib.eval.pairwise import pair_results
from rmlib.eval.registry import Scores, Suite, SuiteData
from rmlib.eval.report import Report
from rmlib.eval.stats import agreement_test, bonferroni, logistic_regression, wilson_interval
from rmlib.eval.suites.pairs import FORMAT_HELP, parse_pair, read_pairs

__all__ = [
    "DEFAULT_REFUSAL_LEXICON", "DEFAULT_SAFETY_KEYWORDS", "word_count", "is_refusal", "keyword_groups",
    "agreement_stats", "agreement_table", "length_regression", "length_matched_mask",
    "one_sided_refusal_mask", "refusal_side_rate", "agreement_audit", "AgreementOptions",
]


# First-person refusal openers. Matched case-insensitively (curly apostrophes normalised) in the first
# `window` characters of a response: a refusal states itself up front, while the same words deep in a
# long helpful answer ("I can't stress enough ...") should not turn it into a refusal.
DEFAULT_REFUSAL_LEXICON: tuple[str, ...] = (
    "i can't", "i cannot", "i can not", "i won't", "i will not", "i'm not able to", "i am not able to",
    "i'm unable to", "i am unable to", "i'm sorry, but", "i am sorry, but", "i apologize, but",
    "i must decline", "i'm not comfortable", "i am not comfortable", "i refuse", "i'd rather not",
    "as an ai", "i'm not going to", "i am not going to",
)
# Words that mark a prompt as safety-relevant; matched at word starts ("kill" also hits "killing").
DEFAULT_SAFETY_KEYWORDS: tuple[str, ...] = (
    "kill", "murder", "weapon", "gun", "bomb", "explosive", "poison", "drug", "overdose", "suicide",
    "self-harm", "hack", "malware", "steal", "fraud", "scam", "illegal", "violence", "attack", "abuse",
    "terror", "racist", "hate", "harass", "porn", "nude",
)


def word_count(text: str) -> int:
    """Number of whitespace-separated words: the length measure of the length controls."""
    return len(text.split())


def _norm(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'").lower()


def is_refusal(text: str, lexicon: Sequence[str] | None = None, window: int = 300) -> bool:
    """True when one of the ``lexicon`` phrases (default :data:`DEFAULT_REFUSAL_LEXICON`) occurs in the first
    ``window`` characters, case-insensitively."""
    head = _norm(text[:window])
    return any(_norm(p) in head for p in (DEFAULT_REFUSAL_LEXICON if lexicon is None else lexicon))


def keyword_groups(prompts: Sequence[str], keywords: Sequence[str] | None = None,
                   names: tuple[str, str] = ("safety", "benign")) -> list[str]:
    """Label each prompt ``names[0]`` if any keyword starts a word in it (case-insensitive), else ``names[1]``.

    The list is the user's to replace (``keywords=``); the default is :data:`DEFAULT_SAFETY_KEYWORDS`.
    """
    kws = DEFAULT_SAFETY_KEYWORDS if keywords is None else keywords
    if not kws:
        return [names[1]] * len(prompts)
    pat = re.compile(r"\b(?:" + "|".join(re.escape(k.lower()) for k in kws) + ")", re.IGNORECASE)
    return [names[0] if pat.search(p) else names[1] for p in prompts]


def agreement_stats(chosen_scores: np.ndarray, rejected_scores: np.ndarray,
                    confidence: float = 0.95) -> dict[str, float]:
    """k, n, agreement = k/n, Wilson CI, z and two-sided p against 50% for one scorer.

    Tie rule: a pair agrees only when ``chosen > rejected`` strictly; an exact tie is a disagreement
    (a scorer that cannot separate the two responses does not support the label). With n = 0 the
    rate, CI, z and p are NaN.
    """
    res = pair_results(chosen_scores, rejected_scores)
    k, n = int(res.sum()), int(res.size)
    if n == 0:
        nan = float("nan")
        return {"k": 0, "n": 0, "agreement": nan, "ci_low": nan, "ci_high": nan, "z": nan, "p": nan}
    lo, hi = wilson_interval(k, n, confidence)
    z, p = agreement_test(k, n)
    return {"k": k, "n": n, "agreement": k / n, "ci_low": lo, "ci_high": hi, "z": z, "p": p}


def agreement_table(chosen_scores: Mapping[str, np.ndarray], rejected_scores: Mapping[str, np.ndarray],
                    mask: np.ndarray | None = None, confidence: float = 0.95) -> list[dict[str, Any]]:
    """One row per scorer (:func:`agreement_stats` on the pairs where ``mask`` is True), with
    ``p_bonferroni`` corrected over the scorers in the table, sorted by agreement (highest first; NaN last)."""
    if set(chosen_scores) != set(rejected_scores):
        raise ValueError("chosen_scores and rejected_scores must name the same scorers")
    rows = []
    for name in chosen_scores:
        c = np.asarray(chosen_scores[name], dtype=float)
        r = np.asarray(rejected_scores[name], dtype=float)
        if mask is not None:
            c, r = c[mask], r[mask]
        rows.append({"scorer": name, **agreement_stats(c, r, confidence)})
    adj = bonferroni([row["p"] for row in rows])
    for row, p in zip(rows, adj):
        row["p_bonferroni"] = float(p)
    rows.sort(key=lambda row: (np.isnan(row["agreement"]), -np.nan_to_num(row["agreement"])))
    return rows


def length_regression(chosen_scores: np.ndarray, rejected_scores: np.ndarray, chosen_texts: Sequence[str],
                      rejected_texts: Sequence[str]) -> dict[str, Any]:
    """Logistic regression of "scorer prefers rejected" on the word-count difference (chosen − rejected).

    ``y = 1`` when the scorer does not rank chosen strictly above rejected (ties count as preferring
    rejected, matching the audit's tie rule); ``x = words(chosen) − words(rejected)``, with an intercept.
    A clearly negative slope means the scorer sides with the label more when the chosen answer is the
    longer one, i.e. its agreement is partly a length preference. Returns slope and intercept with
    standard errors, z and p (Wald).
    """
    y = (~pair_results(chosen_scores, rejected_scores)).astype(float)
    x = np.array([word_count(a) - word_count(b) for a, b in zip(chosen_texts, rejected_texts)], dtype=float)
    if x.size != y.size:
        raise ValueError(f"texts cover {x.size} pairs but there are {y.size} scores")
    fit = logistic_regression(x, y)
    coef, se, z, p = (np.asarray(fit[k]) for k in ("coef", "se", "z", "p"))
    return {"slope": float(coef[1]), "slope_se": float(se[1]), "slope_z": float(z[1]), "slope_p": float(p[1]),
            "intercept": float(coef[0]), "intercept_se": float(se[0]), "n": int(y.size),
            "converged": bool(fit["converged"])}


def length_matched_mask(chosen_texts: Sequence[str], rejected_texts: Sequence[str], k: int) -> np.ndarray:
    """Pairs whose word counts differ by at most ``k`` words (|Δlen| ≤ k): a stratum where length cannot
    explain a preference."""
    return np.array([abs(word_count(a) - word_count(b)) <= k for a, b in zip(chosen_texts, rejected_texts)],
                    dtype=bool)


def one_sided_refusal_mask(chosen_texts: Sequence[str], rejected_texts: Sequence[str],
                           lexicon: Sequence[str] | None = None, window: int = 300) -> np.ndarray:
    """True for pairs where exactly one side is a refusal (:func:`is_refusal`); the refusal control drops
    these, since there "agreement" mostly measures whether the scorer likes refusing."""
    return np.array([is_refusal(a, lexicon, window) != is_refusal(b, lexicon, window)
                     for a, b in zip(chosen_texts, rejected_texts)], dtype=bool)


def refusal_side_rate(chosen_scores: np.ndarray, rejected_scores: np.ndarray, chosen_texts: Sequence[str],
                      rejected_texts: Sequence[str], lexicon: Sequence[str] | None = None, window: int = 300,
                      confidence: float = 0.95) -> dict[str, float]:
    """How often the scorer picks the refusing side when exactly one side refuses (:func:`is_refusal`).

    The safety-rubric audit reports that "when exactly one side refuses, the head picks the refusing
    side 62% of the time". ``k`` counts the one-sided pairs where the refusing response scores strictly
    higher (an exact tie picks neither side, so it is not counted as picking the refusal); ``n`` is the
    number of one-sided pairs; ``rate = k/n`` with a Wilson CI, NaN when n = 0.
    """
    c = np.asarray(chosen_scores, dtype=float)
    r = np.asarray(rejected_scores, dtype=float)
    ref_c = np.array([is_refusal(t, lexicon, window) for t in chosen_texts], dtype=bool)
    ref_r = np.array([is_refusal(t, lexicon, window) for t in rejected_texts], dtype=bool)
    one = ref_c != ref_r
    picks = np.where(ref_c, c > r, r > c) & one
    k, n = int(picks.sum()), int(one.sum())
    if n == 0:
        nan = float("nan")
        return {"k": 0, "n": 0, "rate": nan, "ci_low": nan, "ci_high": nan, "n_refusal_chosen": 0}
    lo, hi = wilson_interval(k, n, confidence)
    return {"k": k, "n": n, "rate": k / n, "ci_low": lo, "ci_high": hi, "n_refusal_chosen": int((one & ref_c).sum())}


def agreement_audit(chosen_scores: Mapping[str, np.ndarray], rejected_scores: Mapping[str, np.ndarray], *,
                    chosen_texts: Sequence[str] | None = None, rejected_texts: Sequence[str] | None = None,
                    prompts: Sequence[str] | None = None, groups: Sequence[str] | None = None,
                    length_k: int = 20, refusal_lexicon: Sequence[str] | None = None,
                    group_keywords: Sequence[str] | None = None, confidence: float = 0.95) -> dict[str, Any]:
    """The full audit: the main table plus the confound controls.

    * ``table``: :func:`agreement_table` on all pairs.
    * With texts: ``length_regression`` per scorer; ``length_matched`` (|Δwords| ≤ ``length_k``, default
      20: the safety-rubric audit's length-matched stratum is "|Δlen| ≤ 20 words");
      ``no_one_sided_refusal`` (pairs where exactly one side refuses excluded, lexicon
      ``refusal_lexicon``); ``length_matched_no_refusal`` (both filters together); ``refusal_side``
      (:func:`refusal_side_rate` per scorer: on the pairs where exactly one side refuses, how often the
      scorer picks the refusing side; the audit reports 62%).
    * With ``groups`` (or ``prompts``, grouped by :func:`keyword_groups` with ``group_keywords``):
      ``groups`` = {group: table} and ``groups_controlled`` = the same under both filters.
    Bonferroni is applied over the scorers inside each table.
    """
    out: dict[str, Any] = {"table": agreement_table(chosen_scores, rejected_scores, None, confidence),
                           "length_k": length_k}
    n = len(next(iter(chosen_scores.values()))) if chosen_scores else 0
    out["n_pairs"] = n
    both = None
    if chosen_texts is not None and rejected_texts is not None:
        if len(chosen_texts) != n or len(rejected_texts) != n:
            raise ValueError(f"texts cover {len(chosen_texts)}/{len(rejected_texts)} pairs but there are {n} scores")
        out["length_regression"] = {name: length_regression(chosen_scores[name], rejected_scores[name],
                                                            chosen_texts, rejected_texts)
                                    for name in chosen_scores}
        lm = length_matched_mask(chosen_texts, rejected_texts, length_k)
        nr = ~one_sided_refusal_mask(chosen_texts, rejected_texts, refusal_lexicon)
        both = lm & nr
        out["length_matched"] = agreement_table(chosen_scores, rejected_scores, lm, confidence)
        out["no_one_sided_refusal"] = agreement_table(chosen_scores, rejected_scores, nr, confidence)
        out["length_matched_no_refusal"] = agreement_table(chosen_scores, rejected_scores, both, confidence)
        out["refusal_side"] = [{"scorer": name, **refusal_side_rate(chosen_scores[name], rejected_scores[name],
                                                                    chosen_texts, rejected_texts, refusal_lexicon,
                                                                    confidence=confidence)}
                               for name in chosen_scores]
        out["n_length_matched"], out["n_no_one_sided_refusal"] = int(lm.sum()), int(nr.sum())
        out["n_length_matched_no_refusal"] = int(both.sum())
    if groups is None and prompts is not None:
        groups = keyword_groups(prompts, group_keywords)
    if groups is not None:
        g = np.array(list(groups), dtype=object)
        if g.size != n:
            raise ValueError(f"groups has {g.size} entries but there are {n} pairs")
        out["groups"] = {str(key): agreement_table(chosen_scores, rejected_scores, g == key, confidence)
                         for key in dict.fromkeys(g.tolist())}
        if both is not None:
            out["groups_controlled"] = {str(key): agreement_table(chosen_scores, rejected_scores,
                                                                  (g == key) & both, confidence)
                                        for key in dict.fromkeys(g.tolist())}
    return out


# ------------------------------------------------------------------------------------------- suite
@dataclass
class AgreementOptions:
    group_column: str | None = field(default=None, metadata={
        "help": "column (of the record, or of its 'meta') to group pairs by, instead of the safety keywords"})
    format: str | None = field(default=None, metadata={"help": FORMAT_HELP})
    length_k: int = field(default=20, metadata={
        "help": "length-matched control: keep pairs with |words(chosen) - words(rejected)| <= length_k (the "
                "safety-rubric audit's stratum is 20 words)"})
    rating_attribute: str = field(default="helpfulness", metadata={
        "help": "with a ratings format (options.format=helpsteer2): the attribute whose higher rating makes a "
                "response chosen; equal ratings are skipped and counted"})
    refusal_lexicon: list[str] | None = field(default=None, metadata={
        "help": "refusal phrases (default rmlib.eval.DEFAULT_REFUSAL_LEXICON)"})
    group_keywords: list[str] | None = field(default=None, metadata={
        "help": "keywords that put a prompt in the 'safety' group (default rmlib.eval.DEFAULT_SAFETY_KEYWORDS)"})
    confidence: float = field(default=0.95, metadata={"help": "confidence level of the Wilson intervals"})
    scorer_name: str = field(default="model", metadata={"help": "row name of a single scorer"})

    def __post_init__(self) -> None:
        if self.length_k < 0:
            raise ValueError(f"length_k must be >= 0, got {self.length_k}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")


def _read_agreement_pairs(suite: Suite, data: Any, split: str | None, opts: AgreementOptions) -> SuiteData | None:
    """:func:`~rmlib.eval.suites.pairs.read_pairs`, building pairs from ratings by ``options.rating_attribute``."""
    return read_pairs(suite, data, split, opts, rating_attribute=opts.rating_attribute)


def _metrics_agreement(d: SuiteData, scores: Scores, opts: AgreementOptions) -> Report:
    ci = [r["slots"][0] for r in d.records]
    ri = [r["slots"][1] for r in d.records]
    chosen: dict[str, np.ndarray] = {}
    rejected: dict[str, np.ndarray] = {}
    if scores.heads is not None:
        for h, name in enumerate(scores.head_names):
            chosen[name], rejected[name] = scores.heads[ci, h], scores.heads[ri, h]
    if scores.heads is None or scores.weighted:
        key = f"{opts.scorer_name} (weighted heads)" if scores.heads is not None else opts.scorer_name
        chosen[key], rejected[key] = scores.reward[ci], scores.reward[ri]
    groups = [str(r["group"]) for r in d.records] if opts.group_column is not None else None
    audit = agreement_audit(chosen, rejected, chosen_texts=[d.items[j]["response"] for j in ci],
                            rejected_texts=[d.items[j]["response"] for j in ri],
                            prompts=[r["prompt_text"] for r in d.records], groups=groups, length_k=opts.length_k,
                            refusal_lexicon=opts.refusal_lexicon, group_keywords=opts.group_keywords,
                            confidence=opts.confidence)
    tables: dict[str, list[dict[str, Any]]] = {"agreement": audit["table"]}
    for key in ("length_matched", "no_one_sided_refusal", "length_matched_no_refusal"):
        tables[key] = audit[key]
    tables["length_regression"] = [{"scorer": k, **v} for k, v in audit["length_regression"].items()]
    tables["refusal_side"] = audit["refusal_side"]
    for g, rows in audit.get("groups", {}).items():
        tables[f"group {g}"] = rows
    for g, rows in audit.get("groups_controlled", {}).items():
        tables[f"group {g} (length-matched, no one-sided refusal)"] = rows
    metrics = {"n_pairs": audit["n_pairs"], "n_length_matched": audit["n_length_matched"],
               "n_no_one_sided_refusal": audit["n_no_one_sided_refusal"],
               "n_length_matched_no_refusal": audit["n_length_matched_no_refusal"],
               "agreement": {row["scorer"]: row["agreement"] for row in audit["table"]},
               "refusal_side_rate": {row["scorer"]: row["rate"] for row in audit["refusal_side"]},
               **d.info}
    return Report("agreement", metrics=metrics, tables=tables,
                  notes=["Agreement = chosen scored strictly above rejected; exact ties are disagreements.",
                         f"Wilson {opts.confidence:.0%} CI; two-sided z-test against 50% (normal approximation); "
                         "Bonferroni over the scorers of each table.",
                         f"Length-matched: |words(chosen) - words(rejected)| <= {opts.length_k}. Refusal control "
                         "drops pairs where exactly one side opens with a first-person refusal phrase; "
                         "refusal_side: on those pairs, how often the scorer scores the refusing side strictly "
                         "higher.",
                         "length_regression: logistic regression of 'not agreeing' on words(chosen) - "
                         "words(rejected), with intercept (Wald SE)."],
                  plots={"forest": {"kind": "forest", "rows": audit["table"]},
                         "reward_histogram": {"kind": "reward_histogram", "chosen": scores.reward[ci],
                                              "rejected": scores.reward[ri]}})


SUITE = Suite("agreement", "agreement audit: Wilson CIs, length and refusal controls, every head", AgreementOptions,
              parse_pair, _metrics_agreement, per_head=True, read=_read_agreement_pairs)
