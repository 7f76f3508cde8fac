"""Between preference pairs and ranked lists: group pairs by prompt, or expand a list into its pairs.

Why both directions: most preference data is published as pairs that were cut from lists (UltraFeedback's
four rated completions became up to six pairs), and a listwise loss wants the list back; the pairwise
baselines (and any trainer that only knows pairs) want the k(k-1)/2 pairs of a list.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from rmlib.data.schema import PreferencePair, RankedList, ValidationReport, all_tied


def lists_from_pairs(pairs: Iterable[PreferencePair], report: ValidationReport | None = None) -> list[RankedList]:
    """One :class:`RankedList` per prompt: every response of that prompt's pairs, scored by net wins.

    A response's score is (pairs it won) − (pairs it lost) among its prompt's pairs. When the pairs are
    all k(k−1)/2 strict pairs of one ranking, the scores reproduce that ranking exactly (the best response
    wins k−1, the worst loses k−1) and tied responses, which make no pair, stay tied. Pairs that contradict
    each other (a beats b, b beats c, c beats a) give equal net wins: those responses become a tie, the
    only order the pairs agree on. A prompt whose responses end up all tied is left out and counted in
    ``report`` (``all_tied``). Lists come in the order of their prompts' first pair; ``meta`` holds the
    number of pairs merged (``pairs``).
    """
    groups: dict[str, tuple[tuple, dict[str, float], list[int]]] = {}
    for pair in pairs:
        key = json.dumps(list(pair.prompt), sort_keys=True)
        prompt, net, count = groups.setdefault(key, (pair.prompt, {}, [0]))
        net[pair.chosen] = net.get(pair.chosen, 0.0) + 1.0
        net[pair.rejected] = net.get(pair.rejected, 0.0) - 1.0
        count[0] += 1
    out = []
    for prompt, net, count in groups.values():
        ex = RankedList(tuple(prompt), tuple(net), tuple(net.values()), {"pairs": count[0]})
        if all_tied(ex):
            if report is not None:
                report.filter("all_tied", f"{report.source}: the {count[0]} pair(s) of a prompt leave its "
                                          f"{len(net)} responses tied")
            continue
        out.append(ex)
    return out


def pairs_from_lists(lists: Iterable[RankedList]) -> list[PreferencePair]:
    """Every strictly ordered pair (higher score chosen) of every list, ties skipped: what a pairwise
    trainer trains on for the same data (k(k−1)/2 pairs for a list of k distinct scores). Each pair's
    ``meta`` holds its list's position (``list``) and the two scores."""
    out = []
    for n, ex in enumerate(lists):
        for i, (ri, si) in enumerate(zip(ex.responses, ex.scores)):
            for rj, sj in zip(ex.responses[i + 1:], ex.scores[i + 1:]):
                if si == sj:
                    continue
                (c, sc), (r, sr) = ((ri, si), (rj, sj)) if si > sj else ((rj, sj), (ri, si))
                out.append(PreferencePair(ex.prompt, c, r, meta={"list": n, "score_chosen": sc, "score_rejected": sr}))
    return out
