"""What the dynamic convolutions compute, checked against docs/layers.md written out literally.

- routing weights: shapes, ranges, normalisation, temperatures, the DY-CNN annealing schedule,
  and CoConv's routing branch re-implemented step by step in NumPy (PyTorch's adaptive
  pooling bin rule included, for maps smaller than 3x3 too);
- CoConv's training form against a slow reference: n separate convolutions and n separate
  BatchNorms in a Python loop, summed with the routing weights (train and eval mode),
  which pins down the stacked-channel order for grouped and depthwise experts;
- constructor and input errors.

The models' parameter counts, initialisation and MAC totals are in test_model_counts.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from dyn_helpers import (
    exercise_bn,
    expert_order,
    make_layer,
    one_numba_thread,  # noqa: F401  (a fixture, requested by name)
)
from hypothesis import given, settings
from hypothesis import strategies as st

import minicoconv as mc
from minicoconv import nn
from minicoconv.autograd import no_grad
from minicoconv.nn import functional as F

pytestmark = pytest.mark.usefixtures("one_numba_thread")


def _x(n: int, c: int, h: int, w: int, seed: int = 0, dtype=np.float64) -> mc.Tensor:
    return mc.Tensor(np.random.default_rng(seed).normal(0.3, 1.0, (n, c, h, w)).astype(dtype))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z, axis):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ---- routing weights: CondConv and DY-CNN ------------------------------------------------
def test_condconv_routing_is_sigmoid_of_linear_of_gap():
    layer = make_layer("condconv", 6, 4, experts=5).double()
    x = _x(3, 6, 5, 4)
    r = layer.routing_weights(x).numpy()
    gap = x.numpy().mean(axis=(2, 3))
    expected = sigmoid(gap @ layer.routing.weight.numpy().T + layer.routing.bias.numpy())
    assert r.shape == (3, 5)
    assert np.all((r > 0) & (r < 1))
    np.testing.assert_allclose(r, expected, rtol=1e-12)
    assert layer.routing.bias is not None, "the routing Linear has a bias (docs/layers.md)"


@pytest.mark.parametrize("temperature", [1.0, 0.5, 30.0])
def test_dycnn_routing_is_softmax_over_experts(temperature):
    layer = make_layer("dycnn", 6, 4, experts=3, temperature=temperature).double()
    layer.fc2.weight.data = layer.fc2.weight.data * 20  # spread the logits so the temperature shows
    x = _x(4, 6, 3, 3)
    r = layer.routing_weights(x).numpy()
    h = np.maximum(x.numpy().mean(axis=(2, 3)) @ layer.fc1.weight.numpy().T + layer.fc1.bias.numpy(), 0)
    logits = h @ layer.fc2.weight.numpy().T + layer.fc2.bias.numpy()
    assert r.shape == (4, 3)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(r, softmax(logits / temperature, axis=1), rtol=1e-10)


def test_dycnn_temperature_flattens_the_routing():
    layer = make_layer("dycnn", 6, 4, experts=4).double()
    layer.fc2.weight.data = layer.fc2.weight.data * 50
    x = _x(4, 6, 3, 3)
    spread = []
    for t in (0.5, 1.0, 5.0, 30.0, 1e6):
        layer.temperature = t
        spread.append(np.abs(layer.routing_weights(x).numpy() - 0.25).max())
    assert all(a > b for a, b in zip(spread, spread[1:])), f"distance from uniform should shrink with T: {spread}"
    assert spread[-1] < 1e-5


def test_anneal_temperature_schedule():
    model = nn.Sequential(nn.DyConv2d(4, 4, 3, padding=1), nn.ReLU(), nn.DyConv2d(4, 8, 3, padding=1),
                          nn.CoConv2d(8, 8, 3, padding=1))
    layers = [m for m in model.modules() if isinstance(m, nn.DyConv2d)]
    expected = {0: 30.0, 1: 27.1, 2.5: 22.75, 5: 15.5, 9: 3.9, 10: 1.0, 11: 1.0, 90: 1.0}
    for epoch, t in expected.items():
        got = nn.anneal_temperature(model, epoch)
        assert got == pytest.approx(t, abs=1e-12), f"epoch {epoch}"
        assert all(m.temperature == pytest.approx(t, abs=1e-12) for m in layers)
    coconv = next(m for m in model.modules() if isinstance(m, nn.CoConv2d))
    assert coconv.routing.temperature == 16.0, "only DY-CNN layers are annealed"
    values = [nn.anneal_temperature(model, e / 4) for e in range(0, 48)]
    assert all(a >= b for a, b in zip(values, values[1:])), "the schedule is non-increasing"


def test_dycnn_default_temperature_is_one():
    assert nn.DyConv2d(4, 4, 3).temperature == 1.0


# ---- hidden widths ------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [3, 16, 255, 256, 320, 512, 1024])
def test_hidden_widths(channels):
    """DY-CNN m = max(C // 16, 16) and CoConv s = max(C // 16, 16)."""
    width = max(channels // 16, 16)
    dy = nn.DyConv2d(channels, 4, 1)
    assert (dy.fc1.in_features, dy.fc1.out_features) == (channels, width)
    assert (dy.fc2.in_features, dy.fc2.out_features) == (width, 4)
    assert dy.fc1.bias is not None and dy.fc2.bias is not None, "both DY-CNN routing layers have biases"
    co = nn.CoConv2d(channels, 5, 1, experts=3)
    assert (co.routing.reduce.in_channels, co.routing.reduce.out_channels) == (2 * channels, width)
    assert co.routing.spatial.groups == width and co.routing.spatial.kernel_size == (3, 3)
    assert co.routing.spatial.padding == (0, 0)
    assert (co.routing.expand.in_channels, co.routing.expand.out_channels) == (width, 3 * 5)
    assert all(c.bias is None for c in (co.routing.reduce, co.routing.spatial, co.routing.expand))
    assert co.bias is None and co.bn.num_features == 3 * 5, "bias-free experts, each with its own BN (default)"
    assert co.routing.activation == "sigmoid" and co.attention == "output" and co.routing.multiscale


# ---- CoConv routing, step by step ---------------------------------------------------------
def adaptive_avg_pool(x: np.ndarray, out: int) -> np.ndarray:
    """PyTorch's rule: bin j of an axis of length L into o bins spans [floor(jL/o), ceil((j+1)L/o))."""
    n, c, h, w = x.shape
    y = np.empty((n, c, out, out))
    for i in range(out):
        r0, r1 = (i * h) // out, -(-((i + 1) * h) // out)
        for j in range(out):
            c0, c1 = (j * w) // out, -(-((j + 1) * w) // out)
            y[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return y


def coconv_routing_reference(routing, x: np.ndarray) -> np.ndarray:
    """docs/layers.md's CoConv routing steps, literally."""
    n = x.shape[0]
    a1 = adaptive_avg_pool(x, 1)                                            # (N, C, 1, 1)
    if routing.multiscale:
        a3 = adaptive_avg_pool(x, 3)                                        # (N, C, 3, 3)
        feat = np.concatenate([np.broadcast_to(a1, a3.shape), a3], axis=1)  # (N, 2C, 3, 3)
    else:
        feat = a1                                                           # (N, C, 1, 1)
    w_reduce = routing.reduce.weight.numpy()[:, :, 0, 0]                   # (s, 2C)
    h = np.maximum(np.einsum("sc,nchw->nshw", w_reduce, feat), 0)          # (N, s, 3, 3)
    w_spatial = routing.spatial.weight.numpy()[:, 0]                        # (s, 3, 3) or (s, 1, 1)
    h = np.maximum((h * w_spatial).sum(axis=(2, 3)), 0)                    # (N, s): 3x3 window, no padding
    logits = h @ routing.expand.weight.numpy()[:, :, 0, 0].T                # (N, n*width)
    logits = logits.reshape(n, routing.experts, routing.width)
    if routing.activation == "sigmoid":
        return sigmoid(logits)
    return softmax(16.0 * logits, axis=1)


SIZES = [(1, 1), (2, 2), (1, 3), (3, 3), (4, 4), (5, 7), (8, 6)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("multiscale", [True, False], ids=["multi", "single"])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_coconv_routing_matches_the_literal_steps(size, multiscale, activation):
    layer = make_layer("coconv", 5, 6, experts=3, multiscale=multiscale, activation=activation).double()
    x = _x(2, 5, *size)
    r = layer.routing_weights(x).numpy()
    np.testing.assert_allclose(r, coconv_routing_reference(layer.routing, x.numpy()), rtol=1e-10, atol=1e-13)


def test_coconv_routing_shapes_and_ranges():
    x = _x(3, 6, 5, 5)
    r = make_layer("coconv", 6, 10, experts=4).double().routing_weights(x).numpy()
    assert r.shape == (3, 4, 10)
    assert np.all((r > 0) & (r < 1))
    soft = make_layer("coconv", 6, 10, experts=4, activation="softmax").double()
    soft.routing.expand.weight.data = soft.routing.expand.weight.data * 5
    r = soft.routing_weights(x).numpy()
    assert r.shape == (3, 4, 10)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=1e-12)  # over the experts, per channel
    assert soft.routing.temperature == 16.0
    r_in = make_layer("coconv", 6, 10, experts=4, attention="input").double().routing_weights(x).numpy()
    assert r_in.shape == (3, 4, 6)


def test_coconv_routing_weights_differ_per_sample():
    layer = make_layer("coconv", 6, 10, experts=4).double()
    r = layer.routing_weights(_x(3, 6, 5, 5)).numpy()
    assert np.abs(r[0] - r[1]).max() > 1e-4 and np.abs(r[1] - r[2]).max() > 1e-4


def test_coconv_single_scale_uses_only_the_global_average():
    """Single scale (paper Table 6): A1 only (C channels into the 1x1 conv) and a 1x1 depthwise conv."""
    single = make_layer("coconv", 6, 8, multiscale=False).double()
    assert single.routing.reduce.in_channels == 6
    assert single.routing.spatial.kernel_size == (1, 1) and single.routing.spatial.groups == 16
    # moving pixels around within each channel keeps the channel means: same routing weights
    x = _x(2, 6, 5, 5).numpy()
    shuffled = x.reshape(2, 6, 25)[:, :, np.random.default_rng(1).permutation(25)].reshape(x.shape)
    np.testing.assert_allclose(single.routing_weights(mc.Tensor(shuffled)).numpy(),
                               single.routing_weights(mc.Tensor(x)).numpy(), rtol=1e-12)
    multi = make_layer("coconv", 6, 8).double()
    diff = multi.routing_weights(mc.Tensor(shuffled)).numpy() - multi.routing_weights(mc.Tensor(x)).numpy()
    assert np.abs(diff).max() > 1e-6, "the multi-scale routing should see the 3x3 layout"


# ---- CoConv training form against n separate convs + n separate BNs -------------------------
def _expert_bns(layer, order):
    """Per-expert BN tensors (running mean, running var, gamma, beta), gathered from the stacked BN."""
    bn = layer.bn
    return [tuple(mc.Tensor(t.numpy()[order[i]].copy()) for t in (bn.running_mean, bn.running_var, bn.weight,
                                                                     bn.bias)) for i in range(layer.experts)]


def coconv_reference(layer, x: mc.Tensor, training: bool):
    """y = sum_i r_i * BN_i(conv(x, W_i) + b_i) (output attention) or sum_i BN_i(conv(x, r_i . W_i) + b_i)
    (input attention: r_bi scales W_i's input channels, per sample). Returns (y, per-expert BN stats)."""
    r = layer.routing_weights(x).numpy()
    w, n, g = layer.weight.numpy(), layer.experts, layer.groups
    co, ci_g = w.shape[1], w.shape[2]
    order = expert_order(n, co, 1 if layer.attention == "input" else g)
    bns = _expert_bns(layer, order) if layer.bn is not None else None
    y = 0
    for i in range(n):
        bias = None if layer.bias is None else mc.Tensor(layer.bias.numpy()[i])
        if layer.attention == "output":
            z = F.conv2d(x, mc.Tensor(w[i]), bias, layer.stride, layer.padding, groups=g)
        else:
            parts = []
            for b in range(x.shape[0]):
                r_in = r[b, i].reshape(g, ci_g)                        # input channel grp*C/g + j
                scale = r_in[np.arange(co) // (co // g)]               # (C', C/g): the group of each c'
                w_bi = w[i] * scale[:, :, None, None]
                parts.append(F.conv2d(x[b:b + 1], mc.Tensor(w_bi), bias, layer.stride, layer.padding, groups=g))
            z = mc.cat(parts, axis=0)
        if bns is not None:
            mean, var, gamma, beta = bns[i]
            z = F.batch_norm(z, mean, var, gamma, beta, training, layer.bn.momentum, layer.bn.eps)
        y = y + (z * mc.Tensor(r[:, i, :, None, None]) if layer.attention == "output" else z)
    return y.numpy(), bns, order


# (cin, cout, groups): groups 1, grouped 1 < g < C, depthwise, depthwise with multiplier 2
GROUPINGS = [(4, 6, 1), (4, 6, 2), (6, 6, 3), (4, 4, 4), (3, 6, 3)]


@pytest.mark.parametrize("grouping", GROUPINGS, ids=lambda g: f"c{g[0]}-{g[1]}_g{g[2]}")
@pytest.mark.parametrize("attention", ["output", "input"])
@pytest.mark.parametrize("options", [dict(), dict(bias=True, stride=2), dict(expert_bn=False, bias=True)],
                         ids=["default", "bias-stride2", "nobn"])
def test_coconv_matches_separate_experts(grouping, attention, options):
    cin, cout, groups = grouping
    options = dict(options)
    stride = options.pop("stride", 1)
    layer = make_layer("coconv", cin, cout, groups=groups, stride=stride, experts=3, attention=attention,
                       **options).double()
    exercise_bn(layer, (3, cin, 5, 5), dtype=np.float64)  # random gamma/beta, moved running stats
    x = _x(3, cin, 5, 5, seed=7)
    # training mode: batch statistics, and the running statistics move the same way
    layer.train()
    expected, bns, order = coconv_reference(layer, x, training=True)
    with no_grad():
        got = layer(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    if bns is not None:
        for i, (mean, var, _, _) in enumerate(bns):
            np.testing.assert_allclose(layer.bn.running_mean.numpy()[order[i]], mean.numpy(), rtol=1e-12,
                                       atol=1e-14, err_msg=f"running mean of expert {i}")
            np.testing.assert_allclose(layer.bn.running_var.numpy()[order[i]], var.numpy(), rtol=1e-12,
                                       err_msg=f"running var of expert {i}")
    # eval mode: running statistics
    layer.eval()
    expected, _, _ = coconv_reference(layer, x, training=False)
    with no_grad():
        np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("grouping", GROUPINGS, ids=lambda g: f"c{g[0]}-{g[1]}_g{g[2]}")
@pytest.mark.parametrize("attention", ["output", "input"])
def test_coconv_expert_affine_is_each_experts_eval_bn(grouping, attention):
    """expert_affine() = (a_i, c_i) with BN_i(z + b_i) = a_i z + c_i, per expert in natural channel order."""
    cin, cout, groups = grouping
    layer = make_layer("coconv", cin, cout, groups=groups, experts=3, attention=attention, bias=True).double()
    exercise_bn(layer, (3, cin, 4, 4), dtype=np.float64)
    a, c = layer.expert_affine()
    order = expert_order(3, cout, 1 if attention == "input" else groups)
    bn = layer.bn
    for i in range(3):
        mean, var = bn.running_mean.numpy()[order[i]], bn.running_var.numpy()[order[i]]
        gamma, beta = bn.weight.numpy()[order[i]], bn.bias.numpy()[order[i]]
        a_i = gamma / np.sqrt(var + bn.eps)
        np.testing.assert_allclose(a[i], a_i, rtol=1e-12)
        np.testing.assert_allclose(c[i], beta + a_i * (layer.bias.numpy()[i] - mean), rtol=1e-12, atol=1e-14)


@settings(max_examples=10, deadline=None)
@given(groups=st.sampled_from([1, 2, 4]), experts=st.integers(1, 4), attention=st.sampled_from(["output", "input"]),
       stride=st.sampled_from([1, 2]), h=st.integers(1, 6), w=st.integers(1, 6), bias=st.booleans(),
       seed=st.integers(0, 1000))
def test_coconv_matches_separate_experts_any_shape(groups, experts, attention, stride, h, w, bias, seed):
    layer = make_layer("coconv", 4, 8, groups=groups, stride=stride, experts=experts, attention=attention,
                       bias=bias, seed=seed).double()
    exercise_bn(layer, (2, 4, h, w), steps=1, seed=seed, dtype=np.float64)
    x = _x(2, 4, h, w, seed=seed)
    for training in (True, False):
        layer.train(training)
        expected, _, _ = coconv_reference(layer, x, training)
        with no_grad():
            np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-10, atol=1e-12)


# ---- CondConv / DY-CNN outputs: conv with the aggregated kernel (+ aggregated bias) --------
@pytest.mark.parametrize("kind", ["condconv", "dycnn"])
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_aggregated_kernel_semantics(kind, groups):
    layer = make_layer(kind, 4, 8, groups=groups, stride=2, experts=3, bias=True).double()
    x = _x(3, 4, 5, 5)
    r = layer.routing_weights(x).numpy()
    y = layer(x).numpy()
    w, b = layer.weight.numpy(), layer.bias.numpy()
    for s in range(3):
        kernel = np.tensordot(r[s], w, axes=1)
        ys = F.conv2d(x[s:s + 1], mc.Tensor(kernel), mc.Tensor(r[s] @ b), 2, 1, groups=groups).numpy()
        np.testing.assert_allclose(y[s:s + 1], ys, rtol=1e-10, atol=1e-12)


# ---- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["condconv", "dycnn", "coconv"])
@pytest.mark.parametrize("kwargs, message", [
    (dict(experts=0), r"experts must be an int >= 1, got 0"),
    (dict(experts=-2), r"experts must be an int >= 1"),
    (dict(experts=2.5), r"experts must be an int >= 1, got 2.5"),
    (dict(groups=4), r"in_channels \(6\) and out_channels \(8\) must both be divisible by groups \(4\)"),
    (dict(groups=0), r"groups must be >= 1"),
    (dict(stride=0), r"expected stride >= 1"),
    (dict(padding=-1), r"expected padding >= 0"),
], ids=["experts0", "experts-2", "experts2.5", "groups4", "groups0", "stride0", "padding-1"])
def test_constructor_errors(kind, kwargs, message):
    cls = {"condconv": nn.CondConv2d, "dycnn": nn.DyConv2d, "coconv": nn.CoConv2d}[kind]
    with pytest.raises(ValueError, match=message) as info:
        cls(6, 8, 3, **kwargs)
    assert cls.__name__ in str(info.value), "the message names the layer"


@pytest.mark.parametrize("kwargs, message", [
    (dict(activation="relu"), r"CoConv2d: activation must be 'sigmoid' or 'softmax', got 'relu'"),
    (dict(activation="Sigmoid"), r"activation must be 'sigmoid' or 'softmax'"),
    (dict(attention="both"), r"CoConv2d: attention must be 'output' or 'input', got 'both'"),
    (dict(reduction=0), r"CoConv2d: reduction must be >= 1"),
])
def test_coconv_option_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nn.CoConv2d(6, 8, 3, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=0.0), r"DyConv2d: temperature must be > 0"),
    (dict(temperature=-1.0), r"DyConv2d: temperature must be > 0"),
    (dict(reduction=0), r"DyConv2d: reduction must be >= 1"),
])
def test_dycnn_option_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nn.DyConv2d(6, 8, 3, **kwargs)


@pytest.mark.parametrize("kind", ["condconv", "dycnn", "coconv", "fused"])
@pytest.mark.parametrize("shape", [(2, 4, 5, 5), (6, 5, 5), (2, 6, 5, 5, 1), (2, 6, 5)],
                         ids=["channels", "3d", "5d", "3d-batched"])
def test_input_errors(kind, shape):
    layer = make_layer("coconv" if kind == "fused" else kind, 6, 8)
    if kind == "fused":
        layer = nn.fuse(layer.eval())
    name = "CoConv2d" if kind == "fused" else type(layer).__name__
    x = mc.Tensor(np.zeros(shape, dtype=np.float32))
    with pytest.raises(ValueError, match=rf"{name}: expected input of shape \(N, 6, H, W\), got \({shape[0]}, "):
        layer(x)


def test_functional_errors():
    x = mc.randn(2, 4, 5, 5)
    with pytest.raises(ValueError, match=r"dynamic_conv2d: routing must be \(N, n\) = \(2, 3\) or "
                                         r"\(N, n, C'\) = \(2, 3, 6\), got \(2, 4\)"):
        F.dynamic_conv2d(x, mc.randn(3, 6, 4, 3, 3), mc.randn(2, 4))
    with pytest.raises(ValueError, match=r"dynamic_conv2d: bank must be \(n, C', C/groups, kh, kw\)"):
        F.dynamic_conv2d(x, mc.randn(6, 4, 3, 3), mc.randn(2, 3))
    with pytest.raises(ValueError, match=r"dynamic_conv2d: input must be 4-d"):
        F.dynamic_conv2d(mc.randn(4, 5, 5), mc.randn(3, 6, 4, 3, 3), mc.randn(2, 3))
    with pytest.raises(ValueError, match=r"per_sample_conv2d: kernels must be 5-d"):
        F.per_sample_conv2d(x, mc.randn(6, 4, 3, 3))
    with pytest.raises(ValueError, match=r"per_sample_conv2d: x must be \(N, C, H, W\) with N == kernels.shape"):
        F.per_sample_conv2d(x, mc.randn(3, 6, 4, 3, 3))
    with pytest.raises(ValueError, match=r"per_sample_conv2d: expected w.shape\[1\] \* groups == Cin, got "
                                         r"w.shape\[1\]=3, groups=1, Cin=4"):
        F.per_sample_conv2d(x, mc.randn(2, 6, 3, 3, 3))  # C/g = 3 does not match C = 4
    with pytest.raises(ValueError, match=r"per_sample_conv2d: expected the dilated kernel height \(7\) to fit"):
        F.per_sample_conv2d(x, mc.randn(2, 6, 4, 7, 3))


def test_coconv_training_needs_more_than_one_value_per_channel():
    layer = make_layer("coconv", 4, 4)
    with pytest.raises(ValueError, match="more than one value per channel"):
        layer(mc.randn(1, 4, 1, 1))
    layer.eval()
    assert layer(mc.randn(1, 4, 1, 1)).shape == (1, 4, 1, 1)  # eval mode is fine with one value
