"""Gradients of the functional ops of `minicoconv.nn.functional`, through autodiff, in float64.

Each op runs as a `Tensor` op (the `Function` over the backend kernel, the engine's
un-broadcasting and `needs_input_grad`) and `minicoconv.testing.gradcheck` compares
every gradient with central finite differences against a random cotangent.
tests/backend/ already checks the kernels array by array; here the geometry is drawn
by hypothesis at the Tensor level: batch, channels, sizes, kernel, stride, padding,
dilation and groups (depthwise, channel multipliers, 1x1 and odd sizes included),
with non-contiguous inputs.

Numba runs on one thread here: gradcheck makes thousands of calls on a few hundred
elements, where waking the thread pool costs more than the work.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nn_helpers import one_numba_thread  # noqa: F401  (a fixture, requested by name)
from strategies import arrays, distinct_arrays, layouts, leaf

import minicoconv as mc
from minicoconv.nn import functional as F
from minicoconv.testing import gradcheck

pytestmark = pytest.mark.usefixtures("one_numba_thread")


def out_size(size: int, k: int, stride: int, pad: int, dil: int = 1) -> int:
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


# ---- convolution -----------------------------------------------------------------------
@st.composite
def conv_cases(draw) -> dict:
    """A valid conv2d geometry; groups > 1 with one input channel per group is depthwise."""
    groups = draw(st.integers(1, 3), label="groups")
    cin_g = draw(st.integers(1, 2), label="Cin/groups")
    cout_g = draw(st.integers(1, 2), label="Cout/groups (channel multiplier)")
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 1)))
    span = [d * (kk - 1) + 1 for d, kk in zip(dilation, k)]
    h = draw(st.integers(max(1, span[0] - 2 * padding[0]), span[0] + 3))
    w = draw(st.integers(max(1, span[1] - 2 * padding[1]), span[1] + 3))
    return dict(n=draw(st.integers(1, 2)), cin=groups * cin_g, cout=groups * cout_g, hw=(h, w), k=k,
                stride=stride, padding=padding, dilation=dilation, groups=groups, bias=draw(st.booleans()))


def check_conv(case: dict, draw, layout: str) -> None:
    """gradcheck conv2d w.r.t. x, weight and (when case["bias"]) bias; draw(shape, label) gives values."""
    n, cin, cout, (h, w), k, g = case["n"], case["cin"], case["cout"], case["hw"], case["k"], case["groups"]
    args = (case["stride"], case["padding"], case["dilation"], g)
    x = leaf(draw((n, cin, h, w), "x"), layout)
    weight = leaf(draw((cout, cin // g, *k), "weight"))
    inputs = [x, weight]
    if case["bias"]:
        inputs.append(leaf(draw((cout,), "bias")))

    def conv(x, weight, bias=None):
        return F.conv2d(x, weight, bias, *args)

    out = conv(*inputs)
    oh = out_size(h, k[0], case["stride"][0], case["padding"][0], case["dilation"][0])
    ow = out_size(w, k[1], case["stride"][1], case["padding"][1], case["dilation"][1])
    assert out.shape == (n, cout, oh, ow) and out.dtype == mc.float64
    assert gradcheck(conv, *inputs, name=f"conv2d{case}")


@given(case=conv_cases(), data=st.data(), layout=layouts)
def test_conv2d(case, data, layout):
    check_conv(case, lambda shape, label: data.draw(arrays(shape), label=label), layout)


def normal(seed: int):
    """draw(shape, label) -> standard normal values (named cases: hypothesis's first draw is all zeros)."""
    rng = np.random.default_rng(seed)
    return lambda shape, label=None: rng.standard_normal(shape)


NAMED_CONVS = {  # the paths and shapes the random draw might visit rarely
    "depthwise": dict(n=2, cin=3, cout=3, hw=(5, 4), k=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1),
                      groups=3, bias=True),
    "depthwise_multiplier_strided": dict(n=1, cin=2, cout=4, hw=(5, 5), k=(3, 2), stride=(2, 1), padding=(1, 0),
                                         dilation=(1, 2), groups=2, bias=True),
    "pointwise_1x1": dict(n=2, cin=3, cout=2, hw=(3, 2), k=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                          groups=1, bias=True),
    "1x1_strided_padded": dict(n=1, cin=2, cout=2, hw=(3, 3), k=(1, 1), stride=(2, 2), padding=(1, 1),
                               dilation=(1, 1), groups=1, bias=False),
    "odd_sizes_dilated": dict(n=1, cin=2, cout=3, hw=(7, 5), k=(3, 3), stride=(3, 2), padding=(2, 1),
                              dilation=(2, 1), groups=1, bias=True),
    "single_input_channel": dict(n=2, cin=1, cout=2, hw=(4, 3), k=(2, 2), stride=(1, 1), padding=(0, 1),
                                 dilation=(1, 1), groups=1, bias=False),
    "grouped_no_bias": dict(n=1, cin=4, cout=2, hw=(4, 4), k=(3, 3), stride=(1, 1), padding=(1, 1),
                            dilation=(1, 1), groups=2, bias=False),
    "kernel_equals_padded_input": dict(n=1, cin=1, cout=1, hw=(1, 2), k=(3, 3), stride=(1, 1), padding=(1, 1),
                                       dilation=(1, 1), groups=1, bias=True),
}


