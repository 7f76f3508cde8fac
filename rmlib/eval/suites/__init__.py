"""The built-in benchmark suites, one module per benchmark, and the list that registers them.

Each module holds one benchmark whole: its scoring rules as pure functions of scores (numpy only), its
options dataclass, its record parser and its metric function, which turns the parsed records and their
scores into a :class:`~rmlib.eval.report.Report`, tied together in the module's ``SUITE``
(:class:`~rmlib.eval.registry.Suite`). The scoring rules and their public sources are in
docs/evaluation.md; each report also carries them in its ``notes``.

=================  ===========================================================================
module             suite
=================  ===========================================================================
``rewardbench``    ``rewardbench``: RewardBench v1 sections (and the legacy prior sets)
``rewardbench2``   ``rewardbench2``: RewardBench 2 best-of-4 subsets and the Ties composite
``rmbench``        ``rmbench``: RM-Bench 3x3 style matrix per domain
``bon``            ``bon``: best-of-N accuracy@n
``pairs``          ``pairs``: pairwise accuracy (and the pair parser/reader ``agreement`` shares)
``agreement``      ``agreement``: the agreement audit with length and refusal controls
``divergence``     ``divergence``: diverging preferences and distributional models' P(A > B)
``judgebench``     ``judgebench``: JudgeBench two-game netting
``rmb``            ``rmb``: RMB pairwise and best-of-N accuracy
``ppe``            ``ppe``: PPE human preference and best-of-K correctness
=================  ===========================================================================
"""

from __future__ import annotations

from rmlib.eval.registry import register_suite
from rmlib.eval.suites import (
    agreement,
    bon,
    divergence,
    judgebench,
    pairs,
    ppe,
    rewardbench,
    rewardbench2,
    rmb,
    rmbench,
)
from rmlib.eval.suites._common import NoOptions
from rmlib.eval.suites.agreement import AgreementOptions
from rmlib.eval.suites.bon import BonOptions
from rmlib.eval.suites.divergence import DivergenceOptions
from rmlib.eval.suites.pairs import PairsOptions
from rmlib.eval.suites.ppe import PPEOptions
from rmlib.eval.suites.rewardbench import RewardBenchOptions

__all__ = ["AgreementOptions", "BonOptions", "DivergenceOptions", "NoOptions", "PPEOptions", "PairsOptions",
           "RewardBenchOptions"]

# The registry of the built-in suites, in the order `rmlib eval --help` and list_suites() give them.
for _module in (rewardbench, rewardbench2, rmbench, bon, pairs, agreement, divergence, judgebench, rmb, ppe):
    register_suite(_module.SUITE)
