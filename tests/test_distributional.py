"""Distributional reward models (mean_var, rating_ce): losses by hand, the head's start, reading saved models
with plain transformers, the divergence suite's new columns, and models that know when annotators split.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rmlib.eval import auroc, calibration, pair_preference
from rmlib.losses import get_loss
from rmlib.models.distribution import (
    DISTRIBUTION_KEY,
    MeanVar,
    RatingCE,
    apply_distribution,
    distribution_from_config,
)
from tests.helpers import run_cli, write_config

# ------------------------------------------------------------------------------------------ losses by hand


def test_mean_var_equals_hand_computed_two_pairs():
    # pair 1: mu 1 vs 0, both log-variances 0 -> sigma^2 = 0.05^2 + 1 each, z = 1 / sqrt(2.005) = 0.706225,
    #         vote share 1: -log Phi(0.706225) = 0.274469
    # pair 2: mu 0.5 vs 1.5, variances 0.0025 + 3 and 0.0025 + 0.5 -> z = -1 / sqrt(3.505) = -0.534141,
    #         vote share 0.75: -(0.75 log Phi(z) + 0.25 log Phi(-z)) = 0.999438
    loss = get_loss("mean_var", reduction="none")
    chosen = torch.tensor([[1.0, 0.0], [0.5, math.log(3.0)]], dtype=torch.float64)
    rejected = torch.tensor([[0.0, 0.0], [1.5, math.log(0.5)]], dtype=torch.float64)
    values = loss(chosen, rejected, torch.tensor([1.0, 0.75]))
    assert values.tolist() == pytest.approx([0.2744687571163008, 0.9994378017128194], abs=1e-9)
    mean = get_loss("mean_var")(chosen, rejected, torch.tensor([1.0, 0.75]))
    assert float(mean) == pytest.approx(0.63695327941456, abs=1e-9)
    # through the trainer's entry point: rows chosen-first, labels by name
    out = torch.cat([chosen, rejected])
    assert loss.batch_values(out, {"vote_share": torch.tensor([1.0, 0.75])}).tolist() == pytest.approx(values.tolist())


def test_mean_var_is_finite_far_from_the_votes_and_checks_its_inputs():
    loss = get_loss("mean_var")
    c = torch.tensor([[-40.0, -20.0]], requires_grad=True)  # z ~ -200: log Phi must not underflow to -inf
    r = torch.tensor([[40.0, -20.0]])
    value = loss(c, r, torch.tensor([1.0]))
    value.backward()
    assert torch.isfinite(value) and float(value.detach()) > 1000 and torch.isfinite(c.grad).all()
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        loss(torch.zeros(2, 1), torch.zeros(2, 1), 1.0)
    with pytest.raises(ValueError, match="vote_share"):
        loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([1.5]))


def test_rating_ce_equals_hand_computed_and_skips_missing_ratings():
    # row 1: uniform logits, rating 3 -> -log(1/5) = 1.609438
    # row 2: logits [2, 1, 0, 0, 0], rating 0.5 -> target [0.5, 0.5, 0, 0, 0]:
    #        -(0.5 (2 - log Z) + 0.5 (1 - log Z)), Z = e^2 + e + 3 -> 1.073172
    loss = get_loss("rating_ce", reduction="none")
    logits = torch.tensor([[0.0, 0, 0, 0, 0], [2.0, 1, 0, 0, 0], [5.0, 0, 0, 0, 0]], dtype=torch.float64)
    targets = torch.tensor([[3.0], [0.5], [float("nan")]])
    assert loss(logits, targets).tolist() == pytest.approx([1.6094379124341003, 1.0731722205122476, 0.0], abs=1e-9)
    assert float(get_loss("rating_ce")(logits, targets)) == pytest.approx(1.3413050664731738, abs=1e-9)
    assert loss.count({"targets": targets}, 3) == 2  # the unrated row is not a unit of the mean
    with pytest.raises(ValueError, match="scale"):
        loss(logits[:1], torch.tensor([[4.5]]))


def test_rating_ce_soft_target_keeps_the_rating_as_its_expectation():
    loss = get_loss("rating_ce", levels=[1, 2, 4])
    q, valid = loss._targets(torch.tensor([[1.0], [3.0], [2.5], [-100.0]]), torch.zeros(1, dtype=torch.float64))
    assert valid.tolist() == [True, True, True, False]
    levels = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    assert (q[:3] @ levels).tolist() == pytest.approx([1.0, 3.0, 2.5])
    assert q[:3].sum(1).tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_rating_ce_needs_one_attribute():
    loss = get_loss("rating_ce", attribute="helpfulness")
    names, dist = loss.model_head(["helpfulness"])
    assert names == [f"helpfulness={k}" for k in range(5)] and isinstance(dist, RatingCE)
    with pytest.raises(ValueError, match="model.attributes"):
        loss.model_head(["helpfulness", "correctness"])


# ------------------------------------------------------------------------------ the head and saved models


def test_a_fresh_distributional_head_starts_at_one_half(tiny_llama):
    from rmlib import RewardModel

    dist = MeanVar(min_std=0.1)
    rm = RewardModel.from_pretrained(tiny_llama, attributes=dist.output_names)
    apply_distribution(rm.config, rm.head, dist)
    assert isinstance(rm.distribution, MeanVar) and rm.distribution.min_std == 0.1
    out = rm.score_outputs(["a question", "another"], ["yes it is", "no"])
    assert out["reward"].abs().max() == 0
    assert out["std"].tolist() == pytest.approx([math.sqrt(1 + 0.01)] * 2)
    p, unc = pair_preference("mean_var", {k: v[:1].numpy() for k, v in out.items()},
                             {k: v[1:].numpy() for k, v in out.items()})
    assert p.tolist() == [0.5]
    # sigma never goes below min_std, whatever the head says
    assert float(dist.variance(torch.tensor(-1e4))) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="combine"):
        rm.score(["q"], ["r"], combine=[1.0, 0.0])


def test_config_declaring_a_distribution_is_checked():
    class Cfg:
        num_labels = 3
        rmlib_distribution = {"kind": "mean_var", "min_std": 0.05}

    with pytest.raises(ValueError, match="num_labels is 3"):
        distribution_from_config(Cfg())
    Cfg.rmlib_distribution = {"kind": "gaussian_mixture"}
    with pytest.raises(ValueError, match=DISTRIBUTION_KEY):
        distribution_from_config(Cfg())
    with pytest.raises(ValueError, match="strictly increasing"):
        RatingCE(levels=(0, 2, 1))


# --------------------------------------------------------------------------------------- metric functions


def test_auroc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 200).astype(float)  # many ties
    labels = rng.random(200) < 0.3
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert math.isnan(auroc([1.0, 2.0], [False, False]))


def test_calibration_bins_by_hand():
    res = calibration([0.05, 0.15, 0.12, 0.95], [0.0, 0.5, 0.0, 1.0], bins=10)
    # bins: [0,.1): 0.05 vs 0 -> 0.05; [.1,.2): mean 0.135 vs 0.25 -> 0.115; [.9,1]: 0.95 vs 1 -> 0.05
    assert res["ece"] == pytest.approx((0.05 + 2 * 0.115 + 0.05) / 4)
    assert [b["n"] for b in res["bins"]] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]


def test_rating_pair_preference_by_hand():
    a = {"reward": np.array([0.5]), "probs": np.array([[0.5, 0.5]])}
    b = {"reward": np.array([0.0]), "probs": np.array([[1.0, 0.0]])}
    p, overlap = pair_preference("rating_ce", a, b)
    # P(X_a > X_b) = 0.5 (a at level 1, b at level 0) + half of P(equal) = 0.5 * 0.5
    assert p.tolist() == pytest.approx([0.75]) and overlap.tolist() == pytest.approx([0.5])


# ------------------------------------------------------------- models that know when annotators split


def _write_split_votes(root: Path, n: int = 160, seed: int = 0) -> tuple[Path, Path, Path]:
    """The split-votes world of :func:`rmlib.testing.write_split_votes` ('maybe' responses contested)."""
    from rmlib.testing import write_split_votes

    return write_split_votes(root, n, seed)


def _train(root: Path, model: Path, name: str, loss: str, data: Path, fmt: str, annotations: str,
           steps: int = 60, lora: bool = False) -> Path:
    from rmlib.training import train

    model_section = {"name_or_path": str(model)}
    if lora:
        model_section["lora"] = {"enabled": True, "r": 4, "alpha": 8}
    cfg = write_config(root / f"{name}.yaml", model=model_section,
                       data={"train": str(data), "format": fmt, "max_length": 64, "annotations": annotations,
                             "eval_fraction": 0.1},
                       loss={"name": loss}, train={"output_dir": str(root / name), "per_device_batch_size": 16,
                                                   "max_steps": steps, "lr": 3e-3, "scheduler": "constant",
                                                   "progress": False, "seed": 0, "sanity_checks": False})
    train(str(cfg))
    return root / name / "model"


@pytest.mark.slow
def test_distributional_models_tell_diverging_from_unanimous_pairs(tmp_path, tiny_llama):
    """End to end through `rmlib train`'s API and `rmlib eval --suite divergence`: the distributional models'
    own uncertainty separates diverging from unanimous pairs far better than a BT model's reward gap."""
    pairs, ratings, held = _write_split_votes(tmp_path)
    models = {"bt": _train(tmp_path, tiny_llama, "bt", "bt", pairs, "rmlib_pairs", "aggregate"),
              "mean_var": _train(tmp_path, tiny_llama, "mean_var", "mean_var", pairs, "rmlib_pairs", "all"),
              "rating_ce": _train(tmp_path, tiny_llama, "rating_ce", "rating_ce", ratings,
                                  "helpsteer2_disagreements", "all")}
    reports = {}
    for name, model in models.items():
        run_cli("eval", str(model), "--suite", "divergence", "--data", str(held), "--out", str(tmp_path / f"ev_{name}"),
                env={"HF_HUB_OFFLINE": "1"})
        reports[name] = json.loads((tmp_path / f"ev_{name}" / "report.json").read_text())["metrics"]
    bt = reports["bt"]["auroc"]["high_agreement"]
    assert bt["uncertainty"] is None  # a BT model has nothing but its gap
    for name in ("mean_var", "rating_ce"):
        m = reports[name]
        assert m["model_type"] == name
        assert m["auroc"]["high_agreement"]["uncertainty"] >= bt["abs_gap"] + 0.3, (name, m["auroc"], bt)
    # aggregated labels train a decisive preference on 2-to-1 splits; the votes' likelihood does not
    assert reports["mean_var"]["ece"] < reports["bt"]["ece"], (reports["mean_var"]["ece"], reports["bt"]["ece"])
    # the per-pair view: rmlib score gives each side's spread and the model's P(chosen > rejected)
    run_cli("score", str(models["mean_var"]), str(pairs), "--format", "rmlib_pairs", "--out", str(tmp_path / "s.jsonl"),
            env={"HF_HUB_OFFLINE": "1"})
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    split_std = np.mean([r["chosen_std"] for r in rows[2::4]])  # chosen is the contested 'maybe' response
    clear_std = np.mean([r["chosen_std"] for r in rows[0::4]])
    assert split_std > 2 * clear_std, (split_std, clear_std)
    assert all(0.0 <= r["p_chosen"] <= 1.0 for r in rows)


