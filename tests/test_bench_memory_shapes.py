"""The arithmetic behind bench/memory_shapes.py: the line fit and its extrapolation, checked on
points produced by a known line and on real estimator predictions at tiny shapes (no training
here; the measurement itself is a benchmark, not a test)."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


ms = _load("memory_shapes")


def test_fit_recovers_a_known_line_and_extrapolates():
    fixed, per_layer = 3.25e9, 0.6e9
    layers = [1, 2, 4]
    fit = ms.fit_line(layers, [fixed + per_layer * n for n in layers])
    assert fit["fixed"] == pytest.approx(fixed)
    assert fit["per_layer"] == pytest.approx(per_layer)
    assert fit["max_rel_residual"] == pytest.approx(0, abs=1e-12)
    assert ms.extrapolate(fit, 32) == pytest.approx(fixed + 32 * per_layer)


def test_fit_reports_how_far_a_bent_point_is_off_the_line():
    # least squares through (1, 10), (2, 20), (4, 50): slope 40/3.5... computed by hand
    fit = ms.fit_line([1, 2, 4], [10.0, 20.0, 50.0])
    mx, my = 7 / 3, 80 / 3
    slope = ((1 - mx) * (10 - my) + (2 - mx) * (20 - my) + (4 - mx) * (50 - my)) / (
        (1 - mx) ** 2 + (2 - mx) ** 2 + (4 - mx) ** 2)
    assert fit["per_layer"] == pytest.approx(slope)
    assert fit["fixed"] == pytest.approx(my - slope * mx)
    resid = max(abs(fit["fixed"] + slope * x - y) / y for x, y in [(1, 10), (2, 20), (4, 50)])
    assert fit["max_rel_residual"] == pytest.approx(resid) and resid > 0.05


def test_fit_needs_two_depths():
    with pytest.raises(ValueError, match="two distinct layer counts"):
        ms.fit_line([2, 2], [1.0, 1.1])


def test_relative_error_sign():
    assert ms.relative_error(110, 100) == pytest.approx(0.10)  # over-prediction is positive
    assert ms.relative_error(85, 100) == pytest.approx(-0.15)


def test_estimator_is_linear_in_depth_so_the_fit_reproduces_it_at_full_depth():
    """The estimator's own predictions at 1/2/4 layers of a tiny shape lie on one line whose
    extrapolation equals its prediction at full depth: the bench compares like with like."""
    for mode, gc in (("qlora", True), ("lora", False)):
        est = {n: ms.estimator("tiny", n, mode, gc, 128, 4).peak_allocated for n in (1, 2, 4, 8)}
        fit = ms.fit_line([1, 2, 4], [est[1], est[2], est[4]])
        assert fit["max_rel_residual"] < 1e-6
        assert ms.extrapolate(fit, 8) == pytest.approx(est[8], rel=1e-6)


def test_analysis_and_table_from_points():
    """analyse() groups points, fits each group and compares with the estimator; measured bytes
    are made up here as the estimate times 1.1 (the estimator then under-predicts by 1/11)."""
    points = {}
    for n in (1, 2, 4):
        e = ms.estimator("tiny", n, "qlora", True, 128, 4).peak_allocated
        points[ms.point_key("tiny", n, "qlora", True)] = {
            "arch": "tiny", "layers": n, "mode": "qlora", "gradient_checkpointing": True, "peak_bytes": e * 1.1}
    a = ms.analyse(points, 128, 4)
    (g,) = a["groups"]
    assert [r["layers"] for r in g["points"]] == [1, 2, 4]
    assert all(r["error"] == pytest.approx(1 / 1.1 - 1) for r in g["points"])
    assert a["max_abs_error_measured"] == pytest.approx(1 - 1 / 1.1)
    assert g["full_layers"] == ms.TINY["num_hidden_layers"]
    assert g["error_full"] == pytest.approx(1 / 1.1 - 1, abs=1e-6)
    table = ms.markdown(a, 128)
    assert "| tiny | qlora | on |" in table and "-9.1%" in table
