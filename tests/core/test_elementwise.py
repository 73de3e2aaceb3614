"""Elementwise ops: forward against NumPy, gradients against finite differences in float64.

Every binary op is drawn with broadcast-compatible shapes and non-contiguous
layouts; every op is also used with Python scalars on either side. Values are
kept away from the points where an op is not differentiable (0 for abs, relu,
log; ties for maximum/minimum) except in the tests that pin those points down.
"""

from __future__ import annotations

import operator
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import arrays, broadcast_pairs, floats, layouts, leaf, scalars, shapes

import minicoconv as mc
from minicoconv.testing import gradcheck


def _grid(offset: float):
    """Values on a 0.25 grid shifted by `offset`: two grids with different offsets never tie."""
    def strategy(shape):
        return hnp.arrays(np.float64, shape, elements=st.integers(-8, 8).map(lambda k: k * 0.25 + offset))
    return strategy


def _bounded(**kw):
    return lambda shape: arrays(shape, **kw)


# name -> (minicoconv op, NumPy reference, strategy for a, strategy for b)
BINARY = {
    "add": (operator.add, np.add, _bounded(), _bounded()),
    "sub": (operator.sub, np.subtract, _bounded(), _bounded()),
    "mul": (operator.mul, np.multiply, _bounded(), _bounded()),
    "div": (operator.truediv, np.divide, _bounded(), _bounded(min_abs=0.5)),
    "pow": (operator.pow, np.power, _bounded(lo=0.5, hi=2.0), _bounded()),
    "maximum": (mc.maximum, np.maximum, _grid(0.0), _grid(0.125)),
    "minimum": (mc.minimum, np.minimum, _grid(0.0), _grid(0.125)),
}


@pytest.mark.parametrize("name", BINARY)
@given(data=st.data(), layout=layouts)
def test_binary_op_broadcasting(name, data, layout):
    op, ref, a_values, b_values = BINARY[name]
    shape_a, shape_b = data.draw(broadcast_pairs(), label="shapes")
    a, b = data.draw(a_values(shape_a), label="a"), data.draw(b_values(shape_b), label="b")
    x, y = leaf(a, layout), leaf(b)

    out = op(x, y)
    assert out.shape == np.broadcast_shapes(a.shape, b.shape)
    np.testing.assert_allclose(out.numpy(), ref(a, b), rtol=1e-12, atol=0)
    assert gradcheck(op, x, y, name=name)


@pytest.mark.parametrize("name", BINARY)
@given(data=st.data())
def test_binary_op_same_tensor_twice(name, data):
    """op(x, x): both gradient contributions land on x (maximum/minimum tie everywhere: half each)."""
    op, ref, a_values, _ = BINARY[name]
    a = data.draw(a_values(data.draw(shapes(max_dims=2))))
    if name == "div":
        a = np.where(np.abs(a) < 0.5, 1.0, a)
    x = leaf(a)
    np.testing.assert_allclose(op(x, x).numpy(), ref(a, a), rtol=1e-12)
    assert gradcheck(lambda t: op(t, t), x, name=f"{name}(x, x)")


# (label, op on (tensor, scalar), reference on (array, scalar), strategy for x, strategy for the scalar)
SCALAR_CASES = [
    ("x + s", lambda x, s: x + s, lambda a, s: a + s, {}, scalars()),
    ("s + x", lambda x, s: s + x, lambda a, s: s + a, {}, scalars()),
    ("x - s", lambda x, s: x - s, lambda a, s: a - s, {}, scalars()),
    ("s - x", lambda x, s: s - x, lambda a, s: s - a, {}, scalars()),
    ("x * s", lambda x, s: x * s, lambda a, s: a * s, {}, scalars()),
    ("s * x", lambda x, s: s * x, lambda a, s: s * a, {}, scalars()),
    ("x / s", lambda x, s: x / s, lambda a, s: a / s, {}, scalars(min_abs=0.5)),
    ("s / x", lambda x, s: s / x, lambda a, s: s / a, {"min_abs": 0.5}, scalars()),
    ("x ** s", lambda x, s: x ** s, lambda a, s: a ** s, {"lo": 0.5, "hi": 2.0}, scalars()),
    ("x ** n", lambda x, s: x ** s, lambda a, s: a ** s, {}, st.integers(0, 3)),
    ("s ** x", lambda x, s: s ** x, lambda a, s: s ** a, {}, scalars(0.5, 3.0)),
    ("maximum(x, s)", mc.maximum, np.maximum, {"min_abs": 0.1}, st.just(0.0)),
    ("minimum(x, s)", lambda x, s: x.minimum(s), np.minimum, {"min_abs": 0.1}, st.just(0)),
]


@pytest.mark.parametrize("case", SCALAR_CASES, ids=[c[0] for c in SCALAR_CASES])
@given(data=st.data())
def test_python_scalar_operands(case, data):
    label, op, ref, x_kw, scalar_strategy = case
    a = data.draw(arrays(shapes(max_dims=2), **x_kw), label="a")
    s = data.draw(scalar_strategy, label="s")
    x = leaf(a)
    out = op(x, s)
    assert out.dtype == mc.float64 and out.shape == a.shape
    np.testing.assert_allclose(out.numpy(), ref(a, s), rtol=1e-12)
    assert gradcheck(lambda t: op(t, s), x, name=label)


