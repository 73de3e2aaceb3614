"""matmul (2-d, batched, broadcast, 1-d), softmax, log_softmax and cross_entropy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import arrays, layouts, leaf, matmul_shapes, shapes

import minicoconv as mc
from minicoconv.nn.functional import cross_entropy
from minicoconv.testing import gradcheck


# ---- matmul ---------------------------------------------------------------------------
@given(data=st.data(), layout=layouts)
def test_matmul(data, layout):
    """Every shape pair np.matmul accepts: (m,k)@(k,n), batched with broadcast batch dims, 1-d either side."""
    shape_a, shape_b = data.draw(matmul_shapes(), label="shapes")
    a, b = data.draw(arrays(shape_a), label="a"), data.draw(arrays(shape_b), label="b")
    x, y = leaf(a, layout), leaf(b, layout)
    want = np.matmul(a, b)
    for out in (x @ y, mc.matmul(x, y), x.matmul(y)):
        assert out.shape == want.shape
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-12, atol=1e-14)
    assert gradcheck(lambda p, q: p @ q, x, y, name="matmul")


@pytest.mark.parametrize("shape_a, shape_b", [
    ((3, 4), (4, 2)), ((4,), (4,)), ((4,), (4, 2)), ((3, 4), (4,)), ((2, 3, 4), (4,)), ((4,), (2, 4, 3)),
    ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (2, 4, 2)),
])
def test_matmul_named_cases(shape_a, shape_b):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    x, y = leaf(a), leaf(b)
    np.testing.assert_allclose((x @ y).numpy(), a @ b, rtol=1e-12)
    assert gradcheck(lambda p, q: p @ q, x, y, name=f"matmul{shape_a}@{shape_b}")


def test_matmul_with_numpy_arrays_on_either_side():
    a, b = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    x, y = leaf(a), leaf(b)
    np.testing.assert_array_equal((a @ y).numpy(), a @ b)  # ndarray @ Tensor -> Tensor.__rmatmul__
    np.testing.assert_array_equal((x @ b).numpy(), a @ b)
    (a @ y).sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), a.T @ np.ones((2, 4)))


def test_matmul_with_a_list_on_the_left():
    y = mc.tensor([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(([1.0, 1.0] @ y).numpy(), [4.0, 6.0])


# ---- softmax / log_softmax ------------------------------------------------------------
def _log_softmax(a: np.ndarray, axis: int) -> np.ndarray:
    shifted = a - a.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(data=st.data(), layout=layouts)
def test_softmax_and_log_softmax(name, data, layout):
    shape = data.draw(shapes(min_dims=1), label="shape")
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    a = data.draw(arrays(shape, lo=-5, hi=5), label="a")
    x = leaf(a, layout)
    want = _log_softmax(a, axis)
    want = np.exp(want) if name == "softmax" else want
    for out in (getattr(x, name)(axis), getattr(mc, name)(x, axis), getattr(mc.nn.functional, name)(x, dim=axis)):
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-12, atol=1e-14)
    assert gradcheck(lambda t: getattr(t, name)(axis), x, name=name)


@given(a=arrays(st.tuples(st.integers(1, 3), st.integers(1, 5)), lo=-5, hi=5))
def test_softmax_rows_sum_to_one_and_match_exp_log_softmax(a):
    x = mc.tensor(a)
    np.testing.assert_allclose(x.softmax().sum(axis=-1).numpy(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(x.log_softmax().exp().numpy(), x.softmax().numpy(), rtol=1e-12)


@pytest.mark.parametrize("dtype", [mc.float32, mc.float64])
def test_softmax_is_stable_for_huge_logits(dtype):
    x = mc.tensor([[1000.0, 1000.0, -1000.0], [-1e30, 0.0, 1e30]], dtype=dtype, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p, logp = x.softmax(), x.log_softmax()
        (p.sum() + logp[:, :2].sum()).backward()
    np.testing.assert_allclose(p.numpy(), [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], atol=1e-7)
    assert np.isfinite(logp.numpy()[:, :2]).all() and np.isfinite(x.grad.numpy()).all()


# ---- cross_entropy --------------------------------------------------------------------
def _cross_entropy(z: np.ndarray, t: np.ndarray) -> float:
    return float(-_log_softmax(z, 1)[np.arange(len(t)), t].mean())


@st.composite
def classification_batches(draw, lo=-5.0, hi=5.0):
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    logits = draw(arrays((n, c), lo=lo, hi=hi))
    targets = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return logits, targets


@given(batch=classification_batches(), layout=layouts,
       target_form=st.sampled_from(["numpy", "list", "tensor", "int32 tensor"]))
def test_cross_entropy(batch, layout, target_form):
    logits, targets = batch
    t = {"numpy": targets, "list": targets.tolist(), "tensor": mc.tensor(targets),
         "int32 tensor": mc.tensor(targets, dtype=mc.int32)}[target_form]
    z = leaf(logits, layout)
    loss = cross_entropy(z, t)
    assert loss.shape == () and loss.dtype == mc.float64
    assert loss.item() == pytest.approx(_cross_entropy(logits, targets), rel=1e-12, abs=1e-14)
    assert gradcheck(lambda u: cross_entropy(u, t), z, name="cross_entropy")


def test_cross_entropy_gradient_is_softmax_minus_onehot_over_n():
    z = leaf(np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]]))
    cross_entropy(z, [0, 2]).backward()
    p = np.exp(_log_softmax(z.numpy(), 1))
    np.testing.assert_allclose(z.grad.numpy(), (p - np.eye(3)[[0, 2]]) / 2, rtol=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    z = mc.tensor([[1e4, -1e4, 0.0], [0.0, 1e4, 0.0]], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = cross_entropy(z, [0, 0])
        loss.backward()
    assert loss.item() == pytest.approx(1e4 / 2)
    assert np.isfinite(z.grad.numpy()).all()


@given(batch=classification_batches(lo=-20.0, hi=20.0))
def test_cross_entropy_matches_torch(torch, batch):
    logits, targets = batch
    z = leaf(logits)
    loss = cross_entropy(z, targets)
    loss.backward()
    tz = torch.tensor(logits, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(tz, torch.tensor(targets))
    tloss.backward()
    assert loss.item() == pytest.approx(tloss.item(), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(z.grad.numpy(), tz.grad.numpy(), rtol=1e-10, atol=1e-14)
