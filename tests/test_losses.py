"""Loss registry: values against independent float64 references, gradients, edge cases and errors."""

from __future__ import annotations

import math

import pytest
import torch

from rmlib.losses import (
    MISSING_TARGET,
    PairwiseLoss,
    RewardLoss,
    UnknownLossError,
    get_loss,
    get_loss_class,
    list_losses,
    register_loss,
)
from rmlib.losses import registry as registry_module

NAN = float("nan")
PAIRWISE = ["bt", "margin_bt", "scaled_bt", "soft_bt"]

# Small hand values: Δ = r_c − r_r = [1.5, -1.0, 0.0, 3.0].
CHOSEN = [0.5, -0.25, 1.0, 2.0]
REJECTED = [-1.0, 0.75, 1.0, -1.0]
MARGIN = [1.0, 0.0, 2.0, 3.0]
PROB = [1.0, 0.25, 0.5, 0.0]


def _log_sigmoid(x: float) -> float:
    """Reference written without torch: log(1 / (1 + e^-x))."""
    return math.log(1.0 / (1.0 + math.exp(-x)))


def reference_pairwise(name: str, chosen, rejected, margin=None, prob=None, center=0.0) -> list[float]:
    """Per-pair loss from the paper formulas, in Python floats (float64)."""
    out = []
    for i, (c, r) in enumerate(zip(chosen, rejected)):
        d = c - r
        if name == "bt":
            v = -_log_sigmoid(d)
        elif name == "margin_bt":
            v = -_log_sigmoid(d - margin[i])
        elif name == "scaled_bt":
            v = -margin[i] * _log_sigmoid(d)
        else:
            p = prob[i]
            s = 1.0 / (1.0 + math.exp(-d))
            v = -(p * math.log(s) + (1 - p) * math.log(1 - s))
        out.append(v + center * (c + r) ** 2)
    return out


def labels_for(name: str, margin=None, prob=None) -> dict:
    cls = get_loss_class(name)
    labels = {}
    if "margin" in cls.labels:
        labels["margin"] = torch.tensor(MARGIN if margin is None else margin, dtype=torch.float64)
    if "target_prob" in cls.labels:
        labels["target_prob"] = torch.tensor(PROB if prob is None else prob, dtype=torch.float64)
    return labels


def t64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# --------------------------------------------------------------------------- registry


def test_registry_lists_builtin_losses_with_declared_labels():
    assert {"bt", "margin_bt", "scaled_bt", "soft_bt", "mse"} <= set(list_losses())
    expected = {
        "bt": ("pairwise", "pairs", "pairs", ()),
        "margin_bt": ("pairwise", "pairs", "pairs", ("margin",)),
        "scaled_bt": ("pairwise", "pairs", "pairs", ("margin",)),
        "soft_bt": ("pairwise", "pairs", "pairs", ("target_prob",)),
        "mse": ("pointwise", "examples", "ratings", ("targets",)),
    }
    for name, want in expected.items():
        cls = get_loss_class(name)
        assert (cls.family, cls.count_unit, cls.data_kind, cls.labels) == want, name
        assert isinstance(get_loss(name), RewardLoss)


def test_unknown_name_lists_registered_names():
    with pytest.raises(KeyError) as err:
        get_loss("bradley_terry")
    assert "bradley_terry" in str(err.value) and "margin_bt" in str(err.value) and "mse" in str(err.value)
    with pytest.raises(ValueError):  # the same error is also a ValueError, for config validation
        get_loss("BT")
    assert issubclass(UnknownLossError, KeyError) and issubclass(UnknownLossError, ValueError)


def test_unknown_option_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="margin_scale"):
        get_loss("margin_bt", margin_scale=2.0)
    with pytest.raises(TypeError, match="center_coef"):
        get_loss("mse", center_coef=0.1)  # centering belongs to pairwise losses only
    with pytest.raises(TypeError, match="attribute_weights"):
        get_loss("bt", attribute_weights=[1.0])


