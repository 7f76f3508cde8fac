"""``rmlib eval``: score a benchmark with a model (or cached scores) and write the report.

Kept apart from the metric modules: this is the only eval code that loads a model. The suite choices,
their options and the help all come from the suite registry (:mod:`rmlib.eval.registry`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rmlib.eval.registry import get_suite, list_suites, option_help

USAGE = "rmlib eval [MODEL] --suite SUITE --data FILE [--config EVAL.yaml] [--scores|--cache F] [--out DIR] [KEY=VALUE ...]"


def _epilog() -> str:
    import dataclasses

    from rmlib.eval.config import EvalConfig, HeadsConfig

    lines = ["overrides (KEY=VALUE, dotted into the eval config; a YAML --config holds the same keys):"]
    fields = [("", f) for f in dataclasses.fields(EvalConfig) if f.name not in ("heads", "options")]
    for prefix, f in fields + [("heads.", f) for f in dataclasses.fields(HeadsConfig)]:
        # a field built by a factory (judge) has no plain default: show the factory's value, not MISSING
        default = f.default_factory() if f.default is dataclasses.MISSING and f.default_factory is not \
            dataclasses.MISSING else f.default
        lines.append(f"  {prefix}{f.name}={default!r}: {f.metadata.get('help', '')}")
    lines.append("")
    lines.append("suites and their options (options.NAME=VALUE):")
    for name in list_suites():
        lines.append(f"  {name}: {get_suite(name).help}")
        for opt, default, text in option_help(name):
            lines.append(f"    options.{opt} (default {default}): {text}")
    return "\n".join(lines)


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.usage = USAGE
    p.epilog = _epilog()
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("model", nargs="?", help="model directory, hub name or alias (omit with --scores)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides, e.g. batch_size=32 options.group_column=task")
    p.add_argument("--suite", required=True, choices=list_suites(),
                   help="benchmark suite: " + ", ".join(list_suites()) + " (options per suite below)")
    p.add_argument("--data", default=None, help="the config key 'data': benchmark file or hub dataset name")
    p.add_argument("--config", default=None, help="YAML file with the eval config (keys as for KEY=VALUE)")
    p.add_argument("--out", default=None, help="report directory (default: <model>/eval-<suite>)")
    p.add_argument("--scores", default=None, help="reuse scores cached by an earlier run instead of a model")
    p.add_argument("--cache", default=None, help="write the raw scores here for later re-use")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """``rmlib eval`` arguments; overrides may come before, between or after the flags."""
    p = argparse.ArgumentParser(prog="rmlib eval", description="evaluate a model (or cached scores) on a suite")
    add_eval_arguments(p)
    return p.parse_intermixed_args(argv)


def _split_model(args: argparse.Namespace) -> None:
    """With --scores there is no MODEL: a first positional KEY=VALUE is an override, not a model."""
    if args.model is not None and "=" in args.model and not Path(args.model).exists():
        args.overrides = [args.model, *args.overrides]
        args.model = None


def _accelerator():
    """An Accelerator when launched on several processes (``accelerate launch``), else None.

    The launch checks run in every case, so a launch that would silently start one process fails here."""
    from rmlib.runtime import check_launch_environment, make_accelerator

    check_launch_environment()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return make_accelerator()


def _default_out(args: argparse.Namespace) -> Path:
    if args.scores:
        return Path(args.scores).parent / f"eval-{args.suite}"
    if Path(args.model).is_dir():
        return Path(args.model) / f"eval-{args.suite}"
    return Path(f"eval-{args.model.replace('/', '--')}-{args.suite}")  # a hub name: not a directory to write in


def run_eval(args: argparse.Namespace) -> int:
    """Validate the config and the data, load the model (on every process), score, and write the report
    (main process only). With ``--scores`` no model is loaded."""
    import numpy as np

    from rmlib.config import ConfigError
    from rmlib.eval.config import load_eval_config
    from rmlib.eval.runner import combine_heads, load_suite, run_suite, score_items

    _split_model(args)
    if not args.model and not args.scores:
        raise SystemExit("rmlib eval: give a MODEL or --scores")
    if args.model and args.scores:
        raise SystemExit("rmlib eval: give a MODEL or --scores, not both")
    suite = get_suite(args.suite)
    try:
        cfg = load_eval_config(suite, args.config, args.overrides, {"data": args.data} if args.data else None)
    except ConfigError as e:
        raise SystemExit(f"rmlib eval: {e}") from e
    if not cfg.data:
        raise SystemExit("rmlib eval: give --data (or data: in --config)")
    weights = cfg.heads.weights
    data = load_suite(suite, cfg.data, split=cfg.split, options=cfg.options)
    out = Path(args.out) if args.out else _default_out(args)
    common = {"head_weights": weights, "cache": args.cache}
    if args.scores:
        if cfg.heads.search:
            from rmlib.eval.runner import load_scores

            _, raw, heads = load_scores(args.scores, with_heads=True)
            common["head_weights"], search = _search_weights(data, raw, heads, cfg.heads.search_step)
        report = run_suite(suite, data, scores=args.scores, **common)
        meta: dict = {"scores": str(args.scores)}
    elif _is_judge(args.model):  # a causal LM: a generative judge, judged by generating and parsing verdicts
        report, meta = _judge_report(args, cfg, suite, data)
        if report is None:
            return 0
    else:
        from rmlib.models import RewardModel

        acc = _accelerator()
        model = RewardModel.from_pretrained(args.model, trust_remote_code=cfg.trust_remote_code,
                                            max_length=cfg.max_length, reward_token=cfg.reward_token)
        kind = None if model.distribution is None else model.distribution.kind
        if kind is not None and (weights is not None or cfg.heads.search):
            raise SystemExit(f"rmlib eval: heads.weights and heads.search combine the heads of a multi-attribute "
                             f"model; this {kind} model has one reward (its mean)")
        if kind is None and (weights is not None or not suite.per_head) and not cfg.heads.search:  # fail early
            try:
                combine_heads(np.zeros((1, len(model.attributes))), weights, model.attributes)
            except ValueError as e:
                raise SystemExit(f"rmlib eval: {e}") from e
        if acc is None:
            import torch

            model.to("cuda" if torch.cuda.is_available() else "cpu")
        else:
            model.to(acc.device)
        if kind is not None:  # the mean and the spread, from one scoring pass
            from rmlib.eval.runner import model_outputs

            scores = model_outputs(model, [list(it["prompt"]) for it in data.items],
                                   [it["response"] for it in data.items], batch_size=cfg.batch_size or 16,
                                   progress=True, accelerator=acc)
            if acc is not None and not acc.is_main_process:
                return 0
            report = run_suite(suite, data, scores=scores, distribution=kind, cache=args.cache)
        else:
            scores = score_items(data.items, model, batch_size=cfg.batch_size, progress=True, accelerator=acc)
            if acc is not None and not acc.is_main_process:
                return 0
            if cfg.heads.search:
                common["head_weights"], search = _search_weights(data, np.asarray(scores), model.attributes,
                                                                 cfg.heads.search_step)
            report = run_suite(suite, data, scores=scores, head_names=model.attributes, **common)
        meta = {"model": str(args.model), "num_processes": 1 if acc is None else acc.num_processes}
    if cfg.heads.search:
        meta["head_search"] = search
        report.notes.append(f"Head weights searched on the grid -1..1, step {cfg.heads.search_step:g}, for the best "
                            "overall RewardBench score (HelpSteer2-Preference, arXiv 2410.01257), on scores "
                            f"computed once: {search['weights']} (overall {search['overall']:.4f}, "
                            f"{search['evaluated']} weight vectors).")
    report.meta = {**meta, **report.meta}
    files = report.save(out)
    print(report.to_markdown())
    print("wrote " + ", ".join(str(p) for p in files.values()))
    return 0


def _is_judge(model: str) -> bool:
    from rmlib.io import resolve_model
    from rmlib.models import is_causal_lm_dir

    try:
        return is_causal_lm_dir(resolve_model(model))
    except (OSError, ValueError):
        return False


def _judge_report(args: argparse.Namespace, cfg, suite, data):
    """(report, meta) of a justifier on the suite (``rmlib.eval.generative``); (None, None) on a non-main process."""
    import torch

    from rmlib.eval.generative import check_suite, justifier_report
    from rmlib.models import JustifierModel

    if args.cache or cfg.heads.weights is not None or cfg.heads.search:
        raise SystemExit("rmlib eval: a generative judge gives verdicts, not scores: --cache and heads.* do not apply")
    try:  # before the model loads
        check_suite(suite.name, data)
    except ValueError as e:
        raise SystemExit(f"rmlib eval: {e}") from e
    acc = _accelerator()
    model = JustifierModel.from_pretrained(args.model, trust_remote_code=cfg.trust_remote_code,
                                           max_length=cfg.max_length)
    model.to(acc.device if acc is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        report = justifier_report(model, suite.name, data, both_orders=cfg.judge.both_orders, seed=cfg.judge.seed,
                                  max_new_tokens=cfg.judge.max_new_tokens, batch_size=cfg.batch_size,
                                  accelerator=acc, progress=acc is None or acc.is_main_process)
    except ValueError as e:
        raise SystemExit(f"rmlib eval: {e}") from e
    if acc is not None and not acc.is_main_process:
        return None, None
    return report, {"model": str(args.model), "model_type": "generative judge (causal LM)",
                    "num_processes": 1 if acc is None else acc.num_processes}


def _search_weights(data, raw, head_names, step: float):
    """``heads.search``: the grid search of :func:`rmlib.eval.weights.search_head_weights` on the scores of
    every head; returns ({head name: weight}, the search result)."""
    import numpy as np

    from rmlib.eval.weights import search_head_weights

    s = np.asarray(raw, dtype=float)
    if s.ndim != 2 or s.shape[1] < 2:
        raise SystemExit("rmlib eval: heads.search needs a model (or score cache) with several heads")
    names = list(head_names) if head_names is not None else [f"head{i}" for i in range(s.shape[1])]
    ci = [r["slots"][0] for r in data.records]
    ri = [r["slots"][1] for r in data.records]
    res = search_head_weights(s[ci], s[ri], [r["subset"] for r in data.records], step=step)
    res["heads"] = names
    return dict(zip(names, res["weights"])), res


def main(argv: list[str]) -> int:
    return run_eval(parse_args(argv))
