"""Finite-difference gradient checks (float64) of the dynamic convolutions.

Layers (CondConv2d, DyConv2d, CoConv2d) are checked w.r.t. the input and every
parameter (tests/dynamic/dyn_helpers.layer_gradcheck), for groups 1 and depthwise,
stride 1 and 2, every option, and input sizes 1x1, 2x2 and odd sizes (adaptive
pooling of maps smaller than the 3x3 routing grid). The ops underneath,
F.dynamic_conv2d and F.per_sample_conv2d, are checked directly, including grouped
and depthwise-with-multiplier kernels and the chunked paths.
"""

from __future__ import annotations

import numpy as np
import pytest
from dyn_helpers import (
    count_per_sample_convs,
    layer_gradcheck,
    make_layer,
    one_numba_thread,  # noqa: F401  (a fixture, requested by name)
)
from hypothesis import given, settings
from hypothesis import strategies as st

import minicoconv as mc
import minicoconv.ops.dynamic_conv as dynamic_conv_op
from minicoconv.backend.cpu import per_sample_conv
from minicoconv.nn import functional as F
from minicoconv.testing import GradcheckError, gradcheck

pytestmark = pytest.mark.usefixtures("one_numba_thread")

BATCH = 2  # training-mode BN needs more than one value per channel


def _input(channels: int, size: tuple, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.3, 1.0, (BATCH, channels, *size))


def _check(kind: str, cin: int, cout: int, groups: int, stride: int, size: tuple, seed: int = 0, train=True,
           **options) -> None:
    layer = make_layer(kind, cin, cout, stride=stride, groups=groups, seed=seed, **options).double()
    layer.train(train)
    if not train:  # eval mode: non-trivial running statistics
        for m in layer.modules():
            if isinstance(m, mc.nn.BatchNorm2d):
                rng = np.random.default_rng(seed + 1)
                m.running_mean.data = rng.normal(0, 0.5, m.num_features)
                m.running_var.data = rng.uniform(0.5, 2.0, m.num_features)
    layer_gradcheck(layer, _input(cin, size, seed))


# ---- CondConv and DY-CNN ---------------------------------------------------------------
# (cin, cout, groups, stride, size): groups 1, depthwise, depthwise x2 multiplier, grouped
GEOMETRIES = [
    (2, 3, 1, 1, (5, 5)),
    (2, 3, 1, 2, (1, 1)),
    (3, 3, 3, 1, (2, 2)),
    (3, 3, 3, 2, (5, 3)),
    (2, 4, 2, 1, (3, 3)),
    (4, 2, 2, 2, (4, 5)),
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"c{g[0]}-{g[1]}_g{g[2]}_s{g[3]}_{g[4][0]}x{g[4][1]}")
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_condconv_gradcheck(geometry, bias):
    cin, cout, groups, stride, size = geometry
    _check("condconv", cin, cout, groups, stride, size, bias=bias)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"c{g[0]}-{g[1]}_g{g[2]}_s{g[3]}_{g[4][0]}x{g[4][1]}")
@pytest.mark.parametrize("temperature", [1.0, 0.7, 4.0])
def test_dycnn_gradcheck(geometry, temperature):
    cin, cout, groups, stride, size = geometry
    _check("dycnn", cin, cout, groups, stride, size, bias=temperature == 4.0, temperature=temperature)


# ---- CoConv ------------------------------------------------------------------------------
# Every option value appears with groups 1 and depthwise, stride 1 and 2, and
# 1x1, 2x2 and odd sizes; the hypothesis test below samples the rest of the product.
COCONV_CASES = [
    # (cin, cout, groups, stride, size, options)
    (2, 4, 1, 1, (5, 5), dict()),
    (2, 4, 1, 2, (1, 1), dict(activation="softmax")),
    (2, 2, 2, 1, (2, 2), dict(attention="input")),
    (2, 2, 2, 2, (3, 3), dict(multiscale=False, bias=True)),
    (2, 4, 2, 1, (5, 3), dict(expert_bn=False, activation="softmax")),
    (2, 3, 1, 2, (2, 2), dict(attention="input", multiscale=False, expert_bn=False, bias=True)),
    (3, 3, 3, 1, (1, 1), dict(activation="softmax", attention="input", bias=True)),
    (2, 2, 2, 2, (4, 4), dict(multiscale=False, activation="softmax", expert_bn=False)),
    (4, 2, 2, 1, (3, 4), dict(attention="input", bias=True)),
    (4, 4, 2, 1, (2, 3), dict(bias=True)),
]