# name -> (minicoconv op, NumPy reference, value bounds keeping away from kinks and poles)
UNARY = {
    "neg": (operator.neg, np.negative, {}),
    "exp": (mc.exp, np.exp, {}),
    "log": (mc.log, np.log, {"lo": 0.1, "hi": 3.0}),
    "sqrt": (mc.sqrt, np.sqrt, {"lo": 0.1, "hi": 3.0}),
    "abs": (mc.abs, np.abs, {"min_abs": 0.1}),
    "relu": (mc.relu, lambda a: np.maximum(a, 0), {"min_abs": 0.1}),
    "sigmoid": (mc.sigmoid, lambda a: 1 / (1 + np.exp(-a)), {"lo": -5.0, "hi": 5.0}),
    "tanh": (mc.tanh, np.tanh, {}),
}


@pytest.mark.parametrize("name", UNARY)
@given(data=st.data(), layout=layouts)
def test_unary_op(name, data, layout):
    op, ref, bounds = UNARY[name]
    a = data.draw(arrays(shapes(), **bounds), label="a")
    x = leaf(a, layout)
    np.testing.assert_allclose(op(x).numpy(), ref(a), rtol=1e-12, atol=1e-15)
    assert gradcheck(op, x, name=name)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh"])
def test_method_free_function_and_functional_agree(name):
    x = mc.tensor([0.5, 1.5, 2.5])
    expected = getattr(mc, name)(x).numpy()
    np.testing.assert_array_equal(getattr(x, name)().numpy(), expected)
    if hasattr(mc.nn.functional, name):
        np.testing.assert_array_equal(getattr(mc.nn.functional, name)(x).numpy(), expected)