@pytest.mark.slow
def test_a_saved_distributional_model_reads_the_same_with_plain_transformers(tmp_path, tiny_llama):
    """The model card's promise: AutoModelForSequenceClassification's logits and config.json give the same
    mean and spread as rmlib (sigma^2 = min_std^2 + exp(log_variance); rating: softmax over the levels)."""
    from transformers import AutoModelForSequenceClassification

    from rmlib import RewardModel

    pairs, ratings, _ = _write_split_votes(tmp_path, n=32)
    for name, loss, data, fmt in [("mv", "mean_var", pairs, "rmlib_pairs"),
                                  ("rce", "rating_ce", ratings, "helpsteer2_disagreements")]:
        model_dir = _train(tmp_path, tiny_llama, name, loss, data, fmt, "all", steps=8)
        rm = RewardModel.from_pretrained(model_dir)
        prompts, responses = ["1 the number", "2 what sum"], ["maybe the answer", "yes it is"]
        ours = rm.score_outputs(prompts, responses)
        hf = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        cfg = json.loads((model_dir / "config.json").read_text())
        assert cfg["problem_type"] == "regression" and cfg[DISTRIBUTION_KEY]["kind"] == loss
        feat = rm.featurizer()
        for i, (p, r) in enumerate(zip(prompts, responses)):
            ids = torch.tensor([feat.encode([{"role": "user", "content": p}], r).ids])
            with torch.no_grad():
                logits = hf(input_ids=ids).logits[0].double()
            if loss == "mean_var":
                assert cfg["id2label"] == {"0": "reward", "1": "log_variance"}
                mu, sigma = logits[0], (cfg[DISTRIBUTION_KEY]["min_std"] ** 2 + logits[1].exp()).sqrt()
            else:
                probs = logits.softmax(-1)
                levels = torch.tensor(cfg[DISTRIBUTION_KEY]["levels"], dtype=torch.float64)
                mu = probs @ levels
                sigma = (probs @ (levels - mu) ** 2).sqrt()
            assert float(mu) == pytest.approx(float(ours["reward"][i]), abs=1e-5)
            assert float(sigma) == pytest.approx(float(ours["std"][i]), abs=1e-5)
        assert rm.score(prompts, responses).tolist() == pytest.approx(ours["reward"].tolist(), abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("loss,fmt", [("mean_var", "rmlib_pairs"), ("rating_ce", "helpsteer2_disagreements")])
def test_a_lora_distributional_run_reloads_exports_and_serves_its_distribution(tmp_path, tiny_llama, loss, fmt):
    """A LoRA run's base config does not declare the head, so the adapter directory must: reloading it and
    merging it (rmlib export) keep the distribution, the merged model meets the export contract and gives the
    same mean and spread; folding its outputs into one is refused, and a broken declaration is named."""
    from rmlib import RewardModel
    from rmlib.models.export import check_export_contract, export_model

    pairs, ratings, _ = _write_split_votes(tmp_path, n=32)
    adapter = _train(tmp_path, tiny_llama, "lora", loss, pairs if loss == "mean_var" else ratings, fmt, "all",
                     steps=4, lora=True)
    assert (adapter / "adapter_config.json").is_file()
    # the card names the reward a distribution gives, in the adapter directory (no config.json there) as after
    # the merge, and never suggests folding its outputs (which export refuses)
    said = "the predicted mean" if loss == "mean_var" else "the expected rating"
    card = (adapter / "README.md").read_text()
    assert said in card and "--heads" not in card, card[:1500]
    prompts, responses = ["1 the number", "2 what sum", "3 a list"], ["maybe the answer", "yes it is", "no"]
    rm = RewardModel.from_pretrained(adapter)
    assert rm.distribution is not None and rm.distribution.kind == loss
    ours = rm.score_outputs(prompts, responses)
    assert rm.score(prompts, responses).shape == (3,)
    merged = tmp_path / "merged"
    run_cli("export", str(adapter), "--out", str(merged), env={"HF_HUB_OFFLINE": "1"})
    assert check_export_contract(merged) == []
    assert said in (merged / "README.md").read_text()
    assert json.loads((merged / "config.json").read_text())[DISTRIBUTION_KEY]["kind"] == loss
    again = RewardModel.from_pretrained(merged).score_outputs(prompts, responses)
    for name in ("reward", "std"):
        torch.testing.assert_close(again[name], ours[name], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="distribution's parameters"):
        export_model(adapter, tmp_path / "folded", head_weights=[1.0] * len(rm.attributes))
    # ExPO with the adapter as strong: its output's config is the base's, told the run's head (alpha 0: the
    # merged model itself; the base's one-output head does not match, so strong's head is copied)
    from rmlib.expo import extrapolate

    ex = extrapolate(tiny_llama, adapter, 0.0, tmp_path / "expo", on_mismatch="copy_strong")
    assert json.loads((ex / "config.json").read_text())[DISTRIBUTION_KEY]["kind"] == loss
    ex_out = RewardModel.from_pretrained(ex).score_outputs(prompts, responses)
    for name in ("reward", "std"):
        torch.testing.assert_close(ex_out[name], ours[name], atol=1e-4, rtol=0)
    cfg = json.loads((merged / "config.json").read_text())
    cfg[DISTRIBUTION_KEY] = {"kind": loss, "levels": [0, 1]} if loss == "rating_ce" else {"kind": loss, "min_std": -1}
    (merged / "config.json").write_text(json.dumps(cfg))
    (problem,) = check_export_contract(merged)
    assert problem.startswith(DISTRIBUTION_KEY), problem


def _dist_cfg(root: Path, model: Path, name: str, loss: str, data: Path, fmt: str, *, micro: int, accum: int,
              lr: float) -> Path:
    return write_config(root / f"{name}.yaml", model={"name_or_path": str(model)},
                        data={"train": str(data), "format": fmt, "max_length": 64, "annotations": "all"},
                        loss={"name": loss},
                        train={"output_dir": str(root / name), "per_device_batch_size": micro,
                               "gradient_accumulation_steps": accum, "max_steps": 4, "lr": lr, "max_grad_norm": 0.0,
                               # a large eps makes Adam's step proportional to the gradient, so a loss
                               # normalised by the wrong count would show in the weights
                               "adam_eps": 1.0, "scheduler": "constant", "progress": False, "seed": 3,
                               "sanity_checks": False})


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("loss,fmt", [("mean_var", "rmlib_pairs"), ("rating_ce", "helpsteer2_disagreements")])
def test_two_processes_train_a_distributional_model_like_one(tmp_path, tiny_llama, loss, fmt):
    """2 processes x micro-batch 1 x accumulation 2 and one process x micro-batch 4 see the same global
    batches and end with the same weights (head included); twice the step would not."""
    import subprocess

    from rmlib.training import train
    from tests.helpers import load_weights
    from tests.test_distributed import LAUNCH, _env

    pairs, ratings, _ = _write_split_votes(tmp_path, n=48)
    data = pairs if loss == "mean_var" else ratings
    ddp = _dist_cfg(tmp_path, tiny_llama, "ddp", loss, data, fmt, micro=1, accum=2, lr=0.1)
    proc = subprocess.run([*LAUNCH, "--multi_gpu", "--num_processes", "2", "-m", "rmlib", "train", str(ddp)],
                          env=_env(ACCELERATE_USE_CPU="true"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["num_processes"] == 2
    big = train(str(_dist_cfg(tmp_path, tiny_llama, "big", loss, data, fmt, micro=4, accum=1, lr=0.1)))
    train(str(_dist_cfg(tmp_path, tiny_llama, "scaled", loss, data, fmt, micro=4, accum=1, lr=0.2)))

    def max_diff(a: str, b: str) -> float:
        wa, wb = load_weights(tmp_path / a / "model"), load_weights(tmp_path / b / "model")
        return max((wa[k] - wb[k]).abs().max().item() for k in wa)

    tol = 5e-5
    assert max_diff("ddp", "big") < tol
    assert abs(summary["eval"]["loss"] - big["eval"]["loss"]) < 1e-3
    assert max_diff("scaled", "big") > 100 * tol
    # the head started at zero and moved: the equality above covers a trained distributional head
    head = {k: v for k, v in load_weights(tmp_path / "ddp" / "model").items() if k.startswith("score.")}
    assert head and max(float(v.abs().max()) for v in head.values()) > 1e-3
