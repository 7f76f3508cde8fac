"""Do distributional reward models know when annotators disagree? The divergence suite's AUROC and ECE
for four model types trained on one learnable split-votes set.

The data (:func:`rmlib.testing.write_split_votes`): half the pairs unanimous (a 'yes' response over a 'no'
one, votes [2, 2, 2]), half diverging (a 'maybe' response over a 'yes' or a 'no' one, 2 to 1 with a
significant vote on each side); ratings of the same responses (yes [4, 4, 4], no [0, 0, 0], maybe
[4, 4, 0]). Four models on a tiny random-init Llama, the same steps and learning rate:

* ``bt_aggregate``: ``bt`` on the majority pairs (``data.annotations=aggregate``), what most libraries train;
* ``bt_all``: ``bt`` on one pair per annotator vote (``data.annotations=all``, the Diverging Preferences
  paper's "all annotations");
* ``mean_var``: ``mean_var`` on every vote;
* ``rating_ce``: ``rating_ce`` on every annotator's rating.

Each is evaluated by ``rmlib eval --suite divergence`` on held-out pairs of the same world; the table gives
the AUROC of telling diverging from high-agreement pairs by −|Δr| (``abs_gap``, all a BT model offers) and
by the model's predicted uncertainty, and the ECE of P(A ≻ B) against the vote share. Not a timing: the
numbers are what the models learned (a fixed seed; they move with torch's CPU kernels by a few hundredths).

    python bench/divergence_auroc.py            # 60 steps each, ~3 minutes on 2 CPU cores
    python bench/divergence_auroc.py --quick    # 3 steps, to ..._quick.json: checks the pipeline (numbers mean nothing)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = {  # name: (loss, data, format, annotations)
    "bt_aggregate": ("bt", "pairs", "rmlib_pairs", "aggregate"),
    "bt_all": ("bt", "pairs", "rmlib_pairs", "all"),
    "mean_var": ("mean_var", "pairs", "rmlib_pairs", "all"),
    "rating_ce": ("rating_ce", "ratings", "helpsteer2_disagreements", "all"),
}


def train_one(work: Path, model: Path, name: str, data: dict[str, Path], steps: int, lr: float) -> Path:
    from omegaconf import OmegaConf

    from rmlib.training import train

    loss, which, fmt, annotations = MODELS[name]
    cfg = {"model": {"name_or_path": str(model)},
           "data": {"train": str(data[which]), "format": fmt, "max_length": 64, "annotations": annotations,
                    "eval_fraction": 0.1},
           "loss": {"name": loss},
           "train": {"output_dir": str(work / name), "per_device_batch_size": 16, "max_steps": steps, "lr": lr,
                     "scheduler": "constant", "progress": False, "seed": 0, "sanity_checks": False,
                     "overwrite": True}}  # a rerun in the same --workdir starts afresh
    path = work / f"{name}.yaml"
    OmegaConf.save(OmegaConf.create(cfg), path)
    train(str(path))
    return work / name / "model"


def evaluate(model_dir: Path, held: Path, out: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "rmlib", "eval", str(model_dir), "--suite", "divergence", "--data",
                    str(held), "--out", str(out)], check=True, env=env, capture_output=True, text=True)
    return json.loads((out / "report.json").read_text())["metrics"]


def row(name: str, m: dict) -> dict:
    a = m["auroc"]
    return {"model": name, "auroc_gap": a["high_agreement"]["abs_gap"],
            "auroc_uncertainty": a["high_agreement"]["uncertainty"],
            "auroc_gap_vs_preferences": a["high_agreement_preference"]["abs_gap"],
            "auroc_uncertainty_vs_preferences": a["high_agreement_preference"]["uncertainty"],
            "ece": m.get("ece")}


def markdown(rows: list[dict], meta: dict) -> str:
    def f(x):
        return "–" if x is None else f"{x:.3f}"

    lines = [f"Split-votes set: {meta['n_train']} training pairs (half diverging), {meta['n_heldout']} held out; "
             f"tiny Llama (hidden {meta['hidden']}), {meta['steps']} steps at lr {meta['lr']:g}, seed 0.", "",
             "| model | AUROC by −abs(Δr) | AUROC by uncertainty | same, vs preferences only (gap / uncertainty) | ECE |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['model']}` | {f(r['auroc_gap'])} | {f(r['auroc_uncertainty'])} | "
                     f"{f(r['auroc_gap_vs_preferences'])} / {f(r['auroc_uncertainty_vs_preferences'])} | {f(r['ece'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 steps and 32 pairs: a pipeline check")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--n", type=int, default=160, help="training pairs")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--workdir", default="/tmp/rmlib_divergence_auroc")
    ap.add_argument("--out", default=None,
                    help="results JSON (default: bench/results/divergence_auroc.json, or ..._quick.json with --quick, "
                         "so a smoke run never replaces the figures the docs quote)")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.n = 3, 32
    if args.out is None:
        args.out = str(ROOT / "bench" / "results" / f"divergence_auroc{'_quick' if args.quick else ''}.json")
    from rmlib.testing import build_tiny_llama, write_split_votes

    work = Path(args.workdir)
    model = build_tiny_llama(work / "base", hidden_size=args.hidden)
    pairs, ratings, held = write_split_votes(work / "data", n=args.n)
    data = {"pairs": pairs, "ratings": ratings}
    t0 = time.perf_counter()
    rows = []
    for name in MODELS:
        model_dir = train_one(work, model, name, data, args.steps, args.lr)
        rows.append(row(name, evaluate(model_dir, held, work / f"eval_{name}")))
        print(json.dumps(rows[-1]))
    meta = {"n_train": args.n, "n_heldout": args.n // 2, "hidden": args.hidden, "steps": args.steps, "lr": args.lr,
            "seconds": round(time.perf_counter() - t0, 1), "quick": args.quick}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
