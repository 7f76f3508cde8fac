"""``rmlib data dedup|decontaminate|ngram-index|overlap|filter|retrieve|annotate|review``: thin wrappers over the
curation steps."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_parsers"]

WORKERS_HELP = "worker processes (default: this process below 4,000 pairs, else one per core, at most 16)"


def _common(p: argparse.ArgumentParser, out_help: str = "output directory (written atomically; never the input's)"):
    p.add_argument("path", help="pairs file (any pairs format `rmlib data inspect` reads) or hub dataset id")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--format", default=None, help="reader to use (default: detected)")
    p.add_argument("--on-invalid", default="error", choices=["error", "skip"],
                   help="error (default): stop at the first invalid record; skip: count it in the report")


def _index(args: argparse.Namespace, default_n: int):
    from rmlib.curation import NgramIndex, benchmark_index

    if bool(args.index) == bool(args.benchmark):
        raise SystemExit("give either --benchmark SUITE=PATH (one or more) or --index FILE.npz")
    if args.index:
        index = NgramIndex.load(args.index)
        if args.n is not None and args.n != index.n:
            raise SystemExit(f"--n {args.n} but the index {args.index} holds {index.n}-grams")
        return index
    return benchmark_index(args.benchmark, args.n or default_n)


def _bench_args(p: argparse.ArgumentParser, n_help: str) -> None:
    p.add_argument("--benchmark", action="append", default=[], metavar="[NAME:]SUITE=PATH",
                   help="a benchmark file read by an `rmlib eval` suite, e.g. rewardbench=rb.jsonl, "
                        "rmbench=rm.json, judgebench=jb.jsonl, rmb=RMB_dataset/ (repeatable)")
    p.add_argument("--index", default=None, help="an n-gram index saved by `rmlib data ngram-index`")
    p.add_argument("--n", type=int, default=None, help=n_help)


def _print(report: Any) -> int:
    print(report.format())
    return 0


def cmd_dedup(args: argparse.Namespace) -> int:
    from rmlib.curation import dedup_pairs

    return _print(dedup_pairs(args.path, args.out, format=args.format, conflicts=args.conflicts,
                              num_proc=args.num_proc, on_invalid=args.on_invalid))


def cmd_decontaminate(args: argparse.Namespace) -> int:
    from rmlib.curation import decontaminate

    index = _index(args, 13)
    return _print(decontaminate(args.path, args.out, index, format=args.format, num_proc=args.num_proc,
                                on_invalid=args.on_invalid))


def cmd_ngram_index(args: argparse.Namespace) -> int:
    from rmlib.curation import benchmark_index

    if not args.benchmark:
        raise SystemExit("give --benchmark SUITE=PATH (one or more)")
    index = benchmark_index(args.benchmark, args.n or 13)
    index.save(args.out)
    print(json.dumps(index.describe(), indent=2))
    return 0


def cmd_overlap(args: argparse.Namespace) -> int:
    from rmlib.curation import overlap_report

    res = overlap_report(args.path, _index(args, 7), args.out, format=args.format, num_proc=args.num_proc,
                         on_invalid=args.on_invalid)
    print(f"{res['check']}: {res['overlapping']} of {res['n_pairs']} pairs ({100 * res['share']:.2f} %) "
          f"share an n-gram with a benchmark prompt: {res['per_benchmark']}; report: {args.out}")
    return 0


def _named(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        name, eq, src = v.partition("=")
        if not eq or not name or not src:
            raise SystemExit(f"{what} {v!r}: write NAME=MODEL_OR_SCORE_FILE, e.g. gold=gold_scores.jsonl")
        out[name] = src
    return out


def cmd_filter(args: argparse.Namespace) -> int:
    from rmlib.curation import parse_rule, score_and_filter

    for rule in args.rule:  # a typo in a rule is one line naming the choices, before any model is loaded
        try:
            parse_rule(rule)
        except ValueError as e:
            raise SystemExit(f"rmlib data filter: --rule {rule}: {e}") from None
    return _print(score_and_filter(
        args.path, args.out, _named(args.model, "--model"), rules=args.rule or ["gold_and_judge_or_best"],
        judge=args.judge, review_model=args.review_model, review_band=args.review_band, recycle=args.recycle,
        batch_size=args.batch_size, format=args.format, on_invalid=args.on_invalid))


def cmd_retrieve(args: argparse.Namespace) -> int:
    from rmlib.curation import retrieve_pairs

    return _print(retrieve_pairs(args.path, args.pool, args.out, args.scores, embedder=args.embedder, key=args.key,
                                 k_max=args.k_max, max_p=args.max_p, backend=args.backend,
                                 batch_size=args.batch_size, format=args.format, on_invalid=args.on_invalid,
                                 exclude=args.exclude))


def cmd_annotate(args: argparse.Namespace) -> int:
    import os

    from rmlib.curation.annotate import AnnotateAborted, annotate_pairs

    extra = {}
    for item in args.extra:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise SystemExit(f"--extra {item!r}: write KEY=JSON_VALUE, e.g. top_p=0.9")
        try:
            extra[k] = json.loads(v)
        except ValueError:
            extra[k] = v
    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    try:
        report = annotate_pairs(
            args.path, args.out, endpoint=args.endpoint, model=args.model, template=args.template,
            both_orders=args.both_orders, label=args.label, examples=args.examples,
            prompt_examples=args.prompt_examples, seed=args.seed, wait_for=args.wait,
            concurrency=args.concurrency, timeout=args.timeout, max_retries=args.max_retries, deadline=args.deadline,
            backoff_base=args.backoff_base, backoff_max=args.backoff_max, temperature=args.temperature,
            max_tokens=args.max_tokens, api_key=api_key, extra_body=extra,
            max_consecutive_failures=args.max_consecutive_failures, format=args.format, on_invalid=args.on_invalid)
    except AnnotateAborted as e:
        raise SystemExit(str(e)) from None
    return _print(report)


def cmd_review(args: argparse.Namespace) -> int:
    from rmlib.curation.review import review_import, review_sample

    if args.review_cmd == "sample":
        report = review_sample(args.path, args.out, size=args.size, seed=args.seed, show_llm=args.show_llm,
                               format=args.format, on_invalid=args.on_invalid)
        print(report.format())
        print(f"  decide every row of {args.out}/review.csv (or review.jsonl): decision = A, B or discard; "
              f"then: rmlib data review import {args.out}/review.csv --out GOLD_DIR")
        return 0
    report = review_import(args.path, args.out, sample=args.sample, previous=args.previous)
    print(report.format())
    a = report.extra["agreement"]
    print(f"  human vs {a['reference']}: accuracy {a['accuracy']}, Cohen's kappa {a['kappa']} over {a['pairs']} pairs")
    return 0


def add_parsers(dsub: Any) -> None:
    """Add the curation subcommands to ``rmlib data``'s subparsers (each sets ``curation_func``)."""
    from rmlib.curation.rules.consistency import RULES

    p = dsub.add_parser("dedup", help="exact dedup on (conversation, chosen, rejected); swapped pairs are conflicts")
    _common(p)
    p.add_argument("--conflicts", default="drop", choices=["drop", "keep_first"],
                   help="drop (default): remove every pair of a label conflict; keep_first: keep the earliest")
    p.add_argument("--num-proc", type=int, default=None, help=WORKERS_HELP)
    p.set_defaults(curation_func=cmd_dedup)

    p = dsub.add_parser("decontaminate", help="remove pairs whose first-turn prompt shares an n-gram (default 13) "
                                              "with a benchmark prompt")
    _common(p)
    _bench_args(p, "n-gram length (default 13, Skywork-Reward-V2)")
    p.add_argument("--num-proc", type=int, default=None, help=WORKERS_HELP)
    p.set_defaults(curation_func=cmd_decontaminate)

    p = dsub.add_parser("ngram-index", help="build and save the hashed n-gram index of benchmark prompts once")
    _bench_args(p, "n-gram length (default 13)")
    p.add_argument("--out", required=True, help="the index file (.npz)")
    p.set_defaults(curation_func=cmd_ngram_index)

    p = dsub.add_parser("overlap", help="report (never remove) n-gram overlap with benchmark prompts; default n=7 "
                                        "(the HelpSteer2-Preference RewardBench check)")
    _common(p, out_help="the JSON report file")
    _bench_args(p, "n-gram length (default 7, HelpSteer2-Preference)")
    p.add_argument("--num-proc", type=int, default=None, help=WORKERS_HELP)
    p.set_defaults(curation_func=cmd_overlap)

    p = dsub.add_parser("filter", help="reward-model consistency filter (Skywork-Reward-V2 stage 2)")
    _common(p)
    p.add_argument("--model", action="append", default=[], metavar="NAME=MODEL_OR_SCORES",
                   help="a reward model (directory, alias) or a score file from `rmlib score`, named for the rules "
                        "(gold=..., best=...; repeatable)")
    p.add_argument("--rule", action="append", default=[], metavar="NAME[:key=value,...]",
                   help="keep-rule (repeatable, all must keep; default gold_and_judge_or_best): " +
                        "; ".join(f"{r.name} {dict(r.defaults) or ''}".strip() for r in RULES.values()))
    p.add_argument("--judge", default=None, help="the judge's verdicts: JSONL rows {index, agrees: true|false}")
    p.add_argument("--review-model", default=None, help="model whose confidence routes pairs to review.jsonl")
    p.add_argument("--review-band", type=float, default=0.0,
                   help="route kept pairs with |p - 0.5| <= this to review.jsonl (default 0: no review file)")
    p.add_argument("--recycle", action="store_true",
                   help="write dropped pairs every model (and the judge) rejects, flipped, to recycled.jsonl")
    p.add_argument("--batch-size", type=int, default=16, help="scoring batch size for models")
    p.set_defaults(curation_func=cmd_filter)

    p = dsub.add_parser("retrieve", help="error-driven retrieval (Skywork-Reward-V2 stage 1): the next batch to "
                                         "annotate from an unlabeled pool")
    _common(p)
    p.add_argument("--pool", required=True, help="the unlabeled pairs to retrieve from")
    p.add_argument("--scores", required=True, help="the current model's rewards of the labeled pairs: a score file "
                                                   "(`rmlib score`) or a model (directory, alias)")
    p.add_argument("--k-max", type=int, default=8, help="k = k_max if p <= 0.5 else ceil(k_max (1 - p)); default 8")
    p.add_argument("--max-p", type=float, default=1.0, help="only pairs with p <= this retrieve (default 1.0: all)")
    p.add_argument("--embedder", default="minilm-l6", help="sentence embedder (default: the bundled MiniLM)")
    p.add_argument("--key", default="pair", choices=["pair", "prompt_attributes"],
                   help="what a pair is embedded as: pair (default: first user turn, chosen, rejected) or "
                        "prompt_attributes (the conversation with its meta.attributes from `rmlib data annotate`: "
                        "Skywork-Reward-V2's (x, a))")
    p.add_argument("--backend", default="numpy", choices=["numpy", "faiss"],
                   help="exact search: numpy (default; bounded memory) or faiss (faiss-cpu's IndexFlatIP)")
    p.add_argument("--batch-size", type=int, default=16, help="scoring batch size when --scores is a model")
    p.add_argument("--exclude", nargs="*", default=[], metavar="FILE",
                   help="pairs already taken from the pool (earlier rounds' retrieved or annotated files): never "
                        "retrieved again, in either order; counted as already_taken")
    p.set_defaults(curation_func=cmd_retrieve)

    _annotate_parser(dsub)


