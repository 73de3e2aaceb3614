"""The 12 models against docs/models-and-recipe.md: parameter counts (its table), the reference
initialisation, and the MAC totals of `minicoconv.summary`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dyn_helpers import (
    one_numba_thread,  # noqa: F401  (a fixture, requested by name)
)

import minicoconv as mc
from minicoconv import models, nn, summary
from minicoconv.nn import init

pytestmark = pytest.mark.usefixtures("one_numba_thread")


# ---- models: parameter counts, initialisation, MACs ---------------------------------------
PARAMS_M = {  # docs/models-and-recipe.md, the parameter table
    "alexnet": {"static": 23.64, "coconv": 30.52, "condconv": 30.40, "dycnn": 30.41},
    "resnet18": {"static": 11.22, "coconv": 44.71, "condconv": 44.19, "dycnn": 44.26},
    "mobilenetv2": {"static": 2.41, "coconv": 4.39, "condconv": 2.63, "dycnn": 2.90},
}


@pytest.fixture
def no_init(monkeypatch):
    """Skip drawing random initial values: counts and MACs depend on shapes only (and this is 10x faster)."""
    for name in ("kaiming_uniform_", "kaiming_normal_", "uniform_", "normal_"):
        monkeypatch.setattr(init, name, lambda t, *args, **kwargs: t)


@pytest.mark.parametrize("conv", ["static", "condconv", "dycnn", "coconv"])
@pytest.mark.parametrize("name", ["alexnet", "resnet18", "mobilenetv2"])
def test_parameter_counts_match_design(name, conv, no_init):
    model = models.build(name, conv=conv, experts=4, num_classes=100)
    total = sum(p.numel() for p in model.parameters())
    assert round(total / 1e6, 2) == pytest.approx(PARAMS_M[name][conv], abs=1e-9), f"{name}/{conv}: {total:,}"
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d)), "static convs are bias-free"


def _std_close(values: np.ndarray, expected: float, what: str) -> None:
    """Sample std within 5 standard errors of `expected` (relative s.e. of a std ~ 1/sqrt(2n))."""
    n = values.size
    tol = 5 / math.sqrt(2 * n) + 1e-3
    assert abs(values.std() / expected - 1) < tol, f"{what}: std {values.std():.4g}, expected {expected:.4g}"
    assert abs(values.mean()) < 5 * expected / math.sqrt(n) + 1e-12, f"{what}: mean {values.mean():.3g}"


@pytest.mark.parametrize("conv", ["static", "condconv", "dycnn", "coconv"])
def test_reference_init(conv):
    mc.manual_seed(0)
    model = models.build("mobilenetv2", conv=conv) if conv != "coconv" else models.build("resnet18", conv=conv)
    seen = set()
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.weight.shape[0] * m.weight.shape[2] * m.weight.shape[3]
            _std_close(m.weight.numpy(), math.sqrt(2 / fan_out), f"{name} (Conv2d)")
            assert m.bias is None or not m.bias.numpy().any()
            seen.add("conv")
        elif isinstance(m, nn.CoConv2d):
            n, cout, _, kh, kw = m.weight.shape
            for i in range(n):
                _std_close(m.weight.numpy()[i], math.sqrt(2 / (cout * kh * kw)), f"{name} expert {i}")
            seen.add("coconv")
        elif isinstance(m, nn.CondConv2d | nn.DyConv2d):
            w = m.weight.numpy()
            bound = 1 / math.sqrt(w[0, 0].size)  # fan_in = C/g * k * k
            assert np.abs(w).max() <= bound, f"{name}: expert bank outside U(-1/sqrt(fan_in), 1/sqrt(fan_in))"
            assert np.abs(w).max() > 0.9 * bound
            _std_close(w, bound / math.sqrt(3), f"{name} expert bank (uniform)")
            seen.add("bank")
        elif isinstance(m, nn.Linear):
            _std_close(m.weight.numpy(), 0.001, f"{name} (Linear)")
            assert not m.bias.numpy().any(), f"{name}: Linear bias should be zero"
            seen.add("linear")
        elif isinstance(m, nn.BatchNorm2d):
            assert np.all(m.weight.numpy() == 1) and not m.bias.numpy().any(), f"{name}: BN should be 1 / 0"
            assert not m.running_mean.numpy().any() and np.all(m.running_var.numpy() == 1)
            seen.add("bn")
    expected = {"conv", "linear", "bn"} | ({"coconv"} if conv == "coconv" else set()) | (
        {"bank"} if conv in ("condconv", "dycnn") else set())
    assert seen == expected


def test_summary_macs(no_init):
    totals = {}
    for conv in ("static", "condconv", "dycnn", "coconv"):
        model = models.build("resnet18", conv=conv)
        totals[conv] = summary.summary(model, print_fn=lambda *args: None)
        assert totals[conv]["params"] == sum(p.numel() for p in model.parameters())
        assert model.training, "summary restores the model's mode"
    static = totals["static"]
    assert static["macs_fused"] == static["macs_train"]
    assert 550e6 < static["macs_train"] < 560e6  # ResNet18-CIFAR: 0.56 GMACs
    for conv in ("condconv", "dycnn"):  # one aggregated kernel in both forms
        assert totals[conv]["macs_fused"] == totals[conv]["macs_train"]
        assert static["macs_train"] < totals[conv]["macs_fused"] < 1.15 * static["macs_train"]
    coconv = totals["coconv"]
    assert static["macs_train"] < coconv["macs_fused"] < 1.15 * static["macs_train"]
    ratio = coconv["macs_train"] / static["macs_train"]
    assert 3.5 < ratio < 4.1, f"CoConv training form should cost about n = 4 static convolutions, got {ratio:.2f}x"


@pytest.mark.parametrize("attention", ["output", "input"])
@pytest.mark.parametrize("groups", [1, 4])
def test_summary_per_layer_macs_of_coconv(groups, attention):
    n, cin, cout, k, size = 4, 8, 8, 3, 6
    layer = nn.CoConv2d(cin, cout, k, padding=1, groups=groups, experts=n, attention=attention)
    rows = {r.name: r for r in summary.count(layer, (cin, size, size))}
    conv = cout * size * size * (cin // groups) * k * k
    assert rows[""].macs_train == n * conv + n * cout * size * size
    assert rows[""].macs_fused == conv + n * cout * (cin // groups) * k * k
    s = 16
    width = cout if attention == "output" else cin
    assert rows["routing.reduce"].macs_train == rows["routing.reduce"].macs_fused == 9 * s * 2 * cin
    assert rows["routing.spatial"].macs_train == s * 9
    assert rows["routing.expand"].macs_train == n * width * s
    assert rows[""].params == n * cout * (cin // groups) * k * k