def _case_id(case) -> str:
    cin, cout, groups, stride, size, options = case
    opts = "-".join(f"{k}={v}" for k, v in options.items()) or "default"
    return f"c{cin}-{cout}_g{groups}_s{stride}_{size[0]}x{size[1]}_{opts}"


@pytest.mark.parametrize("case", COCONV_CASES, ids=_case_id)
def test_coconv_gradcheck_train(case):
    cin, cout, groups, stride, size, options = case
    _check("coconv", cin, cout, groups, stride, size, **options)


@pytest.mark.parametrize("case", COCONV_CASES[:4], ids=_case_id)
def test_coconv_gradcheck_eval(case):
    """Eval mode: the expert BNs are affine maps with the running statistics."""
    cin, cout, groups, stride, size, options = case
    _check("coconv", cin, cout, groups, stride, size, train=False, **options)


@settings(max_examples=6, deadline=None)
@given(activation=st.sampled_from(["sigmoid", "softmax"]), attention=st.sampled_from(["output", "input"]),
       multiscale=st.booleans(), expert_bn=st.booleans(), bias=st.booleans(), depthwise=st.booleans(),
       stride=st.sampled_from([1, 2]), h=st.integers(1, 5), w=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_coconv_gradcheck_any_options(activation, attention, multiscale, expert_bn, bias, depthwise, stride, h, w,
                                      seed):
    cin, cout, groups = (2, 2, 2) if depthwise else (2, 3, 1)
    options = dict(activation=activation, attention=attention, multiscale=multiscale, expert_bn=expert_bn, bias=bias)
    _check("coconv", cin, cout, groups, stride, (h, w), seed=seed, **options)


# ---- the ops: F.dynamic_conv2d and F.per_sample_conv2d ------------------------------------
# (cin, cout, groups, kernel, stride, padding, dilation, size)
OP_GEOMETRIES = [
    (3, 4, 1, (3, 3), 1, 1, 1, (5, 5)),
    (3, 2, 1, (3, 3), 2, 0, 1, (5, 6)),
    (4, 6, 2, (3, 3), 1, 1, 1, (4, 4)),      # grouped, 1 < g < C
    (6, 3, 3, (1, 3), 2, 1, 1, (3, 5)),      # grouped, non-square kernel
    (3, 3, 3, (3, 3), 1, 1, 1, (4, 4)),      # depthwise
    (2, 6, 2, (3, 3), 2, 1, 1, (5, 5)),      # depthwise, channel multiplier 3
    (3, 3, 1, (3, 3), 1, 2, 2, (3, 4)),      # dilation
    (1, 2, 1, (3, 3), 1, 1, 1, (1, 1)),      # single channel, 1x1 map
]


def _op_id(g) -> str:
    return f"c{g[0]}-{g[1]}_g{g[2]}_k{g[3][0]}x{g[3][1]}_s{g[4]}_p{g[5]}_d{g[6]}_{g[7][0]}x{g[7][1]}"


def _op_data(geometry, experts: int = 3, batch: int = 3, seed: int = 0):
    cin, cout, groups, kernel, _, _, _, size = geometry
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, cin, *size))
    bank = rng.normal(size=(experts, cout, cin // groups, *kernel))
    r = rng.normal(size=(batch, experts))
    return x, bank, r


def conv_reference(x, w, stride, padding, dilation, groups):
    """Direct loops in NumPy: the oracle for one sample's convolution, x (C, H, W), w (C', C/g, kh, kw)."""
    cout, cin_g, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    oh = (xp.shape[1] - dilation * (kh - 1) - 1) // stride + 1
    ow = (xp.shape[2] - dilation * (kw - 1) - 1) // stride + 1
    y = np.zeros((cout, oh, ow))
    for co in range(cout):
        grp = co // (cout // groups)
        for ci in range(cin_g):
            for i in range(kh):
                for j in range(kw):
                    rows = slice(i * dilation, i * dilation + stride * (oh - 1) + 1, stride)
                    cols = slice(j * dilation, j * dilation + stride * (ow - 1) + 1, stride)
                    y[co] += w[co, ci, i, j] * xp[grp * cin_g + ci, rows, cols]
    return y


@pytest.mark.parametrize("geometry", OP_GEOMETRIES, ids=_op_id)
def test_per_sample_conv2d_forward_matches_loops(geometry):
    *_, groups, _, stride, padding, dilation, _ = geometry
    x, bank, _ = _op_data(geometry)
    kernels = bank  # experts reused as 3 per-sample kernels
    y = F.per_sample_conv2d(mc.Tensor(x), mc.Tensor(kernels), stride, padding, groups, dilation).numpy()
    expected = np.stack([conv_reference(x[b], kernels[b], stride, padding, dilation, groups) for b in range(3)])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("geometry", OP_GEOMETRIES, ids=_op_id)
def test_per_sample_conv2d_gradcheck(geometry):
    *_, groups, _, stride, padding, dilation, _ = geometry
    x, kernels, _ = _op_data(geometry)

    def fn(x, k):
        return F.per_sample_conv2d(x, k, stride, padding, groups, dilation)

    gradcheck(fn, mc.Tensor(x, requires_grad=True), mc.Tensor(kernels, requires_grad=True),
              name=f"per_sample_conv2d {_op_id(geometry)}")


@pytest.mark.parametrize("geometry", OP_GEOMETRIES, ids=_op_id)
def test_dynamic_conv2d_forward_matches_aggregated_kernels(geometry):
    *_, groups, _, stride, padding, dilation, _ = geometry
    x, bank, r = _op_data(geometry)
    y = F.dynamic_conv2d(mc.Tensor(x), mc.Tensor(bank), mc.Tensor(r), stride, padding, groups, dilation).numpy()
    kernels = np.einsum("bi,i...->b...", r, bank)
    expected = np.stack([conv_reference(x[b], kernels[b], stride, padding, dilation, groups) for b in range(3)])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("geometry", OP_GEOMETRIES, ids=_op_id)
def test_dynamic_conv2d_gradcheck(geometry):
    *_, groups, _, stride, padding, dilation, _ = geometry
    x, bank, r = _op_data(geometry)

    def fn(x, bank, r):
        return F.dynamic_conv2d(x, bank, r, stride, padding, groups, dilation)

    gradcheck(fn, *(mc.Tensor(a, requires_grad=True) for a in (x, bank, r)), name=f"dynamic_conv2d {_op_id(geometry)}")


@pytest.mark.parametrize("geometry", [OP_GEOMETRIES[0], OP_GEOMETRIES[3], OP_GEOMETRIES[5]], ids=_op_id)
def test_dynamic_conv2d_spatial_factor(geometry, monkeypatch):
    """The optional per-sample spatial factor s (N, kh*kw) (ODConv): y_b = conv(x_b, s_b * sum_i r_bi W_i)."""
    *_, groups, kernel, stride, padding, dilation, _ = geometry
    x, bank, r = _op_data(geometry)
    spatial = np.random.default_rng(5).uniform(0.2, 1.5, (3, kernel[0] * kernel[1]))

    def fn(x, bank, r, s):
        return F.dynamic_conv2d(x, bank, r, stride, padding, groups, dilation, spatial=s)

    y = fn(*(mc.Tensor(a) for a in (x, bank, r, spatial))).numpy()
    kernels = np.einsum("bi,i...->b...", r, bank) * spatial.reshape(3, 1, 1, *kernel)
    expected = np.stack([conv_reference(x[b], kernels[b], stride, padding, dilation, groups) for b in range(3)])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    gradcheck(fn, *(mc.Tensor(a, requires_grad=True) for a in (x, bank, r, spatial)),
              name=f"dynamic_conv2d spatial {_op_id(geometry)}")
    whole = _forward_backward(fn, x, bank, r, spatial)
    monkeypatch.setattr(dynamic_conv_op, "KERNEL_BUDGET_BYTES", 1)
    for name, a, b in zip(["y", "dx", "dbank", "dr", "ds"], whole, _forward_backward(fn, x, bank, r, spatial)):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-13, err_msg=f"chunked {name}")


def _forward_backward(fn, *arrays, seed=1):
    """Output and gradients of <fn(*arrays), R> for a fixed random cotangent R."""
    tensors = [mc.Tensor(a, requires_grad=True) for a in arrays]
    y = fn(*tensors)
    y.backward(mc.Tensor(np.random.default_rng(seed).normal(size=y.shape)))
    return [y.numpy()] + [t.grad.numpy() for t in tensors]


@pytest.mark.parametrize("geometry", [OP_GEOMETRIES[0], OP_GEOMETRIES[2], OP_GEOMETRIES[5]], ids=_op_id)
def test_dynamic_conv2d_chunked_equals_one_chunk(geometry, monkeypatch):
    """A tiny KERNEL_BUDGET_BYTES makes every sample its own chunk: same output, same gradients."""
    *_, groups, _, stride, padding, dilation, _ = geometry
    x, bank, r = _op_data(geometry, batch=5)

    def fn(x, bank, r):
        return F.dynamic_conv2d(x, bank, r, stride, padding, groups, dilation)

    whole = _forward_backward(fn, x, bank, r)
    calls = count_per_sample_convs(monkeypatch)
    monkeypatch.setattr(dynamic_conv_op, "KERNEL_BUDGET_BYTES", 1)
    chunked = _forward_backward(fn, x, bank, r)
    assert calls == [1] * 5, f"expected 5 chunks of 1 sample, got chunk sizes {calls}"
    for name, a, b in zip(["y", "dx", "dbank", "dr"], whole, chunked):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-13, err_msg=name)
    gradcheck(fn, *(mc.Tensor(a, requires_grad=True) for a in (x, bank, r)), name="dynamic_conv2d chunked")


