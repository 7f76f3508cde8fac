"""Benchmark prompts for decontamination, read by the evaluation suites' own readers.

Any file ``rmlib eval --suite NAME`` accepts (RewardBench v1/v2, RM-Bench, JudgeBench, RMB, PPE, pairs, ...)
gives its prompts here through :func:`rmlib.eval.runner.load_suite`, so a benchmark file is parsed one way
everywhere. The prompt of a record is the first user turn of its first scored item: the "first-turn prompt"
of Skywork-Reward-V2's rule.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from rmlib.curation.rules.ngrams import DEFAULT_N, NgramIndex
from rmlib.curation.rules.table import first_user_turn

__all__ = ["benchmark_index", "benchmark_prompts", "parse_benchmark"]


def benchmark_prompts(suite: str, source: str | os.PathLike) -> list[str]:
    """First-turn prompts of every record of a benchmark file read by ``suite``'s parser (input order)."""
    from rmlib.eval.runner import load_suite

    data = load_suite(suite, source)
    return [first_user_turn(data.items[r["slots"][0]]["prompt"]) for r in data.records]


def parse_benchmark(spec: str) -> tuple[str, str, str]:
    """``"SUITE=PATH"`` or ``"NAME:SUITE=PATH"`` → (name, suite, path); the name defaults to the suite."""
    head, eq, path = spec.partition("=")
    if not eq or not path or not head:
        raise ValueError(f"benchmark {spec!r}: write SUITE=PATH (e.g. rewardbench=rb.jsonl) or NAME:SUITE=PATH")
    name, colon, suite = head.partition(":")
    return (name, suite, path) if colon else (head, head, path)


def benchmark_index(benchmarks: Mapping[str, tuple[str, str | os.PathLike]] | list[str], n: int = DEFAULT_N
                    ) -> NgramIndex:
    """The hashed n-gram index of benchmark prompts: ``{name: (suite, path)}`` or ``["SUITE=PATH", ...]``."""
    if not isinstance(benchmarks, Mapping):
        benchmarks = {name: (suite, path) for name, suite, path in map(parse_benchmark, benchmarks)}
    if not benchmarks:
        raise ValueError("give at least one benchmark file")
    prompts = {name: benchmark_prompts(suite, path) for name, (suite, path) in benchmarks.items()}
    return NgramIndex.build(prompts, n, sources={name: f"{suite}={path}" for name, (suite, path) in benchmarks.items()})