def test_kinks_follow_pytorch_convention():
    """abs and relu have gradient 0 at 0 (as PyTorch); x**0 has gradient 0 even at x = 0."""
    x = mc.tensor([-1.0, 0.0, 2.0], dtype=mc.float64, requires_grad=True)
    (x.abs() + x.relu()).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [-1.0, 0.0, 2.0])

    z = mc.tensor([0.0, 3.0], dtype=mc.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no 0 * inf on the way
        (z ** 0).sum().backward()
    np.testing.assert_array_equal(z.grad.numpy(), [0.0, 0.0])

    base = mc.tensor([0.0, 0.0, 2.0], dtype=mc.float64, requires_grad=True)
    exponent = mc.tensor([2.0, 0.0, 3.0], dtype=mc.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no log(0) on the way
        (base ** exponent).sum().backward()
    np.testing.assert_allclose(exponent.grad.numpy(), [0.0, 0.0, 8 * np.log(2.0)])


def test_sigmoid_is_stable_for_large_inputs():
    x = mc.tensor([-1000.0, 0.0, 1000.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning allowed
        y = x.sigmoid()
        y.sum().backward()
    np.testing.assert_array_equal(y.numpy(), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.25, 0.0])


# ---- maximum / minimum ties -----------------------------------------------------------
def test_maximum_minimum_ties_split_gradient_evenly():
    a = mc.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = mc.tensor([1.0, 0.0, 5.0], requires_grad=True)
    mc.maximum(a, b).backward(mc.tensor([1.0, 1.0, 2.0]))
    np.testing.assert_array_equal(a.grad.numpy(), [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(b.grad.numpy(), [0.5, 0.0, 2.0])

    a.grad = b.grad = None
    mc.minimum(a, b).backward(mc.tensor([1.0, 1.0, 2.0]))
    np.testing.assert_array_equal(a.grad.numpy(), [0.5, 0.0, 2.0])
    np.testing.assert_array_equal(b.grad.numpy(), [0.5, 1.0, 0.0])


def test_maximum_tie_with_broadcast_operand_sums_the_halves():
    x = mc.tensor([[1.0, 2.0], [1.0, 0.0]], requires_grad=True)
    floor = mc.tensor([1.0], requires_grad=True)
    mc.maximum(x, floor).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0.5, 1.0], [0.5, 0.0]])
    np.testing.assert_array_equal(floor.grad.numpy(), [0.5 + 0.5 + 1.0])


@pytest.mark.parametrize("name", ["maximum", "minimum"])
@given(data=st.data())
def test_maximum_minimum_with_ties_match_torch(torch, name, data):
    """Values on a coarse grid tie often; forward and both gradients must equal PyTorch's."""
    shape_a, shape_b = data.draw(broadcast_pairs(max_dims=2))
    grid = st.integers(-2, 2).map(float)
    a = data.draw(hnp.arrays(np.float64, shape_a, elements=grid))
    b = data.draw(hnp.arrays(np.float64, shape_b, elements=grid))
    g = data.draw(arrays(np.broadcast_shapes(shape_a, shape_b)))

    x, y = leaf(a), leaf(b)
    out = getattr(mc, name)(x, y)
    out.backward(mc.tensor(g, dtype=mc.float64))
    tx, ty = (torch.tensor(v, requires_grad=True) for v in (a, b))
    tout = getattr(torch, name)(tx, ty)
    tout.backward(torch.tensor(g))
    np.testing.assert_array_equal(out.numpy(), tout.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(y.grad.numpy(), ty.grad.numpy(), rtol=1e-14, atol=1e-15)


# ---- where ----------------------------------------------------------------------------
@given(data=st.data())
def test_where_broadcasting(data):
    shape_c, shape_a, shape_b = data.draw(
        hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3).map(lambda b: b.input_shapes)
    )
    cond = data.draw(hnp.arrays(np.bool_, shape_c))
    a, b = data.draw(arrays(shape_a)), data.draw(arrays(shape_b))
    c = mc.tensor(cond)
    x, y = leaf(a), leaf(b)
    np.testing.assert_array_equal(mc.where(c, x, y).numpy(), np.where(cond, a, b))
    assert gradcheck(lambda p, q: mc.where(c, p, q), x, y, name="where")


@given(a=arrays(shapes(max_dims=2)), s=scalars())
def test_where_with_python_scalars_and_numpy_condition(a, s):
    cond = a > 0
    x = leaf(a)
    np.testing.assert_array_equal(mc.where(cond, x, s).numpy(), np.where(cond, a, s))
    np.testing.assert_array_equal(mc.where(cond, s, x).numpy(), np.where(cond, s, a))
    assert gradcheck(lambda t: mc.where(cond, t, s), x, name="where(cond, x, s)")
    assert gradcheck(lambda t: mc.where(cond, s, t), x, name="where(cond, s, x)")


# ---- dtype conversion -----------------------------------------------------------------
@given(a=arrays(shapes(), lo=-1e3, hi=1e3), g=st.floats(-2, 2))
def test_to_dtype_forward_and_gradient(a, g):
    x = leaf(a)
    y = x.to(dtype=mc.float32)
    assert y.dtype == mc.float32 and y.requires_grad
    np.testing.assert_array_equal(y.numpy(), a.astype(np.float32))
    cot = np.full(a.shape, g, dtype=np.float32)
    y.backward(mc.tensor(cot))  # the gradient goes back through the cast as float64
    assert x.grad.dtype == mc.float64
    np.testing.assert_array_equal(x.grad.numpy(), cot.astype(np.float64))

    x32 = leaf(a.astype(np.float32))
    z = x32.double()
    assert z.dtype == mc.float64
    z.backward(mc.tensor(np.full(a.shape, g), dtype=mc.float64))
    assert x32.grad.dtype == mc.float32
    np.testing.assert_array_equal(x32.grad.numpy(), np.full(a.shape, g).astype(np.float32))


@given(a=arrays(shapes()))
def test_cast_round_trip_inside_a_float64_graph(a):
    """A float64 -> float64 conversion is a no-op and gradchecks; float32 round trips keep the graph."""
    x = leaf(a)
    assert x.to(dtype="float64") is x
    assert gradcheck(lambda t: t.to(dtype=mc.float64) * 3.0, x, name="to(float64)")
    x.grad = None  # gradcheck left its own gradient there
    y = x.float().double() * 2.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full(a.shape, 2.0))


def test_integer_to_float_conversion_is_not_recorded():
    i = mc.arange(4)
    f = i.float()
    assert i.dtype == mc.int64 and f.dtype == mc.float32 and not f.requires_grad
    np.testing.assert_array_equal(f.numpy(), [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(mc.tensor([1.7, -2.2]).to(dtype=mc.int64).numpy(), [1, -2])


@given(a=arrays(shapes(max_dims=2), min_abs=0.1), b=floats(-2, 2))
def test_comparisons_give_boolean_tensors(a, b):
    x = mc.tensor(a)
    for got, want in [(x > b, a > b), (x < b, a < b), (x >= b, a >= b), (x <= b, a <= b), (x.eq(x), a == a)]:
        assert got.dtype == mc.bool_ and not got.requires_grad
        np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["kernel", "strided", "small"])
def test_relu_kernels_match_numpy(dtype, layout):
    """Large contiguous maps take the fused Numba kernels; strided and small ones NumPy. Same results."""
    from minicoconv.backend.cpu.activation_kernels import PARALLEL_MIN_SIZE

    rng = np.random.default_rng(0)
    n = PARALLEL_MIN_SIZE + 5 if layout != "small" else 11
    a = rng.standard_normal((2, n)).astype(dtype)
    a[0, :4] = [0.0, -0.0, np.nan, np.inf]
    g = rng.standard_normal(a.shape).astype(dtype)
    g[1, :2] = np.nan
    if layout == "strided":
        a, g = a.T, g.T
    x = mc.tensor(a, requires_grad=True)
    y = x.relu()
    y.backward(mc.tensor(g))
    np.testing.assert_array_equal(y.numpy(), np.maximum(a, 0))
    np.testing.assert_array_equal(x.grad.numpy(), np.where(np.maximum(a, 0) > 0, g, 0))
    assert y.dtype == x.grad.dtype == mc.tensor(a).dtype
