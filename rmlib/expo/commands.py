"""``rmlib expo`` (one extrapolation) and ``rmlib expo search`` (α search): argparse wiring only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rmlib.expo.extrapolation import extrapolate
from rmlib.expo.matching import ON_MISMATCH
from rmlib.expo.search import COARSE_ALPHAS, pairwise_evaluator, plot_search, search_alpha


def add_cli_arguments(parser: Any) -> None:
    """Arguments of ``rmlib expo`` on an ``argparse`` (sub)parser."""
    parser.add_argument("--weak", required=True, help="weak/initial model (θ_weak), dir, hub name or LoRA adapter")
    parser.add_argument("--strong", required=True, help="strong/aligned model (θ_strong)")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--alpha", type=float, help="θ = θ_strong + α(θ_strong − θ_weak); 0 returns strong")
    how.add_argument("--factor", type=float, help="extrapolation factor F = 1 + α (HelpSteer2-Preference)")
    parser.add_argument("--out", required=True, help="output directory (written atomically)")
    parser.add_argument("--on-mismatch", choices=ON_MISMATCH, default="error",
                        help="tensors in one model only or with different shapes: error, copy strong's, "
                             "or select weak's head row of --head-attribute")
    parser.add_argument("--head-attribute", default=None, help="weak head label used with --on-mismatch select_rows")
    parser.add_argument("--base", default=None, help="base model of LoRA adapter inputs (default: from adapter config)")
    parser.add_argument("--max-shard-size", default="5GB", help="largest output shard, e.g. 2GB")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out (never an input)")


def cli(args: Any) -> int:
    """Run ``rmlib expo`` from a namespace built by :func:`add_cli_arguments`."""
    out = extrapolate(args.weak, args.strong, alpha=args.alpha, output_dir=args.out, factor=args.factor,
                      on_mismatch=args.on_mismatch, head_attribute=args.head_attribute, base=args.base,
                      max_shard_size=args.max_shard_size, overwrite=args.overwrite)
    print(out)
    return 0


def add_search_arguments(parser: Any) -> None:
    """Arguments of ``rmlib expo search``."""
    parser.add_argument("--weak", required=True, help="weak/initial model (θ_weak)")
    parser.add_argument("--strong", required=True, help="strong/aligned model (θ_strong)")
    parser.add_argument("--data", required=True, help="validation preference file (any format rmlib reads)")
    parser.add_argument("--format", default=None, help="reader for --data (default: detected from the records)")
    parser.add_argument("--out", required=True, help="directory for the best model, table and plot")
    parser.add_argument("--alphas", default=None, help="comma-separated coarse grid of alphas (default 0.1..1.0 step 0.1: "
                        "factors 1.1..2.0, as HelpSteer2-Preference); the strong model alone is reported as a "
                        "baseline row, not a grid point")
    parser.add_argument("--no-refine", action="store_true", help="skip the 0.01-step grid around the best")
    parser.add_argument("--on-mismatch", choices=ON_MISMATCH, default="error",
                        help="tensors in one model only or with different shapes: error, copy strong's, "
                             "or select weak's head row of --head-attribute")
    parser.add_argument("--head-attribute", default=None, help="weak head label used with --on-mismatch select_rows")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per scoring batch (an upper bound)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens per sequence (default: the model's position limit, at most 1024)")


def search_cli(args: Any) -> int:
    """``rmlib expo search``: grid-search α on held-out pairs, write the best model and a report.

    One backbone is loaded; each candidate's weights are set in place and scored with
    :meth:`rmlib.RewardModel.score_pairs` (the featurization every rmlib scorer uses), so no
    candidate is written to disk.
    """
    from transformers import AutoTokenizer

    from rmlib.data.formats import load
    from rmlib.data.tokenize import prepare_tokenizer
    from rmlib.models import RewardModel
    from rmlib.models.reward_model import resolve_max_length
    from rmlib.models.safetensors_io import local_model_dir

    pairs = load(args.data, args.format).examples
    if not pairs or not hasattr(pairs[0], "chosen"):
        raise SystemExit(f"rmlib expo search: {args.data} holds no preference pairs")
    tok = AutoTokenizer.from_pretrained(str(local_model_dir(args.strong)))
    if prepare_tokenizer(tok):
        raise SystemExit("rmlib expo search: the strong model's tokenizer has no usable pad token; "
                         "save it with rmlib first")
    prompts = [p.prompt for p in pairs]
    chosen = [p.chosen for p in pairs]
    rejected = [p.rejected for p in pairs]

    def score_fn(model):
        rm = RewardModel(model, tok, max_length=resolve_max_length(args.max_length, model.config, "--max-length"))
        return rm.score_pairs(prompts, chosen, rejected, batch_size=args.batch_size)

    alphas = [float(a) for a in args.alphas.split(",")] if args.alphas else list(COARSE_ALPHAS)
    result = search_alpha(args.weak, args.strong, alphas, pairwise_evaluator(score_fn), refine=not args.no_refine,
                          on_mismatch=args.on_mismatch, head_attribute=args.head_attribute,
                          progress=lambda row: print(json.dumps(row)))
    out = Path(args.out)
    best = result.write_best(out / "model", on_mismatch=args.on_mismatch, head_attribute=args.head_attribute)
    (out / "search.json").write_text(result.to_json())
    (out / "search.md").write_text(result.to_markdown())
    plot_search(result, out / "search.png")
    print(result.to_markdown())
    print(f"best alpha {result.best_alpha:g} (factor {result.best_factor:g}); model written to {best}")
    return 0
