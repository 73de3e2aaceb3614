"""Reductions (sum, mean, max, min, var, argmax) over any subset of axes, keepdims both ways."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import arrays, axes, distinct_arrays, layouts, leaf, shapes

import minicoconv as mc
from minicoconv.testing import gradcheck


def _count(shape, axis) -> int:
    """How many elements each output element of a reduction over `axis` combines."""
    if axis is None:
        axis = tuple(range(len(shape)))
    axis = (axis,) if isinstance(axis, int) else axis
    return int(np.prod([shape[a] for a in axis], dtype=np.int64))


# name -> (NumPy reference, whether values must be distinct for the gradient to exist)
REDUCTIONS = {
    "sum": (np.sum, False),
    "mean": (np.mean, False),
    "max": (np.max, True),
    "min": (np.min, True),
}


@pytest.mark.parametrize("name", REDUCTIONS)
@given(data=st.data(), keepdims=st.booleans(), layout=layouts)
def test_reduction(name, data, keepdims, layout):
    ref, distinct = REDUCTIONS[name]
    shape = data.draw(shapes(), label="shape")
    axis = data.draw(axes(len(shape)), label="axis")
    a = data.draw(distinct_arrays(shape) if distinct else arrays(shape), label="a")
    x = leaf(a, layout)

    out = getattr(x, name)(axis, keepdims=keepdims)
    want = ref(a, axis=axis, keepdims=keepdims)
    assert out.shape == want.shape
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-12, atol=1e-14)
    assert gradcheck(lambda t: getattr(t, name)(axis, keepdims=keepdims), x, name=name)


@given(data=st.data(), keepdims=st.booleans(), correction=st.sampled_from([0, 1]))
def test_var(data, keepdims, correction):
    shape = data.draw(shapes(), label="shape")
    axis = data.draw(axes(len(shape)), label="axis")
    assume(_count(shape, axis) > correction)
    a = data.draw(arrays(shape), label="a")
    x = leaf(a)

    out = x.var(axis, keepdims=keepdims, correction=correction)
    want = np.var(a, axis=axis, keepdims=keepdims, ddof=correction)
    assert out.shape == want.shape
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-10, atol=1e-14)
    assert gradcheck(lambda t: t.var(axis, keepdims=keepdims, correction=correction), x, name="var")


def test_var_defaults_to_the_unbiased_estimate():
    x = mc.tensor([1.0, 2.0, 3.0, 4.0])
    assert x.var().item() == pytest.approx(np.var([1, 2, 3, 4], ddof=1))
    assert x.var(correction=0).item() == pytest.approx(np.var([1, 2, 3, 4]))


@pytest.mark.parametrize("name", ["max", "min"])
def test_ties_share_the_gradient_evenly(name):
    x = mc.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], requires_grad=True)
    y = x if name == "max" else -x
    getattr(y, name)(axis=1).sum().backward()
    sign = 1.0 if name == "max" else -1.0
    np.testing.assert_allclose(x.grad.numpy(), sign * np.array([[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]]), rtol=1e-6)


@pytest.mark.parametrize("name", ["max", "min"])
@given(data=st.data(), keepdims=st.booleans())
def test_max_min_with_ties_match_torch(torch, name, data, keepdims):
    """Values on a coarse grid tie often; the gradient must equal torch.amax/amin's even split."""
    shape = data.draw(shapes(min_dims=1), label="shape")
    axis = data.draw(hnp.valid_tuple_axes(len(shape), min_size=1), label="axis")
    a = data.draw(hnp.arrays(np.float64, shape, elements=st.integers(-1, 1).map(float)), label="a")
    x = leaf(a)
    out = getattr(x, name)(axis, keepdims=keepdims)
    g = data.draw(arrays(out.shape), label="g")
    out.backward(mc.tensor(g, dtype=mc.float64))

    t = torch.tensor(a, requires_grad=True)
    tout = getattr(torch, "a" + name)(t, dim=axis, keepdim=keepdims)
    tout.backward(torch.tensor(g))
    np.testing.assert_array_equal(out.numpy(), tout.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-14, atol=1e-15)


@given(data=st.data())
def test_argmax(data):
    shape = data.draw(shapes(min_dims=1), label="shape")
    a = data.draw(distinct_arrays(shape), label="a")
    axis = data.draw(st.none() | st.integers(-len(shape), len(shape) - 1), label="axis")
    got = mc.tensor(a).argmax(axis)
    assert got.dtype == mc.int64 and not got.requires_grad
    np.testing.assert_array_equal(got.numpy(), np.argmax(a, axis=axis))


def test_reductions_of_a_scalar_and_over_no_axes():
    s = mc.tensor(2.5, dtype=mc.float64, requires_grad=True)
    for name in ("sum", "mean", "max", "min"):
        assert getattr(s, name)().shape == () and getattr(s, name)().item() == 2.5
    x = leaf(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(x.sum(axis=()).numpy(), np.sum(np.arange(6.0).reshape(2, 3), axis=()))
    assert gradcheck(lambda t: t.max(axis=()), x, name="max(axis=())")


@given(a=arrays(shapes(min_dims=1), lo=-1e3, hi=1e3).map(lambda v: v.astype(np.float32)))
def test_mean_of_float32_accumulates_sensibly(a):
    """float32 in, float32 out, and close to the float64 mean of the same values."""
    got = mc.tensor(a).mean()
    assert got.dtype == mc.float32
    np.testing.assert_allclose(got.item(), a.astype(np.float64).mean(), rtol=1e-5, atol=1e-3)


def test_full_reductions_hold_zero_d_arrays():
    """sum/max/mean over every axis give 0-d arrays, never NumPy scalars (which cannot be written to)."""
    x = mc.tensor(np.arange(6.0).reshape(2, 3))
    for t in (x.sum(), x.max(), x.mean()):
        assert isinstance(t.data, np.ndarray) and t.shape == ()