def _annotate_parser(dsub: Any) -> None:
    from rmlib.curation.prompts import BUNDLED, DEFAULT_TEMPLATE

    p = dsub.add_parser("annotate", help="LLM annotation over an OpenAI-compatible server (vLLM, SGLang, TGI, "
                                         "rmlib serve, ...): preference attributes and a label per pair, resumable")
    _common(p)
    p.add_argument("--endpoint", required=True, help="the server's base URL, e.g. http://gpu-node:8000/v1 (or the full "
                                                     ".../chat/completions URL)")
    p.add_argument("--model", required=True, help="the model name the server expects in requests")
    p.add_argument("--template", default=DEFAULT_TEMPLATE,
                   help=f"prompt template: bundled {', '.join(BUNDLED)} (default {DEFAULT_TEMPLATE}) or a YAML file")
    p.add_argument("--both-orders", action="store_true",
                   help="ask with the responses in both positions; pairs whose verdicts differ are removed "
                        "(orders_disagree) and the agreement is reported")
    p.add_argument("--label", default="llm", choices=["llm", "keep"],
                   help="llm (default): the LLM's verdict becomes the label (pairs flipped where it disagrees); "
                        "keep: the input's label stays, verdicts go to judge.jsonl for `rmlib data filter --judge`")
    p.add_argument("--examples", default=None,
                   help="human-labelled pairs shown in the prompt: the labelled file the batch was retrieved with; "
                        "each pair's meta.curation.retrieved_by names its examples (at most 8)")
    p.add_argument("--prompt-examples", type=int, default=8, help="at most this many examples per pair (0-8; default 8)")
    p.add_argument("--wait", type=float, default=0.0,
                   help="first wait up to this many seconds for the server to answer GET /models (a job script that "
                        "starts `vllm serve` or `rmlib serve` beside the annotator)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per attempt (default 120)")
    p.add_argument("--max-retries", type=int, default=6, help="retries of a request on 429/5xx/timeouts (default 6)")
    p.add_argument("--deadline", type=float, default=900.0, help="seconds per request, all attempts (default 900)")
    p.add_argument("--backoff-base", type=float, default=1.0, help="first retry wait in seconds, doubled each retry")
    p.add_argument("--backoff-max", type=float, default=60.0, help="longest retry wait in seconds (default 60)")
    p.add_argument("--max-consecutive-failures", type=int, default=64,
                   help="stop (journal kept, rerun resumes) after this many failed requests in a row; 0: never")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0)")
    p.add_argument("--max-tokens", type=int, default=1024, help="answer token limit (default 1024)")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-pair coin that orders the responses")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key sent as a bearer token, if set")
    p.add_argument("--extra", action="append", default=[], metavar="KEY=JSON",
                   help="extra request body field, e.g. top_p=0.9 or 'response_format={\"type\":\"json_object\"}'")
    p.set_defaults(curation_func=cmd_annotate)

    p = dsub.add_parser("review", help="the gold set: a stratified sample for people to decide (CSV/JSONL), read back, "
                                       "checked, with human-LLM agreement")
    rsub = p.add_subparsers(dest="review_cmd", required=True)
    s = rsub.add_parser("sample", help="write a sample stratified by task category and annotator confidence")
    _common(s, out_help="the sample directory: review.csv, review.jsonl (edit either), sample.jsonl")
    s.add_argument("--size", type=int, default=200, help="pairs to sample (default 200)")
    s.add_argument("--seed", type=int, default=0, help="sampling and A/B order seed")
    s.add_argument("--show-llm", action="store_true", help="show the LLM's verdict (default: hidden, no anchoring)")
    s.set_defaults(curation_func=cmd_review)
    s = rsub.add_parser("import", help="read the decided file back, check it, write gold.jsonl and the agreement")
    s.add_argument("path", help="the edited review.csv or review.jsonl")
    s.add_argument("--out", required=True, help="output directory: gold.jsonl, report.json")
    s.add_argument("--sample", default=None, help="the sample directory (default: the edited file's directory)")
    s.add_argument("--previous", default=None, help="an earlier gold.jsonl, written first: the gold set accumulates")
    s.set_defaults(curation_func=cmd_review)
