"""Fused inference (`nn.fuse`): exact, eval-only, sharing parameters with the training form.

CoConv's fused form (paper eq. 3) folds each expert's eval-mode BN into its kernel:
    y_b = conv(x_b, sum_i (r_bi * a_i) W_i) + sum_i r_bi * c_i
and must equal the eval-mode training form to float32 rounding. CondConv and DY-CNN
already run one aggregated kernel per sample: their fused form is themselves.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from dyn_helpers import (
    count_per_sample_convs,
    exercise_bn,
    make_layer,
    one_numba_thread,  # noqa: F401  (a fixture, requested by name)
)

import minicoconv as mc
import minicoconv.nn.dynamic.fused as fused_module
from minicoconv import models, nn
from minicoconv.autograd import no_grad

#: small layers: one Numba thread (see dyn_helpers.py); the whole-model tests keep the default
small_shapes = pytest.mark.usefixtures("one_numba_thread")

#: |fused - eval| <= FUSED_RTOL * max|eval|: float32 rounding of a few sums of products
#: (measured worst case over every option below: 4.5e-7)
FUSED_RTOL = 4e-6


def assert_fused_equal(fused: np.ndarray, reference: np.ndarray, rtol: float = FUSED_RTOL, what: str = "") -> None:
    assert fused.shape == reference.shape and fused.dtype == reference.dtype
    scale = float(np.abs(reference).max())
    assert scale > 0, f"{what}: the reference output is all zeros; the comparison would be vacuous"
    err = float(np.abs(fused - reference).max())
    assert err <= rtol * scale, f"{what}: max |fused - eval| = {err:.3g} > {rtol} * max|eval| ({scale:.3g})"


def _x(channels: int, size: tuple, batch: int = 4, seed: int = 1) -> mc.Tensor:
    return mc.Tensor(np.random.default_rng(seed).normal(0.5, 1.5, (batch, channels, *size)).astype(np.float32))


# every CoConv option combination, with groups 1 and depthwise, stride 1 and 2
OPTIONS = list(itertools.product(["sigmoid", "softmax"], ["output", "input"], [True, False], [True, False],
                                 [False, True], [1, "depthwise"], [1, 2]))


def _option_id(o) -> str:
    activation, attention, multiscale, expert_bn, bias, groups, stride = o
    return (f"{activation}-{attention}-{'multi' if multiscale else 'single'}-{'bn' if expert_bn else 'nobn'}-"
            f"{'bias' if bias else 'nobias'}-g{groups}-s{stride}")


def _coconv(option, cin: int = 8, cout: int = 12, experts: int = 4, seed: int = 0):
    activation, attention, multiscale, expert_bn, bias, groups, stride = option
    if groups == "depthwise":
        cout, groups = cin, cin
    return make_layer("coconv", cin, cout, stride=stride, groups=groups, experts=experts, seed=seed,
                      activation=activation, attention=attention, multiscale=multiscale, expert_bn=expert_bn,
                      bias=bias)


@small_shapes
@pytest.mark.parametrize("option", OPTIONS, ids=_option_id)
def test_coconv_fused_equals_eval_form(option):
    layer = _coconv(option)
    for size in [(1, 1), (2, 2), (7, 5)]:
        exercise_bn(layer, (4, 8, *size), seed=sum(size))
        layer.eval()
        x = _x(8, size)
        fused = nn.fuse(layer)
        assert isinstance(fused, nn.dynamic.FusedCoConv2d)
        with no_grad():
            assert_fused_equal(fused(x).numpy(), layer(x).numpy(), what=f"{_option_id(option)} {size}")


@small_shapes
@pytest.mark.parametrize("groups", [1, 2, 4], ids=["g1", "g2", "g4"])
def test_coconv_fused_grouped_with_multiplier(groups):
    """Grouped experts (1 < g < C) and a depthwise channel multiplier (C' = 2C, g = C)."""
    for attention in ("output", "input"):
        layer = make_layer("coconv", 4, 8, groups=groups, experts=3, attention=attention, bias=True)
        exercise_bn(layer, (4, 4, 5, 5))
        layer.eval()
        x = _x(4, (5, 5))
        with no_grad():
            assert_fused_equal(nn.fuse(layer)(x).numpy(), layer(x).numpy(), what=f"g{groups} {attention}")


@small_shapes
@pytest.mark.parametrize("experts", [1, 2, 5])
def test_coconv_fused_any_number_of_experts(experts):
    for attention in ("output", "input"):
        layer = make_layer("coconv", 4, 6, groups=2, experts=experts, attention=attention, bias=True)
        exercise_bn(layer, (4, 4, 5, 5))
        layer.eval()
        x = _x(4, (5, 5))
        with no_grad():
            assert_fused_equal(nn.fuse(layer)(x).numpy(), layer(x).numpy(), what=f"n={experts} {attention}")


@small_shapes
def test_coconv_fused_float64():
    layer = _coconv(OPTIONS[0]).double()
    exercise_bn(layer, (4, 8, 5, 5), dtype=np.float64)
    layer.eval()
    x = mc.Tensor(np.random.default_rng(0).normal(size=(3, 8, 5, 5)))
    with no_grad():
        y, f = layer(x).numpy(), nn.fuse(layer)(x).numpy()
    assert f.dtype == np.float64
    np.testing.assert_allclose(f, y, rtol=1e-12, atol=1e-12 * np.abs(y).max())


@small_shapes
@pytest.mark.parametrize("kind", ["condconv", "dycnn"])
def test_condconv_dycnn_fuse_is_the_layer_itself(kind):
    layer = make_layer(kind, 4, 6, bias=True).eval()
    assert nn.fuse(layer) is layer


def test_fuse_refuses_training_mode():
    layer = make_layer("coconv", 4, 4)
    with pytest.raises(RuntimeError, match="training mode"):
        nn.fuse(layer)
    model = models.build("mobilenetv2", conv="coconv")  # a whole model in training mode too
    with pytest.raises(RuntimeError, match="training mode"):
        nn.fuse(model)


@small_shapes
def test_fused_module_refuses_training_mode():
    layer = make_layer("coconv", 4, 4).eval()
    fused = nn.fuse(layer)
    assert not fused.training
    fused.train()
    with pytest.raises(RuntimeError, match="inference-only"):
        fused(_x(4, (3, 3)))


@small_shapes
def test_fused_shares_parameters():
    layer = make_layer("coconv", 4, 6, bias=True, experts=3)
    exercise_bn(layer, (4, 4, 5, 5))
    layer.eval()
    fused = nn.fuse(layer)
    fused_ids = {id(p) for p in fused.parameters()} | {id(b) for b in fused.buffers()}
    for name, t in list(layer.named_parameters()) + list(layer.named_buffers()):
        assert id(t) in fused_ids, f"{name} is not shared with the fused form"
    x = _x(4, (5, 5))
    with no_grad():
        before = fused(x).numpy()
        # change weights, the expert BN and the routing in the training form only
        layer.weight.data = layer.weight.data * 1.5 + 0.01
        layer.bn.running_var.data = layer.bn.running_var.data * 2.0
        layer.bias.data = layer.bias.data - 0.3
        layer.routing.expand.weight.data = layer.routing.expand.weight.data * -1.0
        after, expected = fused(x).numpy(), layer(x).numpy()
    assert np.abs(after - before).max() > 1e-2 * np.abs(before).max(), "the fused form did not see the change"
    assert_fused_equal(after, expected, what="after changing the training form's parameters")


def test_fused_model_shares_parameters_and_leaves_the_model_alone():
    model = models.build("mobilenetv2", conv="coconv", num_classes=10).eval()
    fused = nn.fuse(model)
    assert {id(p) for p in fused.parameters()} == {id(p) for p in model.parameters()}
    assert {id(b) for b in fused.buffers()} == {id(b) for b in model.buffers()}
    assert not any(isinstance(m, nn.dynamic.FusedCoConv2d) for m in model.modules()), "fuse changed the model"
    assert sum(isinstance(m, nn.dynamic.FusedCoConv2d) for m in fused.modules()) == 17
    assert not any(isinstance(m, nn.CoConv2d) for m in fused.children())


@small_shapes
@pytest.mark.parametrize("attention", ["output", "input"])
@pytest.mark.parametrize("budget_samples, chunks", [(0, [1] * 5), (2, [2, 2, 1])], ids=["one-per-chunk", "two"])
def test_fused_chunks_give_identical_output(attention, budget_samples, chunks, monkeypatch):
    layer = make_layer("coconv", 4, 6, groups=2, experts=3, attention=attention, bias=True)
    exercise_bn(layer, (5, 4, 5, 5))
    layer.eval()
    x = _x(4, (5, 5), batch=5)
    fused = nn.fuse(layer)
    with no_grad():
        whole = fused(x).numpy()
        calls = count_per_sample_convs(monkeypatch)
        per_sample_bytes = int(np.prod(layer.weight.shape[1:])) * 4
        monkeypatch.setattr(fused_module, "MEMORY_BUDGET_BYTES", max(1, budget_samples * per_sample_bytes))
        chunked = fused(x).numpy()
    assert calls == chunks, f"expected chunks of {chunks} samples, got {calls}"
    np.testing.assert_array_equal(chunked, whole)


# ---- whole models ------------------------------------------------------------------------
MODEL_NAMES = ("alexnet", "resnet18", "mobilenetv2")
CONVS = ("static", "condconv", "dycnn", "coconv")


def randomize_bn(model, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine params everywhere (no training forwards needed)."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.data = rng.normal(0.0, 0.1, c).astype(np.float32)
            m.running_var.data = rng.uniform(0.5, 2.0, c).astype(np.float32)
            m.weight.data = rng.uniform(0.5, 1.5, c).astype(np.float32)
            m.bias.data = rng.normal(0.0, 0.1, c).astype(np.float32)


def calibrate_bn(model, seed: int = 2) -> None:
    """BN running statistics = the statistics of one training-mode batch (momentum 1), then restored momentum.

    DGC needs it: its saliencies grow with the input's scale (q from the pooled input), so a layer's
    output is quadratic in its input's. With running statistics that do not match the activations, an
    eval-mode DGC ResNet18 squares its scale layer after layer and overflows to NaN within ~5 blocks.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 1.0
    x = mc.Tensor(np.random.default_rng(seed).normal(size=(4, 3, 32, 32)).astype(np.float32))
    with no_grad():
        model.train()(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_fused_equals_eval(name, conv):
    _check_model_fused(name, conv)


#: ODConv on every backbone; DGC on the dense ones (MobileNetV2's dynamic convolutions are depthwise)
BEYOND = [(name, "odconv") for name in MODEL_NAMES] + [(name, "dgc") for name in ("alexnet", "resnet18")]
#: how many layers each fused form replaces (ResNet18 DGC: two per block + three projection shortcuts;
#: AlexNet DGC: the first conv has 3 input channels, which 4 heads do not divide, and stays static)
N_FUSED = {"coconv": {"alexnet": 5, "resnet18": 16, "mobilenetv2": 17},
           "odconv": {"alexnet": 5, "resnet18": 16, "mobilenetv2": 17}, "dgc": {"alexnet": 4, "resnet18": 19}}


@pytest.mark.parametrize("name,conv", BEYOND, ids=[f"{n}-{c}" for n, c in BEYOND])
def test_beyond_model_fused_equals_eval(name, conv):
    """ODConv's fused form; for DGC, the sparse inference form (only the kept channels convolved)."""
    _check_model_fused(name, conv)


def _check_model_fused(name: str, conv: str) -> None:
    mc.manual_seed(0)
    model = models.build(name, conv=conv)
    randomize_bn(model)
    if conv == "dgc":
        calibrate_bn(model)
    model.eval()
    x = mc.Tensor(np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32))
    fused = nn.fuse(model)
    with no_grad():
        reference, out = model(x).numpy(), fused(x).numpy()
    assert out.shape == (2, 100)
    if conv in N_FUSED:
        kind = {"coconv": nn.dynamic.FusedCoConv2d, "odconv": nn.dynamic.FusedODConv2d,
                "dgc": nn.dynamic.SparseDGConv2d}[conv]
        assert sum(isinstance(m, kind) for m in fused.modules()) == N_FUSED[conv][name]
        assert_fused_equal(out, reference, rtol=1e-5, what=f"{name}/{conv}")  # 4-19 fused layers deep
    else:  # nothing changes: the same modules run
        np.testing.assert_array_equal(out, reference)
