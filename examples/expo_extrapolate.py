"""ExPO weight extrapolation between two tiny checkpoints, and the α search.

weak = a random-init tiny Llama reward model, strong = the same model after a short BT run on the
sample preferences. ``rmlib.expo.extrapolate`` writes θ = θ_strong + α·(θ_strong − θ_weak) as a
normal transformers directory; ``search_alpha`` scores candidate α on one loaded model and picks
the best by held-out pairwise accuracy.

    python examples/expo_extrapolate.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

import rmlib
from rmlib.data.formats import load
from rmlib.data.samples import sample_path
from rmlib.expo import extrapolate, pairwise_evaluator, search_alpha
from rmlib.testing import build_tiny_llama


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        weak = build_tiny_llama(Path(tmp) / "weak")
        summary = rmlib.train({
            "model": {"name_or_path": str(weak)},
            "data": {"train": str(sample_path("preference_train.jsonl")), "max_length": 128},
            "loss": {"name": "bt"},
            "train": {"output_dir": f"{tmp}/run", "max_steps": 25, "per_device_batch_size": 16, "lr": 3e-3,
                      "progress": False},
        })
        strong = summary["model_dir"]

        # 1. One α, written to disk. factor=1.5 would be the same (factor = 1 + α).
        out = extrapolate(weak, strong, alpha=0.5, output_dir=f"{tmp}/expo-0.5")
        w, s, e = (load_file(f"{d}/model.safetensors") for d in (weak, strong, out))
        name = "score.weight"
        torch.testing.assert_close(e[name], s[name] + 0.5 * (s[name] - w[name]))
        print(f"wrote {out.name}: {sorted(p.name for p in out.iterdir())}")
        print(f"expo.json: {json.loads((out / 'expo.json').read_text())['formula']}")

        # 2. Search α on 100 held-out pairs with the strong model loaded once.
        pairs = load(sample_path("preference_test.jsonl")).examples[:100]
        tokenizer = rmlib.RewardModel.from_pretrained(strong).tokenizer

        def score(model):
            rm = rmlib.RewardModel(model, tokenizer, max_length=128)
            return rm.score_pairs([p.prompt for p in pairs], [p.chosen for p in pairs], [p.rejected for p in pairs],
                                  batch_size=64)

        result = search_alpha(weak, strong, [0.0, 0.25, 0.5, 1.0], pairwise_evaluator(score), refine=False)
        print(result.to_markdown())
        print(f"best alpha: {result.best_alpha:g} (factor {result.best_factor:g}), "
              f"accuracy {result.best_row['accuracy']:.3f}")


if __name__ == "__main__":
    main()
