"""Score a preference file with a reward model and compute metrics with ``rmlib.eval``.

Scoring (the only step that touches a model) and metrics (pure functions of the scores) are two
steps: first by hand with ``RewardModel.score_pairs`` + ``pairwise_accuracy`` + ``wilson_interval``,
then in one call with ``rmlib.eval.evaluate(model, "pairs", ...)``, whose report is written to a directory.
The model is a tiny Llama trained for 25 steps so that the numbers are above chance.

    python examples/evaluate_pairs.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import rmlib
from rmlib.data.formats import load
from rmlib.data.samples import sample_path
from rmlib.eval import evaluate, pairwise_accuracy, wilson_interval
from rmlib.testing import build_tiny_llama


def main() -> None:
    test_file = sample_path("preference_test.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        summary = rmlib.train({
            "model": {"name_or_path": str(build_tiny_llama(Path(tmp) / "tiny-llama"))},
            "data": {"train": str(sample_path("preference_train.jsonl")), "max_length": 128},
            "loss": {"name": "bt"},
            "train": {"output_dir": f"{tmp}/run", "max_steps": 25, "per_device_batch_size": 16, "lr": 3e-3,
                      "progress": False},
        })
        model = rmlib.RewardModel.from_pretrained(summary["model_dir"], max_length=256)

        # 1. By hand: scores, then pure metric functions of them.
        pairs = load(test_file).examples
        prompts = [p.prompt for p in pairs]
        chosen, rejected = (r.numpy() for r in model.score_pairs(prompts, [p.chosen for p in pairs],
                                                                  [p.rejected for p in pairs], batch_size=64))
        acc = pairwise_accuracy(chosen, rejected, groups=[p.meta["task"] for p in pairs])
        low, high = wilson_interval(acc["correct"], acc["n"])
        print(f"pairwise accuracy: {acc['accuracy']:.3f} ({acc['correct']}/{acc['n']}), "
              f"95% Wilson CI [{low:.3f}, {high:.3f}]")
        for task, g in acc["groups"].items():
            print(f"  {task:<11} {g['accuracy']:.3f} (n={g['n']})")

        # 2. The same through the "pairs" suite: a Report with metrics, per-group table and plots.
        report = evaluate(model, "pairs", str(test_file), format="auto", group_column="task", batch_size=64)
        assert report.metrics["accuracy"] == acc["accuracy"]
        written = report.save(Path(tmp) / "report")
        print(f"suite accuracy: {report.metrics['accuracy']:.3f}; wrote {sorted(p.name for p in written.values())}")


if __name__ == "__main__":
    main()
