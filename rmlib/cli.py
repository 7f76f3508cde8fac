"""The ``rmlib`` command: train, eval, score, serve, expo, export, push, plan, data.

``accelerate launch -m rmlib train CONFIG`` is the same command on several processes. Each
subcommand is a thin wrapper over a library function, so the CLI holds no logic of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# -- flags several subcommands share (one help text each) ------------------------------------------

def _formats() -> str:
    from rmlib.data.formats import FORMATS

    return ", ".join(FORMATS)


def _add_format_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default=None, help=f"reader to use (default: detected); one of {_formats()}")


def _add_reward_token_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reward-token", default="auto", choices=["auto", "end", "last_non_pad"],
                   help="where a reward model's reward is read: auto (default; a decoder trained elsewhere "
                        "with pad == eos, as TRL's RewardTrainer does, at the token before the final eos, "
                        "otherwise the end-of-response token), end, or last_non_pad")


def _add_trust_remote_code_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the model's own Python code from its directory or the hub (off by default)")


# -- the subcommands: each one's command function, then the function that declares its flags --------

def cmd_train(args: argparse.Namespace) -> int:
    from rmlib.training import train
    from rmlib.training.preemption import EXIT_PREEMPTED, Preempted

    try:
        summary = train(args.config, args.overrides)
    except Preempted as e:  # a scheduler's SIGTERM (or Ctrl-C): saved; the job script may requeue on 75
        print(f"rmlib: {e}", file=sys.stderr)
        return EXIT_PREEMPTED
    before, after = summary.get("eval_before"), summary.get("eval")
    if after:
        key = next(k for k in ("accuracy", "mse", "loss") if k in after)  # the justifier reports its loss
        line = f"held-out {key}: {after[key]:.4f}"
        if before:
            line = f"held-out {key}: {before[key]:.4f} before training -> {after[key]:.4f} after"
        print(line)
    print(f"model saved to {summary['model_dir']}")
    return 0


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML file (see configs/train/ and docs/configuration.md)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. loss.name=scaled_bt train.lr=2e-6")


def _is_causal_lm(model: str) -> bool:
    from rmlib.io import resolve_model
    from rmlib.models import is_causal_lm_dir

    try:
        return is_causal_lm_dir(resolve_model(model))
    except (OSError, ValueError):
        return False


def _score_with_judge(args: argparse.Namespace, loaded) -> int:
    """``rmlib score`` of a Pairwise Justifier (a causal LM): each pair's verdicts as scores
    (:func:`rmlib.eval.generative.verdict_rows`); a judge prompt too long for the model is a DataError
    naming the pair, before anything is generated."""
    import torch

    from rmlib.data.schema import DataError
    from rmlib.eval.generative import judge_pairs, verdict_rows
    from rmlib.io import write_jsonl
    from rmlib.models import JustifierModel

    source = loaded.report.source
    if loaded.kind != "pairs":
        raise DataError(source, None, None, f"a Pairwise Justifier judges pairs (prompt, chosen, rejected); "
                                            f"{loaded.kind} data has one response per record", "wrong_kind")
    model = JustifierModel.from_pretrained(args.model, trust_remote_code=args.trust_remote_code,
                                           max_length=args.max_length)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    ex = loaded.examples
    prompts, chosen, rejected = [e.prompt for e in ex], [e.chosen for e in ex], [e.rejected for e in ex]
    for order in ((chosen, rejected), (rejected, chosen)):  # both positions: BPE can merge at a boundary
        for i, ids in enumerate(model.judge_prompt_ids(prompts, *order)):
            if len(ids) >= model.max_length:
                raise DataError(source, i, None, f"(0-based, among the valid examples) pair {i}: the judge prompt "
                                f"(prompt and both responses) has {len(ids)} tokens, no room to generate within "
                                f"max_length={model.max_length}", "too_long")
    res = judge_pairs(model, prompts, chosen, rejected, both_orders=not args.one_order, seed=args.seed,
                      max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, show_progress=True)
    out = write_jsonl(verdict_rows(res), args.out)
    m = res.metrics
    print(f"wrote {len(ex)} rows of verdict scores (chosen = share of games won by the chosen response) to {out}; "
          f"accuracy {m['accuracy']:.4f}, half-credit games {m['half_credit_games']}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from rmlib.data.formats import load
    from rmlib.io import write_jsonl
    from rmlib.models import RewardModel

    loaded = load(args.data, args.format, on_invalid=args.on_invalid)
    if loaded.report.n_skipped or loaded.report.n_filtered:
        print(loaded.report.format(), file=sys.stderr)
    if _is_causal_lm(args.model):  # a generative judge gives verdicts, not rewards
        return _score_with_judge(args, loaded)
    model = RewardModel.from_pretrained(args.model, trust_remote_code=args.trust_remote_code,
                                        max_length=args.max_length, reward_token=args.reward_token)
    ex = loaded.examples
    kw = dict(batch_size=args.batch_size, show_progress=True)
    from rmlib.data.schema import DataError
    from rmlib.models.reward_model import TooLong

    try:
        if model.distribution is not None and loaded.kind in ("pairs", "ratings"):
            rows = _distribution_rows(model, loaded.kind, ex, kw)
        elif loaded.kind == "pairs":
            chosen, rejected = model.score_pairs([e.prompt for e in ex], [e.chosen for e in ex],
                                                 [e.rejected for e in ex], **kw)
            rows = [{"index": i, "chosen": c, "rejected": r}
                    for i, (c, r) in enumerate(zip(chosen.tolist(), rejected.tolist()))]
        elif loaded.kind == "ratings":
            rewards = model.score([e.prompt for e in ex], [e.response for e in ex], **kw)
            rows = [{"index": i, "response": r} for i, r in enumerate(rewards.tolist())]
        else:
            raise DataError(loaded.report.source, None, None, f"cannot score {loaded.kind} data", "wrong_kind")
    except TooLong as e:
        raise DataError(loaded.report.source, e.index, None, f"(0-based, among the valid examples) {e}",
                        "too_long") from None
    out = write_jsonl(rows, args.out)
    print(f"wrote {len(rows)} rows of rewards ({model.attributes}) to {out}")
    return 0


def _distribution_rows(model, kind: str, ex, kw: dict) -> list[dict]:
    """A distributional model's rows: the reward (its mean) and its ``std``; for pairs also
    ``p_chosen`` = P(chosen ≻ rejected) under the model's distributions."""
    import numpy as np

    from rmlib.eval.suites.divergence import pair_preference

    if kind == "ratings":
        out = model.score_outputs([e.prompt for e in ex], [e.response for e in ex], **kw)
        return [{"index": i, "response": r, "std": s} for i, (r, s) in
                enumerate(zip(out["reward"].tolist(), out["std"].tolist()))]
    from rmlib.models.reward_model import TooLong

    n = len(ex)
    try:
        out = model.score_outputs([e.prompt for e in ex] * 2, [e.chosen for e in ex] + [e.rejected for e in ex],
                                  **kw)
    except TooLong as e:  # name the pair and the side, as score_pairs does
        side_name = "chosen" if e.index < n else "rejected"
        raise TooLong(e.index % n, f"pair {e.index % n}: the {side_name} response does not fit in "
                                   f"max_length={model.max_length}") from None
    side = [{k: v[:n].numpy() for k, v in out.items()}, {k: v[n:].numpy() for k, v in out.items()}]
    p, _ = pair_preference(model.distribution.kind, *side)
    return [{"index": i, "chosen": float(side[0]["reward"][i]), "rejected": float(side[1]["reward"][i]),
             "chosen_std": float(side[0]["std"][i]), "rejected_std": float(side[1]["std"][i]),
             "p_chosen": float(np.asarray(p)[i])} for i in range(n)]