def test_dynamic_conv2d_chunks_of_two(monkeypatch):
    """Budget for two samples' kernels: chunks 2, 2, 1 (a ragged last chunk)."""
    geometry = OP_GEOMETRIES[2]
    *_, groups, _, stride, padding, dilation, _ = geometry
    x, bank, r = _op_data(geometry, batch=5)

    def fn(x, bank, r):
        return F.dynamic_conv2d(x, bank, r, stride, padding, groups, dilation)

    whole = _forward_backward(fn, x, bank, r)
    calls = count_per_sample_convs(monkeypatch)
    monkeypatch.setattr(dynamic_conv_op, "KERNEL_BUDGET_BYTES", 2 * bank[0].size * 8)
    chunked = _forward_backward(fn, x, bank, r)
    assert calls == [2, 2, 1]
    for name, a, b in zip(["y", "dx", "dbank", "dr"], whole, chunked):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-13, err_msg=name)


@pytest.mark.parametrize("geometry", [OP_GEOMETRIES[0], OP_GEOMETRIES[3]], ids=_op_id)
def test_per_sample_conv2d_sample_blocks(geometry, monkeypatch):
    """A tiny BLOCK_BYTES makes the per-sample conv im2col one sample at a time: same results."""
    *_, groups, _, stride, padding, dilation, _ = geometry
    x, kernels, _ = _op_data(geometry, experts=4, batch=4)

    def fn(x, k):
        return F.per_sample_conv2d(x, k, stride, padding, groups, dilation)

    whole = _forward_backward(fn, x, kernels)
    monkeypatch.setattr(per_sample_conv, "BLOCK_BYTES", 1)
    blocked = _forward_backward(fn, x, kernels)
    for name, a, b in zip(["y", "dx", "dk"], whole, blocked):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-13, err_msg=name)