@pytest.mark.parametrize("name", NAMED_CONVS)
def test_conv2d_named_cases(name):
    check_conv(NAMED_CONVS[name], normal(len(name)), "strided")


def test_conv2d_gradient_with_respect_to_the_weight_only():
    """needs_input_grad: a constant input gets no gradient, the weight and bias still do."""
    draw = normal(1)
    x = leaf(draw((2, 2, 4, 4)), requires_grad=False)
    weight, bias = leaf(draw((3, 2, 3, 3))), leaf(draw((3,)))
    assert gradcheck(lambda weight, bias: F.conv2d(x, weight, bias, padding=1), weight, bias)
    assert x.grad is None


# ---- pooling ---------------------------------------------------------------------------
@st.composite
def pool_cases(draw) -> tuple:
    """(shape, kernel, stride or None, padding) with padding <= kernel / 2 and the window fitting."""
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    stride = draw(st.none() | st.tuples(st.integers(1, 3), st.integers(1, 3)))
    h = draw(st.integers(max(1, k[0] - 2 * padding[0]), 6))
    w = draw(st.integers(max(1, k[1] - 2 * padding[1]), 6))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), k, stride, padding


@given(case=pool_cases(), data=st.data(), layout=layouts)
def test_max_pool2d(case, data, layout):
    """Tie-free inputs: a finite difference never moves the argmax of a window."""
    shape, k, stride, padding = case
    x = leaf(data.draw(distinct_arrays(shape), label="x"), layout)
    s = k if stride is None else stride
    out = F.max_pool2d(x, k, stride, padding)
    assert out.shape == (*shape[:2], out_size(shape[2], k[0], s[0], padding[0]),
                         out_size(shape[3], k[1], s[1], padding[1]))
    assert gradcheck(lambda x: F.max_pool2d(x, k, stride, padding), x, name="max_pool2d")


@given(case=pool_cases(), data=st.data(), layout=layouts)
def test_avg_pool2d(case, data, layout):
    shape, k, stride, padding = case
    x = leaf(data.draw(arrays(shape), label="x"), layout)
    assert gradcheck(lambda x: F.avg_pool2d(x, k, stride, padding), x, name="avg_pool2d")


@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 6), st.integers(1, 6)),
       output_size=st.integers(1, 4) | st.tuples(st.integers(1, 8), st.integers(1, 8)),
       data=st.data(), layout=layouts)
def test_adaptive_avg_pool2d(shape, output_size, data, layout):
    """Output sizes from 1x1 up to larger than the input (overlapping, repeated bins)."""
    x = leaf(data.draw(arrays(shape), label="x"), layout)
    out = F.adaptive_avg_pool2d(x, output_size)
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    assert out.shape == (*shape[:2], oh, ow)
    assert gradcheck(lambda x: F.adaptive_avg_pool2d(x, output_size), x, name="adaptive_avg_pool2d")


@pytest.mark.parametrize("shape, output_size", [((1, 2, 2, 3), (3, 3)), ((2, 1, 1, 1), (2, 3)),
                                                ((1, 1, 5, 2), (3, 7))])
def test_adaptive_avg_pool2d_output_larger_than_input(shape, output_size):
    x = leaf(normal(0)(shape), "strided")
    assert gradcheck(lambda x: F.adaptive_avg_pool2d(x, output_size), x, name="adaptive_avg_pool2d(up)")


# ---- batch norm ------------------------------------------------------------------------
bn_shapes = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)).filter(
    lambda s: s[0] * s[2] * s[3] >= 2)


@given(shape=bn_shapes, affine=st.booleans(), data=st.data(), layout=layouts)
def test_batch_norm_training(shape, affine, data, layout):
    """Through the batch statistics, w.r.t. x, weight and bias; the running statistics take no part."""
    c = shape[1]
    x = leaf(data.draw(arrays(shape), label="x"), layout)
    running_mean, running_var = mc.zeros(c, dtype=mc.float64), mc.ones(c, dtype=mc.float64)
    if affine:
        weight = leaf(data.draw(arrays((c,), lo=0.5, hi=2.0), label="weight"))
        bias = leaf(data.draw(arrays((c,)), label="bias"))
        assert gradcheck(lambda x, w, b: F.batch_norm(x, running_mean, running_var, w, b, training=True),
                         x, weight, bias, name="batch_norm(train)")
    else:
        assert gradcheck(lambda x: F.batch_norm(x, None, None, training=True), x, name="batch_norm(train)")