def _add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model directory, LoRA run output, hub id or built-in alias (minilm-l6)")
    p.add_argument("data", help="data file (any format `rmlib data inspect` reads) or hub dataset id")
    p.add_argument("--out", required=True, help="JSONL to write: one row per record, written atomically")
    _add_format_argument(p)
    p.add_argument("--on-invalid", default="error", choices=["error", "skip"],
                   help="error: stop at the first invalid record; skip: leave it out and report it")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per scoring batch (an upper bound)")
    p.add_argument("--max-length", type=int, default=None,
                   help="tokens per sequence (default: the model's position limit, at most 1024)")
    _add_reward_token_argument(p)
    _add_trust_remote_code_argument(p)
    p.add_argument("--max-new-tokens", type=int, default=256,
                   help="a Pairwise Justifier: token cap of each judgement")
    p.add_argument("--one-order", action="store_true",
                   help="a Pairwise Justifier: judge each pair once, the chosen response first or second by a "
                        "seeded coin (default: both orders)")
    p.add_argument("--seed", type=int, default=0, help="a Pairwise Justifier with --one-order: the coin's seed")


def cmd_eval(args: argparse.Namespace) -> int:
    from rmlib.eval.cli import run_eval

    return run_eval(args)


def _add_eval_arguments(p: argparse.ArgumentParser) -> None:
    from rmlib.eval.cli import add_eval_arguments

    add_eval_arguments(p)