def test_dynamic_conv2d_float32_matches_float64():
    geometry = OP_GEOMETRIES[2]
    *_, groups, _, stride, padding, dilation, _ = geometry
    x, bank, r = _op_data(geometry)
    y64 = F.dynamic_conv2d(mc.Tensor(x), mc.Tensor(bank), mc.Tensor(r), stride, padding, groups, dilation).numpy()
    y32 = F.dynamic_conv2d(*(mc.Tensor(a.astype(np.float32)) for a in (x, bank, r)), stride, padding, groups,
                           dilation)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32.numpy(), y64, rtol=1e-4, atol=1e-5 * np.abs(y64).max())


# ---- the harness itself -------------------------------------------------------------------
@pytest.mark.parametrize("wrong", ["dbank", "dr"])
def test_layer_gradcheck_catches_a_wrong_parameter_gradient(wrong, monkeypatch):
    """layer_gradcheck really checks parameters: a 1% error in d/dbank or d/dr must be caught."""
    original = dynamic_conv_op.DynamicConv2d.backward

    def broken(ctx, g):
        dx, dbank, dr, *rest = original(ctx, g)
        if wrong == "dbank":
            dbank = dbank * 1.01
        else:
            dr = dr * 1.01
        return (dx, dbank, dr, *rest)

    monkeypatch.setattr(dynamic_conv_op.DynamicConv2d, "backward", staticmethod(broken))
    layer = make_layer("condconv", 2, 3).double()
    with pytest.raises(GradcheckError, match="CondConv2d"):
        layer_gradcheck(layer, _input(2, (3, 3), 0))