@pytest.mark.parametrize("options", [{"reduction": "avg"}, {"center_coef": -0.1}, {"center_coef": math.inf}])
def test_invalid_option_values_rejected(options):
    with pytest.raises(ValueError):
        get_loss("bt", **options)


def test_register_loss_adds_a_class_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))

    @register_loss("hinge_test")
    class Hinge(PairwiseLoss):
        def per_pair(self, delta, labels):
            return torch.relu(1 - delta)

    assert "hinge_test" in list_losses()
    loss = get_loss("hinge_test", reduction="none")
    torch.testing.assert_close(loss(t64([2.0, 0.0]), t64([0.0, 0.5])), t64([0.0, 1.5]))
    with pytest.raises(ValueError, match="already registered"):
        register_loss("bt")(Hinge)


# --------------------------------------------------------------------------- pairwise values


def test_bt_at_zero_difference_is_log_2():
    loss = get_loss("bt")
    assert loss(torch.zeros(5), torch.full((5,), 0.0)).item() == pytest.approx(math.log(2), abs=1e-7)
    assert loss(t64([3.0]), t64([3.0])).item() == pytest.approx(0.6931471805599453, abs=1e-15)


def test_hand_computed_values():
    # margin_bt at Δ = m is log 2; scaled_bt with m = 2 at Δ = 0 is 2·log 2;
    # soft_bt with p = 1/2 at Δ = 2 is −½(log σ(2) + log σ(−2)) = ½·(2 + 2·log(1 + e^−2)) = 1 + log(1 + e^−2).
    assert get_loss("margin_bt")(t64([2.5]), t64([1.5]), margin=1.0).item() == pytest.approx(math.log(2))
    assert get_loss("scaled_bt")(t64([0.0]), t64([0.0]), margin=2.0).item() == pytest.approx(2 * math.log(2))
    soft = get_loss("soft_bt")(t64([2.0]), t64([0.0]), target_prob=0.5).item()
    assert soft == pytest.approx(1 + math.log(1 + math.exp(-2)), abs=1e-12)


@pytest.mark.parametrize("name", PAIRWISE)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_pairwise_matches_reference(name, reduction):
    loss = get_loss(name, reduction=reduction)
    got = loss(t64(CHOSEN), t64(REJECTED), **labels_for(name))
    ref = reference_pairwise(name, CHOSEN, REJECTED, MARGIN, PROB)
    expected = {"none": t64(ref), "mean": t64(sum(ref) / len(ref)), "sum": t64(sum(ref))}[reduction]
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", PAIRWISE)
def test_column_rewards_and_scalar_labels(name):
    """(B, 1) rewards equal (B,) rewards; a scalar label applies to every pair."""
    loss = get_loss(name, reduction="none")
    flat = loss(t64(CHOSEN), t64(REJECTED), **labels_for(name, margin=[2.0] * 4, prob=[0.75] * 4))
    scalar = {k: v[0].item() for k, v in labels_for(name, margin=[2.0] * 4, prob=[0.75] * 4).items()}
    column = loss(t64(CHOSEN)[:, None], t64(REJECTED)[:, None], **scalar)
    torch.testing.assert_close(column, flat)
    assert column.shape == (4,)


def test_margin_bt_with_zero_margin_equals_bt():
    chosen, rejected = t64(CHOSEN), t64(REJECTED)
    torch.testing.assert_close(
        get_loss("margin_bt")(chosen, rejected, margin=torch.zeros(4)), get_loss("bt")(chosen, rejected)
    )