def cmd_compare(args: argparse.Namespace) -> int:
    from rmlib.eval.report import compare_reports
    from rmlib.io import write_text

    named = {}
    for spec in args.reports:
        name, sep, path = spec.partition("=")
        named[name if sep else Path(spec).name] = path if sep else spec
    rows, md = compare_reports(named, args.metrics or None, title=args.title)
    out = write_text(md, args.out)
    write_text(json.dumps(rows, indent=2, default=str) + "\n", Path(args.out).with_suffix(".json"))
    print(md)
    print(f"wrote {out} and {Path(args.out).with_suffix('.json')}")
    return 0


def _add_compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("reports", nargs="+", metavar="[NAME=]DIR",
                   help="report directories (rmlib eval --out) or report.json files; NAME labels the row")
    p.add_argument("--metrics", nargs="*", default=None,
                   help="shell-style patterns of the metrics to show, in order (e.g. 'metric.*' 'auroc.*' ece); "
                        "default: every metric")
    p.add_argument("--title", default=None, help="heading of the Markdown table")
    p.add_argument("--out", required=True, help="Markdown file to write (the rows also go to the .json beside it)")


def cmd_expo(args: argparse.Namespace) -> int:
    from rmlib.expo import cli, search_cli

    return (search_cli(args) if getattr(args, "search", False) else cli(args)) or 0


def _add_expo_arguments(p: argparse.ArgumentParser) -> None:
    from rmlib.expo import add_cli_arguments

    add_cli_arguments(p)


