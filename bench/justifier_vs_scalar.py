"""BT, regression and a Pairwise Justifier trained and evaluated on the same pairs (docs/justifier.md).

Data: the bundled ``judge_learnable.jsonl`` (320 train / 80 test judge records, held-out items). The same
records become, for each model type, the data it needs:

* Bradley-Terry (``bt``): (prompt, chosen, rejected) pairs;
* regression (``mse`` on ``helpfulness``): each response rated alone, 4 for the answer and 0 for the
  non-answer (the only information the pair carries, written as ratings);
* Pairwise Justifier (``justifier``): the judge records, target ``label`` (the paper's best ablation)
  and ``elaboration_statement`` (its default), flip augmentation on.

Every model is the same random-init two-layer Llama (hidden 64, the trained-on-the-fly tokenizer of
``rmlib.testing``: a sequence classifier for BT and regression, a causal LM for the justifier), trained for
the same number of optimizer steps and batch size, then evaluated on the 80 test pairs with the ``pairs``
suite: scalar models by scoring both responses, the justifier by generating and parsing its verdict in
both orders. Inference cost is measured as wall seconds per test pair in the same run.

    python bench/justifier_vs_scalar.py --steps 80      # the table in docs/justifier.md
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from rmlib.data.samples import sample_path
    from rmlib.eval.generative import justifier_report
    from rmlib.eval.runner import load_suite, run_suite
    from rmlib.models import JustifierModel, RewardModel
    from rmlib.testing import build_tiny_causal_lm, build_tiny_llama
    from rmlib.training import train

    tmp = Path(tempfile.mkdtemp(prefix="rmlib-justifier-bench-"))
    rows = [json.loads(line) for line in sample_path("judge_learnable.jsonl").read_text().splitlines()]
    tr, te = [r for r in rows if r["meta"]["split"] == "train"], [r for r in rows if r["meta"]["split"] == "test"]

    def pairs(rs):
        return [{"prompt": r["prompt"][0]["content"], "chosen": r[f"response_{r['better']}"],
                 "rejected": r[f"response_{3 - r['better']}"]} for r in rs]

    def write(name, items):
        p = tmp / name
        p.write_text("".join(json.dumps(x) + "\n" for x in items))
        return p

    train_pairs, test_pairs = write("train_pairs.jsonl", pairs(tr)), write("test_pairs.jsonl", pairs(te))
    ratings = [{"prompt": [{"role": "user", "content": p["prompt"]}], "response": p[k],
                "attributes": {"helpfulness": 4 if k == "chosen" else 0}, "meta": {}}
               for p in pairs(tr) for k in ("chosen", "rejected")]
    train_ratings = write("train_ratings.jsonl", ratings)
    rm_base = build_tiny_llama(tmp / "rm_base")
    lm_base = build_tiny_causal_lm(tmp / "lm_base", rm_base)
    common = {"per_device_batch_size": args.batch, "lr": args.lr, "scheduler": "constant", "max_steps": args.steps,
              "progress": False, "seed": 0, "sanity_checks": False}
    runs = {
        "Bradley-Terry (bt)": ({"name_or_path": str(rm_base)}, {"train": str(train_pairs), "eval": str(test_pairs)},
                               {"name": "bt"}),
        "Regression (mse, helpfulness)": ({"name_or_path": str(rm_base), "attributes": ["helpfulness"]},
                                          {"train": str(train_ratings)}, {"name": "mse"}),
        "Justifier, target label": ({"name_or_path": str(lm_base)}, {"train": str(sample_path("judge_learnable.jsonl")),
                                    "train_split": "train", "eval_split": "test"},
                                    {"name": "justifier", "options": {"target": "label"}}),
        "Justifier, elaboration + statement": (
            {"name_or_path": str(lm_base)}, {"train": str(sample_path("judge_learnable.jsonl")),
                                             "train_split": "train", "eval_split": "test"},
            {"name": "justifier", "options": {"target": "elaboration_statement"}}),
    }
    data = load_suite("pairs", test_pairs)
    table = []
    for name, (model, dat, loss) in runs.items():
        out = tmp / name.split()[0].lower() / loss.get("options", {}).get("target", "x")
        t0 = time.perf_counter()
        train({"model": model, "data": {**dat, "max_length": 256}, "loss": loss,
               "train": {**common, "output_dir": str(out)}})
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        if loss["name"] == "justifier":
            rep = justifier_report(JustifierModel.from_pretrained(out / "model"), "pairs", data, both_orders=True,
                                   max_new_tokens=64 if "statement" in name else 8, batch_size=16)
            j = rep.meta["justifier"]
            extra = {"two_game_accuracy": j["two_game_accuracy"], "position_bias_rate": j["position_bias_rate"],
                     "half_credit_games": j["half_credit_games"], "forward_passes": "1 prefill + 1 per new token, x2 orders"}
        else:
            m = RewardModel.from_pretrained(out / "model")
            rep = run_suite("pairs", data, m, batch_size=16)
            extra = {"forward_passes": "2 (one per response)"}
        eval_s = time.perf_counter() - t0
        table.append({"model": name, "accuracy": rep.metrics["accuracy"], "train_s": round(train_s, 1),
                      "eval_s_per_pair": round(eval_s / len(data.records), 4), **extra})
        print(json.dumps(table[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"steps": args.steps, "batch": args.batch, "lr": args.lr, "rows": table}, indent=2))


if __name__ == "__main__":
    main()