@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
       affine=st.booleans(), data=st.data(), layout=layouts)
def test_batch_norm_eval(shape, affine, data, layout):
    """An affine map with the running statistics (constants): w.r.t. x, weight and bias."""
    c = shape[1]
    x = leaf(data.draw(arrays(shape), label="x"), layout)
    running_mean = leaf(data.draw(arrays((c,)), label="running_mean"), requires_grad=False)
    running_var = leaf(data.draw(arrays((c,), lo=0.2, hi=3.0), label="running_var"), requires_grad=False)
    before = running_mean.numpy().copy(), running_var.numpy().copy()
    if affine:
        weight = leaf(data.draw(arrays((c,)), label="weight"))
        bias = leaf(data.draw(arrays((c,)), label="bias"))
        assert gradcheck(lambda x, w, b: F.batch_norm(x, running_mean, running_var, w, b, training=False),
                         x, weight, bias, name="batch_norm(eval)")
    else:
        assert gradcheck(lambda x: F.batch_norm(x, running_mean, running_var, training=False), x,
                         name="batch_norm(eval)")
    np.testing.assert_array_equal(running_mean.numpy(), before[0])  # eval never updates them
    np.testing.assert_array_equal(running_var.numpy(), before[1])


# ---- linear, dropout, flatten ----------------------------------------------------------
@given(batch=st.lists(st.integers(1, 3), max_size=2), n_in=st.integers(1, 4), n_out=st.integers(1, 4),
       bias=st.booleans(), data=st.data(), layout=layouts)
def test_linear(batch, n_in, n_out, bias, data, layout):
    """(..., in) -> (..., out), with 0, 1 or 2 leading batch dims."""
    x = leaf(data.draw(arrays((*batch, n_in)), label="x"), layout)
    weight = leaf(data.draw(arrays((n_out, n_in)), label="weight"), layout)
    inputs = [x, weight] + ([leaf(data.draw(arrays((n_out,)), label="bias"))] if bias else [])
    assert F.linear(*inputs).shape == (*batch, n_out)
    assert gradcheck(F.linear, *inputs, name="linear")


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3)),
       p=st.sampled_from([0.0, 0.2, 0.5, 0.9]), seed=st.integers(0, 2**32 - 1), data=st.data(), layout=layouts)
def test_dropout_with_a_fixed_mask(shape, p, seed, data, layout):
    """Reseeding inside the function makes every call (and every finite difference) draw the same mask."""
    x = leaf(data.draw(arrays(shape), label="x"), layout)

    def dropout(x):
        mc.manual_seed(seed)
        return F.dropout(x, p, training=True)

    out = dropout(x).numpy()
    kept = out != 0
    np.testing.assert_allclose(out[kept], x.numpy()[kept] / (1 - p), rtol=1e-15)
    assert gradcheck(dropout, x, name="dropout")


@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=4), data=st.data(), layout=layouts)
def test_flatten(shape, data, layout):
    start_dim = data.draw(st.integers(0, len(shape) - 1), label="start_dim")
    x = leaf(data.draw(arrays(tuple(shape)), label="x"), layout)
    out = F.flatten(x, start_dim)
    assert out.shape == (*shape[:start_dim], int(np.prod(shape[start_dim:])))
    np.testing.assert_array_equal(out.numpy(), x.numpy().reshape(out.shape))
    assert gradcheck(lambda x: F.flatten(x, start_dim), x, name="flatten")


def test_linear_weight_gradient_keeps_the_weight_layout():
    """dW comes back C-contiguous like W (the optimizer would otherwise pay a transposing copy)."""
    x = mc.tensor(np.ones((5, 3), np.float32), requires_grad=True)
    w = mc.tensor(np.ones((4, 3), np.float32), requires_grad=True)
    F.linear(x, w).sum().backward()
    assert w.grad.numpy().flags.c_contiguous
    np.testing.assert_array_equal(w.grad.numpy(), np.full((4, 3), 5.0))


def test_linear_refuses_mismatched_dtypes_and_bias_shapes():
    x = mc.tensor(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="dtype mismatch"):
        F.linear(x, mc.tensor(np.ones((4, 3), np.float64)))
    with pytest.raises(ValueError, match="bias"):
        F.linear(x, mc.tensor(np.ones((4, 3), np.float32)), mc.tensor(np.ones(3, np.float32)))