def _head_spec(text: str) -> dict[str, float]:
    """``--heads helpfulness=0.7,correctness=0.3`` → {name: weight}."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        try:
            if not eq or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"rmlib export: --heads {text!r}: give NAME=WEIGHT pairs separated by commas, e.g. "
                             "helpfulness=1 or helpfulness=0.7,correctness=0.3") from None
    return out


def _weight_list(text: str) -> list[float]:
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise SystemExit(f"rmlib export: --head-weights {text!r}: give one number per head separated by commas, "
                         "e.g. 0.3,0.7,0,0,0") from None


def cmd_export(args: argparse.Namespace) -> int:
    from rmlib.models.export import export_model, model_heads

    heads = _head_spec(args.heads) if args.heads else None
    weights = _weight_list(args.head_weights) if args.head_weights else None
    try:
        result = export_model(args.adapter_dir, args.out, heads=heads, head_weights=weights,
                              one_output=args.one_output, dtype=args.dtype, device=args.device,
                              max_shard_size=args.max_shard_size)
    except ValueError as e:  # a user's weights or directory, named; not a crash
        raise SystemExit(f"rmlib export: {e}") from None
    if "max_abs_diff" in result:
        what = "probe logits" if result.get("model_type") == "causal_lm" else "probe scores"
        print(f"merged {args.adapter_dir} ({result['dtype']}); {what} reproduced after reloading "
              f"(max |diff| {result['max_abs_diff']:.2g}); export contract met")
    fold = result.get("fold")
    if fold:
        terms = " + ".join(f"{w:g}*{h}" for h, w in fold["weights"].items() if w)
        print(f"folded the heads into one output: reward = {terms} (weights from {fold['source']}); probe scores "
              f"match the weighted heads (max |diff| {fold['max_abs_diff']:.2g}); export contract met")
    elif len(heads_out := model_heads(result["out"])) > 1:
        print(f"note: {result['out']} has {len(heads_out)} outputs {heads_out}; RL clients read one each (TRL's GRPO "
              "the first, verl the last): --heads, --head-weights or --one-output write a one-output model")
    print(f"wrote {result['out']}")
    from rmlib.models.export import write_model_card

    info = Path(args.adapter_dir) / "rmlib.json"  # the run's summary (steps, data report, held-out eval)
    summary = json.loads(info.read_text()).get("summary") if info.is_file() else None
    write_model_card(result["out"], summary=summary)  # with how to load it and serve it with vLLM / SGLang
    return 0


def _add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("adapter_dir", help="a LoRA run's model directory (a reward model's adapter + head + tokenizer, "
                                       "or a Pairwise Justifier's causal-LM adapter), or a plain model directory "
                                       "to fold with --heads / --head-weights / --one-output")
    p.add_argument("--heads", default=None,
                   help="write a one-output model, reward = the weighted heads: NAME=WEIGHT pairs, e.g. "
                        "helpfulness=1 or helpfulness=0.7,correctness=0.3 (heads not named weigh 0)")
    p.add_argument("--head-weights", default=None,
                   help="write a one-output model: one weight per head in id2label order, e.g. 0.3,0.7,0,0,0")
    p.add_argument("--one-output", action="store_true",
                   help="write a one-output model with the weights the RewardBench head-weight grid search found "
                        "for this model (`rmlib eval DIR --suite rewardbench heads.search=true`, DIR/*/report.json)")
    p.add_argument("--merge", action="store_true",
                   help="accepted for compatibility and ignored: export always merges")
    p.add_argument("--out", required=True, help="the merged model directory (written atomically)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="dtype of the merged weights (default: the base's)")
    p.add_argument("--device", default=None,
                   help="where the probe check runs, e.g. cpu or cuda:0 (default: cuda if present)")
    p.add_argument("--max-shard-size", default="5GB", help="largest output shard, e.g. 2GB")


def cmd_serve(args: argparse.Namespace) -> int:
    from rmlib.serve import ServeOptions, serve
    from rmlib.serve.auth import read_api_key

    combine = [float(w) for w in args.combine.split(",")] if args.combine else None
    api_key = read_api_key(args.api_key_file) if args.api_key_file else None  # once, before the model loads
    opts = ServeOptions(max_batch_sequences=args.max_batch_sequences, max_wait_ms=args.max_wait_ms,
                        batch_size=args.batch_size, max_items=args.max_items, max_chars=args.max_chars,
                        max_body_bytes=args.max_body_mb * 2**20, combine=combine,
                        max_new_tokens=args.max_new_tokens, max_pending=args.max_pending, api_key=api_key)
    serve(args.model, host=args.host, port=args.port, dtype=args.dtype, device=args.device,
          max_length=args.max_length, trust_remote_code=args.trust_remote_code,
          attn_implementation=args.attn_implementation, options=opts, served_name=args.served_model_name,
          reward_token=args.reward_token)
    return 0


def _add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model directory, LoRA run output, hub id or built-in alias")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype the model is loaded in")
    p.add_argument("--device", default=None, help="e.g. cpu or cuda:0 (default: cuda if present)")
    p.add_argument("--max-length", type=int, default=None, help="tokens per sequence (default: the model's limit)")
    p.add_argument("--attn-implementation", default=None, help="e.g. sdpa, eager, flash_attention_2")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long a request waits for others to share its batch")
    p.add_argument("--max-batch-sequences", type=int, default=256, help="sequences gathered into one batch")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per model call (an upper bound)")
    p.add_argument("--max-items", type=int, default=1024,
                   help="sequences per request, or messages per chat request (more: 413 / 400)")
    p.add_argument("--max-chars", type=int, default=200_000,
                   help="generative models: characters per message (more: 400); a reward model truncates "
                        "long texts as training does instead (the prompt from the left, a response longer than "
                        "max_length keeps its end) and counts it in /health")
    p.add_argument("--max-body-mb", type=int, default=16, help="request body size (more: 413)")
    p.add_argument("--api-key-file", default=None,
                   help="a file holding a key: every route but /health then needs `Authorization: Bearer <key>` "
                        "(401 otherwise, counted in /health); read once at start")
    p.add_argument("--combine", default=None, help="comma-separated head weights for `reward` (default: the "
                                                  "first head; every head is returned anyway)")
    p.add_argument("--max-new-tokens", type=int, default=1024,
                   help="generative models: tokens one completion may ask for (more: 400)")
    p.add_argument("--max-pending", type=int, default=256,
                   help="generative models: completions queued or generating (more: 429, retry later)")
    p.add_argument("--served-model-name", default=None,
                   help="the `model` name clients send and /v1/models lists (default: the MODEL argument)")
    _add_reward_token_argument(p)
    _add_trust_remote_code_argument(p)


def cmd_push(args: argparse.Namespace) -> int:
    from rmlib.models.export import push_model, require_contract, write_model_card

    require_contract(args.model)  # before the card is touched or the network is called
    if args.eval_report or not (Path(args.model) / "README.md").exists():
        write_model_card(args.model, repo_id=args.repo_id, eval_reports=args.eval_report)
    url = push_model(args.model, args.repo_id, private=args.private, revision=args.revision)
    print(f"uploaded {args.model} to {args.repo_id}: {url}")
    return 0


def _add_push_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model directory (a merged export, a full fine-tune or an ExPO output)")
    p.add_argument("repo_id", help="hub repository, e.g. me/my-reward-model (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--revision", default=None, help="branch to upload to (default: main)")
    p.add_argument("--eval-report", action="append", default=[],
                   help="report.json (or its directory) written by `rmlib eval`, added to the model card; repeatable")


def cmd_plan(args: argparse.Namespace) -> int:
    from rmlib.plan import cli

    return cli(args)


def _add_plan_arguments(p: argparse.ArgumentParser) -> None:
    from rmlib.plan import add_cli_arguments

    add_cli_arguments(p)


def cmd_data(args: argparse.Namespace) -> int:
    from rmlib.data.inspect import inspect, prepare

    if getattr(args, "curation_func", None):  # dedup, decontaminate, filter, retrieve, ... (rmlib.curation.cli)
        return args.curation_func(args)
    if args.data_cmd == "inspect":
        print(inspect(args.path, args.format, tokenizer=args.tokenizer, on_invalid=args.on_invalid))
    elif args.config:
        from rmlib.config import load_config
        from rmlib.training.data import prepare_features

        overrides = ([args.path] if args.path else []) + args.overrides  # `--config C k=v`: k=v lands in path
        ex = prepare_features(load_config(args.config, overrides))
        print(ex.report.format())
        print(f"features {'built' if ex.built else 'already cached'} in "
              f"{ex.train.table.directory.parent}: train {len(ex.train)}, eval {len(ex.eval)} ({ex.eval_source})")
    else:
        if not args.path or not args.out:
            raise SystemExit("rmlib data prepare: give FILE --out OUT (canonical JSONL) or --config CONFIG "
                             "(build the training feature cache)")
        print(prepare(args.path, args.out, args.format, on_invalid=args.on_invalid))
    return 0


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    """``inspect`` and ``prepare`` (here), then the curation subcommands (:mod:`rmlib.curation.cli`)."""
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    di = dsub.add_parser("inspect", help="format, counts, token length statistics and the validation report")
    di.add_argument("path", help="data file (JSONL/JSON/Parquet/CSV, optionally .gz) or hub dataset id")
    _add_format_argument(di)
    di.add_argument("--tokenizer", default=None, help="tokenizer for length statistics (path or built-in alias)")
    di.add_argument("--on-invalid", default="skip", choices=["error", "skip"],
                    help="skip (default here): count invalid records in the report; error: stop at the first")
    dp = dsub.add_parser("prepare", help="write canonical rmlib JSONL, or (--config) build a training run's "
                                         "tokenized feature cache ahead of time")
    dp.add_argument("path", nargs="?", help="data file to convert to canonical JSONL")
    dp.add_argument("--out", help="where the canonical JSONL goes")
    dp.add_argument("--config", help="a training YAML: build its train/eval feature cache (data.cache_dir)")
    dp.add_argument("overrides", nargs="*", default=[], help="dotted overrides for --config, as for train")
    _add_format_argument(dp)
    dp.add_argument("--on-invalid", default="error", choices=["error", "skip"],
                    help="error (default): stop at the first invalid record; skip: leave it out and report it")
    from rmlib.curation.cli import add_parsers as add_curation_parsers

    add_curation_parsers(dsub)


#: Every subcommand in ``rmlib --help`` order: (name, help, the function declaring its flags, its command).
SUBCOMMANDS = [
    ("train", "train a reward model from a YAML config", _add_train_arguments, cmd_train),
    ("score", "write rewards for every response in a data file to JSONL (a Pairwise Justifier: its verdicts on "
              "every pair)", _add_score_arguments, cmd_score),
    ("eval", "evaluate a model (or cached scores) on a benchmark suite", _add_eval_arguments, cmd_eval),
    ("compare", "one table of several evaluation reports of a suite: a row per model, a column per metric",
     _add_compare_arguments, cmd_compare),
    ("expo", "ExPO weight extrapolation: θ = θ_strong + α(θ_strong − θ_weak)", _add_expo_arguments, cmd_expo),
    ("export", "merge a LoRA adapter directory into a plain transformers model directory, and/or fold a multi-head "
               "model's heads into one output", _add_export_arguments, cmd_export),
    ("serve", "HTTP server: a reward model's scores for RL loops (OpenRLHF /get_reward, plain /score), a "
              "justifier's OpenAI /v1/chat/completions", _add_serve_arguments, cmd_serve),
    ("push", "upload a model directory that meets the export contract to the Hugging Face Hub",
     _add_push_arguments, cmd_push),
    ("plan", "estimate peak GPU memory of LoRA/QLoRA settings and list those that fit", _add_plan_arguments, cmd_plan),
    ("data", "inspect, convert or curate datasets", _add_data_arguments, cmd_data),
]


def build_parser() -> argparse.ArgumentParser:
    from rmlib import __version__

    p = argparse.ArgumentParser(prog="rmlib", description="Train and evaluate reward models.")
    p.add_argument("--version", "-V", action="version", version=f"rmlib {__version__}")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of rmlib's own errors too (also RMLIB_DEBUG=1)")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, help_text, add_arguments, command in SUBCOMMANDS:
        sp = sub.add_parser(name, help=help_text)
        add_arguments(sp)
        sp.set_defaults(func=command)
    return p


def _dispatch(argv: list[str]) -> int:
    if argv[:2] == ["expo", "search"]:
        # `rmlib expo --weak ...` and `rmlib expo search ...` share a name but not their arguments
        from rmlib.expo import add_search_arguments

        p = argparse.ArgumentParser(prog="rmlib expo search",
                                    description="search the extrapolation coefficient on held-out pairs")
        add_search_arguments(p)
        args = p.parse_args(argv[2:])
        args.search, args.func = True, cmd_expo
        return args.func(args)
    if argv[:1] == ["eval"]:
        # KEY=VALUE overrides may follow the flags, which needs parse_intermixed_args (not for subparsers)
        from rmlib.eval.cli import main as eval_main

        return eval_main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


def _user_errors() -> tuple[type[BaseException], ...]:
    """rmlib's own error types: their message is the whole story, so no traceback is shown."""
    from rmlib.config import ConfigError
    from rmlib.data.schema import DataError
    from rmlib.models.export import ExportContractError
    from rmlib.runtime import LaunchError
    from rmlib.training.checkpoint import CheckpointError

    return ConfigError, DataError, CheckpointError, LaunchError, ExportContractError


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand. rmlib's own errors (config, data, checkpoint, launch) print one line and
    exit with status 2; ``--debug`` (or ``RMLIB_DEBUG=1``) shows their traceback too. Any other
    exception is unexpected and keeps its traceback."""
    import os

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--version"], ["-V"]):
        from rmlib import __version__

        print(f"rmlib {__version__}")
        return 0
    debug = "--debug" in argv or os.environ.get("RMLIB_DEBUG", "").lower() in ("1", "true", "yes")
    argv = [a for a in argv if a != "--debug"]
    try:
        return _dispatch(argv)
    except _user_errors() as e:
        if debug:
            raise
        print(f"rmlib: error: {e}", file=sys.stderr)
        print("(run with --debug for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