def test_scaled_bt_zero_strength_gives_zero_loss_and_zero_grad():
    chosen = t64(CHOSEN).requires_grad_()
    rejected = t64(REJECTED).requires_grad_()
    margin = t64([0.0, 2.0, 0.0, 1.0])
    per_pair = get_loss("scaled_bt", reduction="none")(chosen, rejected, margin=margin)
    assert per_pair[0].item() == 0.0 and per_pair[2].item() == 0.0 and per_pair[1].item() > 0
    per_pair.sum().backward()
    assert chosen.grad[[0, 2]].tolist() == [0.0, 0.0] and rejected.grad[[0, 2]].tolist() == [0.0, 0.0]
    assert chosen.grad[1].item() != 0.0
    # m = 0 pairs still count in the mean (NeMo-Aligner averages over all pairs).
    mean = get_loss("scaled_bt")(t64(CHOSEN), t64(REJECTED), margin=margin)
    torch.testing.assert_close(mean, per_pair.detach().sum() / 4)


def test_soft_bt_with_certain_targets_equals_bt():
    chosen, rejected = t64(CHOSEN), t64(REJECTED)
    soft = get_loss("soft_bt", reduction="none")
    bt = get_loss("bt", reduction="none")
    # computed by different formulas: equal to fp64 rounding, not bitwise
    torch.testing.assert_close(soft(chosen, rejected, target_prob=torch.ones(4)), bt(chosen, rejected),
                               atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(soft(chosen, rejected, target_prob=0.0), bt(rejected, chosen))


def test_center_coef_adds_squared_reward_sum():
    lam = 0.25
    chosen, rejected = t64(CHOSEN), t64(REJECTED)
    ref = reference_pairwise("bt", CHOSEN, REJECTED, center=lam)
    # By hand for the first pair: −log σ(1.5) + 0.25·(0.5 − 1.0)² = 0.201413 + 0.0625.
    assert ref[0] == pytest.approx(0.2014132779827524 + 0.0625, abs=1e-12)
    torch.testing.assert_close(
        get_loss("bt", center_coef=lam, reduction="none")(chosen, rejected), t64(ref), rtol=1e-12, atol=1e-12
    )
    centered = get_loss("scaled_bt", center_coef=lam)(chosen, rejected, margin=t64(MARGIN))
    plain = get_loss("scaled_bt")(chosen, rejected, margin=t64(MARGIN))
    torch.testing.assert_close(centered - plain, lam * (chosen + rejected).square().mean())


# --------------------------------------------------------------------------- pairwise gradients


@pytest.mark.parametrize("name", PAIRWISE)
@pytest.mark.parametrize("center", [0.0, 0.3])
def test_pairwise_gradcheck(name, center):
    loss = get_loss(name, center_coef=center)
    chosen = t64(CHOSEN).requires_grad_()
    rejected = t64(REJECTED).requires_grad_()
    labels = labels_for(name, prob=[0.9, 0.25, 0.5, 0.1])
    assert torch.autograd.gradcheck(lambda c, r: loss(c, r, **labels), (chosen, rejected))


def test_bt_analytic_gradient():
    chosen = t64(CHOSEN).requires_grad_()
    rejected = t64(REJECTED).requires_grad_()
    get_loss("bt")(chosen, rejected).backward()
    delta = t64(CHOSEN) - t64(REJECTED)
    expected = -1.0 / (1.0 + torch.exp(delta)) / len(CHOSEN)  # −σ(−Δ)/B
    torch.testing.assert_close(chosen.grad, expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(rejected.grad, -expected, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- pairwise numerics


@pytest.mark.parametrize("name", PAIRWISE)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_huge_reward_differences_stay_finite(name, dtype):
    chosen = torch.tensor([1e4, -1e4, 5e3], dtype=dtype, requires_grad=True)
    rejected = torch.tensor([-1e4, 1e4, 0.0], dtype=dtype, requires_grad=True)
    labels = {k: v.to(dtype)[:3] for k, v in labels_for(name, prob=[0.5, 0.5, 1.0]).items()}
    loss = get_loss(name, reduction="none", center_coef=1e-3)
    values = loss(chosen, rejected, **labels)
    assert torch.isfinite(values).all(), values
    values.sum().backward()
    assert torch.isfinite(chosen.grad).all() and torch.isfinite(rejected.grad).all()
    if name == "bt":  # −log σ(−2e4) = 2e4 exactly in floating point; −log σ(2e4) = 0.
        plain = get_loss("bt", reduction="none")(chosen.detach(), rejected.detach())
        assert plain[1].item() == pytest.approx(2e4) and plain[0].item() == pytest.approx(0.0, abs=1e-30)


@pytest.mark.parametrize("name", PAIRWISE)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_rewards_are_computed_in_fp32(name, dtype):
    chosen = torch.tensor([0.1, 2.0, -3.0, 0.002, 7.5]).to(dtype).requires_grad_()
    rejected = torch.tensor([0.1001, -1.0, -2.5, 0.001, 7.0]).to(dtype)
    labels = {
        k: torch.cat([v, v[:1]]).float() for k, v in labels_for(name, prob=[0.9, 0.2, 0.5, 0.7]).items()
    }
    loss = get_loss(name, center_coef=0.01)
    got = loss(chosen, rejected, **labels)
    assert got.dtype == torch.float32
    expected = loss(chosen.detach().float(), rejected.float(), **labels)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    got.backward()
    assert chosen.grad.dtype == dtype and torch.isfinite(chosen.grad.float()).all()


# --------------------------------------------------------------------------- pairwise label errors


@pytest.mark.parametrize("name", ["margin_bt", "scaled_bt"])
def test_margin_required(name):
    with pytest.raises(ValueError, match="needs margin"):
        get_loss(name)(t64(CHOSEN), t64(REJECTED))


@pytest.mark.parametrize("name", ["bt", "soft_bt"])
def test_margin_forbidden(name):
    labels = {"target_prob": t64(PROB)} if name == "soft_bt" else {}
    with pytest.raises(ValueError, match="cannot use margin"):
        get_loss(name)(t64(CHOSEN), t64(REJECTED), margin=t64(MARGIN), **labels)


@pytest.mark.parametrize("name", ["bt", "margin_bt", "scaled_bt"])
def test_target_prob_forbidden(name):
    with pytest.raises(ValueError, match="cannot use target_prob"):
        get_loss(name)(t64(CHOSEN), t64(REJECTED), target_prob=t64(PROB), **labels_for(name))


def test_target_prob_required_and_in_unit_interval():
    loss = get_loss("soft_bt")
    with pytest.raises(ValueError, match="needs target_prob"):
        loss(t64(CHOSEN), t64(REJECTED))
    for bad in ([1.5, 0.5, 0.5, 0.5], [0.5, -0.1, 0.5, 0.5], [0.5, 0.5, NAN, 0.5]):
        with pytest.raises(ValueError, match=r"in \[0, 1\]"):
            loss(t64(CHOSEN), t64(REJECTED), target_prob=t64(bad))


@pytest.mark.parametrize("name", ["margin_bt", "scaled_bt"])
@pytest.mark.parametrize("bad", [-1.0, NAN, math.inf])
def test_invalid_margin_values_rejected(name, bad):
    with pytest.raises(ValueError, match=">= 0"):
        get_loss(name)(t64(CHOSEN), t64(REJECTED), margin=t64([1.0, bad, 1.0, 1.0]))


def test_pairwise_shape_errors():
    loss = get_loss("margin_bt")
    with pytest.raises(ValueError, match="shape"):
        loss(torch.zeros(4, 2), torch.zeros(4, 2), margin=1.0)  # two heads: caller must pick one
    with pytest.raises(ValueError, match="differ in length"):
        loss(torch.zeros(4), torch.zeros(3), margin=1.0)
    with pytest.raises(ValueError, match="one value per pair"):
        loss(torch.zeros(4), torch.zeros(4), margin=torch.ones(3))
    with pytest.raises(ValueError, match="empty"):
        loss(torch.zeros(0), torch.zeros(0), margin=1.0)


# --------------------------------------------------------------------------- gradient accumulation


def test_sum_over_global_count_equals_full_batch_mean():
    """Uneven micro-batches: Σ sums / total units == mean of the whole batch (a mean of means is not)."""
    chosen, rejected, margin = t64(CHOSEN), t64(REJECTED), t64(MARGIN)
    loss_sum = get_loss("margin_bt", reduction="sum")
    splits = [slice(0, 1), slice(1, 4)]
    count = sum(loss_sum.num_units(chosen[s]) for s in splits)
    accumulated = sum(loss_sum(chosen[s], rejected[s], margin=margin[s]) for s in splits) / count
    full = get_loss("margin_bt")(chosen, rejected, margin=margin)
    torch.testing.assert_close(accumulated, full)
    mean_of_means = sum(get_loss("margin_bt")(chosen[s], rejected[s], margin=margin[s]) for s in splits) / 2
    assert abs(mean_of_means.item() - full.item()) > 1e-3


# --------------------------------------------------------------------------- pointwise mse

PRED = [[1.0, 2.0, 3.0], [0.5, -1.0, 4.0], [2.0, 2.0, 2.0], [0.0, 1.0, -2.0]]
TARGET = [[2.0, NAN, 1.0], [0.5, 1.0, MISSING_TARGET], [NAN, MISSING_TARGET, NAN], [1.0, 1.0, 1.0]]


def reference_mse(pred, target, weights=None, extra_mask=None) -> list[float | None]:
    """Per example: Σ w·(p − t)² / Σ w over valid entries; None for an example without valid targets."""
    out = []
    for i, (prow, trow) in enumerate(zip(pred, target)):
        num = den = 0.0
        for a, (p, t) in enumerate(zip(prow, trow)):
            if math.isnan(t) or t == -100 or (extra_mask is not None and not extra_mask[i][a]):
                continue
            w = 1.0 if weights is None else weights[a]
            num += w * (p - t) ** 2
            den += w
        out.append(num / den if den > 0 else None)
    return out


def test_mse_hand_values_with_nan_and_minus_100():
    # Row 0: ((1−2)² + (3−1)²)/2 = 2.5; row 1: (0 + 4)/2 = 2; row 2: no target; row 3: (1 + 0 + 9)/3 = 10/3.
    assert reference_mse(PRED, TARGET) == [2.5, 2.0, None, pytest.approx(10 / 3)]
    pred, target = t64(PRED), t64(TARGET)
    per = get_loss("mse", reduction="none")(pred, target)
    torch.testing.assert_close(per, t64([2.5, 2.0, 0.0, 10 / 3]))
    # The all-missing row is left out of the mean's denominator and of num_units.
    torch.testing.assert_close(get_loss("mse")(pred, target), t64((2.5 + 2.0 + 10 / 3) / 3))
    torch.testing.assert_close(get_loss("mse", reduction="sum")(pred, target), t64(2.5 + 2.0 + 10 / 3))
    assert get_loss("mse").num_units(target) == 3


def test_mse_explicit_mask_is_anded():
    mask = [[True, True, False], [True, True, True], [True, True, True], [False, True, True]]
    ref = reference_mse(PRED, TARGET, extra_mask=mask)
    assert ref[0] == 1.0 and ref[3] == pytest.approx(4.5)
    expected = t64([v or 0.0 for v in ref])
    loss = get_loss("mse", reduction="none")
    torch.testing.assert_close(loss(t64(PRED), t64(TARGET), mask=torch.tensor(mask)), expected)
    torch.testing.assert_close(loss(t64(PRED), t64(TARGET), mask=torch.tensor(mask).float()), expected)
    with pytest.raises(ValueError, match="0 and 1"):
        loss(t64(PRED), t64(TARGET), mask=torch.full((4, 3), 0.5))
    with pytest.raises(ValueError, match="mask shape"):
        loss(t64(PRED), t64(TARGET), mask=torch.ones(4, 2, dtype=torch.bool))


def test_mse_attribute_weights():
    weights = [2.0, 0.0, 1.0]
    ref = reference_mse(PRED, TARGET, weights=weights)
    # Row 0: (2·1 + 1·4)/3 = 2; row 1: only attribute 0 (weight 2) valid with error 0, attribute 1 has
    # weight 0; row 3: (2·1 + 0 + 1·9)/3 = 11/3.
    assert ref == [2.0, 0.0, None, pytest.approx(11 / 3)]
    loss = get_loss("mse", attribute_weights=weights)
    torch.testing.assert_close(loss(t64(PRED), t64(TARGET)), t64((2.0 + 0.0 + 11 / 3) / 3))
    with pytest.raises(ValueError, match="3 attributes"):
        get_loss("mse", attribute_weights=[1.0, 1.0])(t64(PRED), t64(TARGET))
    for bad in ([], [-1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [NAN, 1.0, 1.0]):
        with pytest.raises(ValueError, match="attribute_weights"):
            get_loss("mse", attribute_weights=bad)


def test_mse_rows_whose_only_targets_have_zero_weight_are_excluded():
    loss = get_loss("mse", attribute_weights=[1.0, 0.0])
    pred, target = t64([[1.0, 5.0], [1.0, 5.0]]), t64([[0.0, 0.0], [NAN, 0.0]])
    torch.testing.assert_close(loss(pred, target), t64(1.0))
    assert loss.num_units(target) == 1


def test_mse_all_missing_batch_is_zero_with_zero_grad():
    pred = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    target = t64([[NAN, MISSING_TARGET, NAN], [MISSING_TARGET] * 3])
    for reduction in ("mean", "sum"):
        value = get_loss("mse", reduction=reduction)(pred, target)
        assert value.item() == 0.0
        (grad,) = torch.autograd.grad(value, pred)
        assert torch.equal(grad, torch.zeros_like(grad))


def test_mse_masked_entries_get_exactly_zero_grad_and_no_nan():
    pred = t64(PRED)
    pred[0, 1] = NAN  # a NaN prediction at a masked entry must not leak either
    pred.requires_grad_()
    get_loss("mse")(pred, t64(TARGET)).backward()
    grad = pred.grad
    assert torch.isfinite(grad).all()
    masked = torch.isnan(t64(TARGET)) | (t64(TARGET) == MISSING_TARGET)
    assert torch.equal(grad[masked], torch.zeros(int(masked.sum()), dtype=torch.float64))
    # Valid entries: d/dp of mean over examples of mean over attributes = 2(p − t)/(n_attr · n_examples).
    assert grad[0, 0].item() == pytest.approx(2 * (1.0 - 2.0) / 2 / 3)
    assert grad[3, 2].item() == pytest.approx(2 * (-2.0 - 1.0) / 3 / 3)


def test_mse_gradcheck():
    loss = get_loss("mse", attribute_weights=[1.0, 0.5, 2.0])
    pred = t64(PRED).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: loss(p, t64(TARGET)), (pred,))


def test_mse_accumulation_with_uneven_valid_rows():
    pred, target = t64(PRED), t64(TARGET)
    loss_sum = get_loss("mse", reduction="sum")
    splits = [slice(0, 3), slice(3, 4)]
    count = sum(loss_sum.num_units(target[s]) for s in splits)
    accumulated = sum(loss_sum(pred[s], target[s]) for s in splits) / count
    torch.testing.assert_close(accumulated, get_loss("mse")(pred, target))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mse_half_precision_returns_fp32(dtype):
    pred = torch.tensor([[0.3, 1.7], [2.2, -0.4]]).to(dtype)
    target = torch.tensor([[0.25, NAN], [2.0, -100.0]]).to(dtype)
    got = get_loss("mse")(pred, target)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, get_loss("mse")(pred.float(), target.float()), rtol=1e-6, atol=1e-7)


def test_mse_shape_and_value_errors():
    loss = get_loss("mse")
    with pytest.raises(ValueError, match="differs from targets shape"):
        loss(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="inf"):
        loss(torch.zeros(1, 2), torch.tensor([[math.inf, 1.0]]))
    # (B,) reads as one attribute per example.
    torch.testing.assert_close(loss(t64([1.0, 3.0]), t64([0.0, NAN])), t64(1.0))
