"""The user-facing Tensor API: constructors, dtype rules, random state, conversions, metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import arrays, shapes

import minicoconv as mc
from minicoconv.nn.functional import cross_entropy


# ---- tensor() and dtype defaults ------------------------------------------------------
@pytest.mark.parametrize("data, dtype", [
    (1.5, mc.float32), ([1.0, 2.0], mc.float32), ([[1, 2.5]], mc.float32),  # any Python float -> float32
    (3, mc.int64), ([1, 2, 3], mc.int64),                                   # Python ints -> int64
    (True, mc.bool_), ([True, False], mc.bool_),
    (np.array([1.0, 2.0]), mc.float64),                                     # NumPy arrays keep their dtype
    (np.array([1.0], dtype=np.float32), mc.float32), (np.array([1, 2], dtype=np.int32), mc.int32),
    (np.float64(2.0), mc.float64), (np.arange(3), mc.int64),
])
def test_tensor_dtype_defaults(data, dtype):
    t = mc.tensor(data)
    assert t.dtype == dtype
    np.testing.assert_array_equal(t.numpy(), np.asarray(data, dtype=dtype))


@pytest.mark.parametrize("dtype", [mc.float64, np.float64, "float64", "float32", mc.int32, np.int64])
def test_tensor_with_explicit_dtype(dtype):
    t = mc.tensor([1, 2], dtype=dtype)
    assert t.dtype == np.dtype(dtype)


def test_tensor_copies_its_input_and_accepts_tensors():
    source = np.array([1.0, 2.0])
    t = mc.tensor(source)
    source[0] = 99.0
    assert t.tolist() == [1.0, 2.0]
    u = mc.tensor(t, requires_grad=True)
    assert u.dtype == mc.float64 and u.requires_grad and u.is_leaf and not np.shares_memory(u.data, t.data)
    v = mc.Tensor([[1, 2], [3, 4]], dtype=mc.float32)  # the class constructor takes the same arguments
    assert v.shape == (2, 2) and v.dtype == mc.float32 and v.device == "cpu"


# ---- constructors ---------------------------------------------------------------------
@pytest.mark.parametrize("make, value", [(mc.zeros, 0.0), (mc.ones, 1.0)])
def test_zeros_ones(make, value):
    for t in (make(2, 3), make((2, 3)), make([2, 3])):
        assert t.shape == (2, 3) and t.dtype == mc.float32 and not t.requires_grad
        assert (t.numpy() == value).all()
    assert make().shape == () and make(4).shape == (4,) and make(0, 2).shape == (0, 2)
    t = make(3, dtype=mc.float64, requires_grad=True)
    assert t.dtype == mc.float64 and t.requires_grad and t.is_leaf
    assert make(2, dtype=mc.int64).dtype == mc.int64


def test_full():
    t = mc.full((2, 2), 7.5)
    assert t.dtype == mc.float32 and t.tolist() == [[7.5, 7.5], [7.5, 7.5]]
    assert mc.full(3, -1, dtype=mc.int64).tolist() == [-1, -1, -1]
    assert mc.full((), 2.0, dtype=mc.float64, requires_grad=True).requires_grad


@pytest.mark.parametrize("args, kwargs, want", [
    ((5,), {}, np.arange(5)), ((2, 7, 2), {}, np.arange(2, 7, 2)), ((0.0, 1.0, 0.25), {}, np.arange(0, 1, 0.25)),
    ((3,), {"dtype": mc.float64}, np.arange(3.0)), ((1, 2, 0.5), {}, np.arange(1, 2, 0.5)),
])
def test_arange(args, kwargs, want):
    t = mc.arange(*args, **kwargs)
    expected_dtype = kwargs.get("dtype", mc.float32 if want.dtype.kind == "f" else mc.int64)
    assert t.dtype == expected_dtype
    np.testing.assert_array_equal(t.numpy(), want.astype(expected_dtype))


@pytest.mark.parametrize("make", [mc.randn, mc.rand])
def test_random_constructors(make):
    mc.manual_seed(0)
    t = make(200, 50)
    assert t.shape == (200, 50) and t.dtype == mc.float32
    assert make((3, 4), dtype=mc.float64).dtype == mc.float64
    assert make(2, requires_grad=True).requires_grad
    values = t.numpy()
    if make is mc.rand:
        assert values.min() >= 0.0 and values.max() < 1.0 and abs(values.mean() - 0.5) < 0.02
    else:
        assert abs(values.mean()) < 0.02 and abs(values.std() - 1.0) < 0.02


@pytest.mark.parametrize("make, value", [(mc.zeros_like, 0.0), (mc.ones_like, 1.0)])
def test_like_constructors(make, value):
    ref = mc.randn(2, 3, dtype=mc.float64)
    t = make(ref)
    assert t.shape == (2, 3) and t.dtype == mc.float64 and t.device == "cpu" and not t.requires_grad
    assert (t.numpy() == value).all()
    assert make(ref, requires_grad=True).requires_grad
    assert make(mc.arange(4)).dtype == mc.int64


# ---- random state ---------------------------------------------------------------------
def test_manual_seed_makes_draws_reproducible():
    mc.manual_seed(1234)
    a = (mc.randn(3, 4).numpy(), mc.rand(5).numpy())
    mc.manual_seed(1234)
    b = (mc.randn(3, 4).numpy(), mc.rand(5).numpy())
    mc.manual_seed(1235)
    c = mc.randn(3, 4).numpy()
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c)


def test_rng_state_round_trip():
    mc.manual_seed(7)
    mc.randn(10)
    state = mc.get_rng_state()
    json.loads(json.dumps(state))  # serialisable, so checkpoints can store it
    first = mc.randn(4, dtype=mc.float64).numpy()
    mc.manual_seed(99)
    mc.set_rng_state(state)
    np.testing.assert_array_equal(mc.randn(4, dtype=mc.float64).numpy(), first)
    mc.set_rng_state(json.loads(json.dumps(state)))  # also after a trip through JSON
    np.testing.assert_array_equal(mc.randn(4, dtype=mc.float64).numpy(), first)


# ---- conversions ----------------------------------------------------------------------
def test_item_numpy_tolist():
    t = mc.tensor([[1.5, 2.0], [3.0, 4.0]])
    assert isinstance(t.numpy(), np.ndarray) and t.numpy().dtype == np.float32
    assert t.tolist() == [[1.5, 2.0], [3.0, 4.0]]
    assert mc.tensor([2.5]).item() == 2.5 and isinstance(mc.tensor([2.5]).item(), float)
    assert mc.tensor(3).item() == 3 and isinstance(mc.tensor(3).item(), int)
    assert t.sum().item() == 10.5 and t[1, 0].item() == 3.0
    assert mc.tensor(True).item() is True


def test_repr():
    assert repr(mc.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(mc.tensor([1.0, 2.0], dtype=mc.float64, requires_grad=True)) == (
        "tensor([1., 2.], dtype=float64, requires_grad=True)")
    assert repr(mc.tensor(3)) == "tensor(3, dtype=int64)"
    assert repr(mc.tensor([[1, 2], [3, 4]], dtype=mc.float32)) == "tensor([[1., 2.],\n        [3., 4.]])"


def test_to_device_and_dtype():
    x = mc.ones(2, 3, requires_grad=True)
    assert x.to("cpu") is x and x.to(device="cpu") is x and x.to(dtype=mc.float32) is x
    for y in (x.to(mc.float64), x.to(dtype="float64"), x.to("cpu", mc.float64), x.double()):
        assert y.dtype == mc.float64 and y.requires_grad and y.shape == (2, 3)
    assert x.double().float().dtype == mc.float32
    assert x.float() is x


def test_metadata():
    t = mc.zeros(2, 3, 4)
    assert t.shape == (2, 3, 4) and t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4
    assert t.ndim == 3 and t.numel() == 24 and len(t) == 2 and t.device == "cpu"
    assert t.dtype == mc.float32 and str(t.dtype) == "float32"
    assert mc.tensor(1.0).shape == () and mc.tensor(1.0).numel() == 1


def test_public_names():
    for name in mc.__all__:
        assert hasattr(mc, name), name


# ---- float32 stays float32 ------------------------------------------------------------
# Each case takes float32 leaves x (2, 3) with values in [0.5, 1.5], w (3, 2), v (3,) and returns a tensor.
FLOAT32_CASES = {
    "x + w.T": lambda x, w, v: x + w.T, "x - v": lambda x, w, v: x - v, "v * x": lambda x, w, v: v * x,
    "x / v": lambda x, w, v: x / v, "x ** v": lambda x, w, v: x ** v,
    "x + 1": lambda x, w, v: x + 1, "1 + x": lambda x, w, v: 1 + x, "x - 0.5": lambda x, w, v: x - 0.5,
    "0.5 - x": lambda x, w, v: 0.5 - x, "x * 2.5": lambda x, w, v: x * 2.5, "3 * x": lambda x, w, v: 3 * x,
    "x / 3": lambda x, w, v: x / 3, "2.0 / x": lambda x, w, v: 2.0 / x, "x ** 2": lambda x, w, v: x ** 2,
    "x ** 0.5": lambda x, w, v: x ** 0.5, "2 ** x": lambda x, w, v: 2 ** x, "1.5 ** x": lambda x, w, v: 1.5 ** x,
    "x * np.float64(2)": lambda x, w, v: x * np.float64(2.0), "np.float64(2) - x": lambda x, w, v: np.float64(2) - x,
    "-x": lambda x, w, v: -x, "exp": lambda x, w, v: x.exp(), "log": lambda x, w, v: x.log(),
    "sqrt": lambda x, w, v: x.sqrt(), "abs": lambda x, w, v: (x - 1.01).abs(),
    "relu": lambda x, w, v: (x - 1.01).relu(),
    "sigmoid": lambda x, w, v: x.sigmoid(), "tanh": lambda x, w, v: x.tanh(),
    "maximum": lambda x, w, v: mc.maximum(x, v), "minimum(x, 1.0)": lambda x, w, v: mc.minimum(x, 1.0),
    "where": lambda x, w, v: mc.where(x > 1.0, x, 0.5), "where(x, v)": lambda x, w, v: mc.where(x > 1.0, v, x),
    "matmul": lambda x, w, v: x @ w, "matmul 1-d": lambda x, w, v: x @ v, "1-d matmul": lambda x, w, v: v @ w,
    "batched matmul": lambda x, w, v: x.reshape(1, 2, 3) @ w, "sum": lambda x, w, v: x.sum(),
    "sum(0)": lambda x, w, v: x.sum(0), "mean": lambda x, w, v: x.mean(1, keepdims=True),
    "max": lambda x, w, v: x.max(), "min(1)": lambda x, w, v: x.min(1), "var": lambda x, w, v: x.var(0),
    "reshape": lambda x, w, v: x.reshape(3, 2), "permute": lambda x, w, v: x.permute(1, 0),
    "transpose": lambda x, w, v: x.transpose(0, 1), "expand": lambda x, w, v: x.expand(4, 2, 3),
    "flatten": lambda x, w, v: x.flatten(), "unsqueeze": lambda x, w, v: x.unsqueeze(1).squeeze(),
    "getitem slice": lambda x, w, v: x[:, ::-2], "getitem ints": lambda x, w, v: x[[0, 0, 1]],
    "getitem mask": lambda x, w, v: x[x > 1.0], "cat": lambda x, w, v: mc.cat([x, w.T], 0),
    "stack": lambda x, w, v: mc.stack([x, x]), "pad": lambda x, w, v: x.pad(((1, 1), (0, 2)), 0.5),
    "softmax": lambda x, w, v: x.softmax(0), "log_softmax": lambda x, w, v: x.log_softmax(),
    "cross_entropy": lambda x, w, v: cross_entropy(x, [2, 0]), "to(float32)": lambda x, w, v: x.to(mc.float32),
    "double().float()": lambda x, w, v: x.double().float() * 2,
}


@pytest.mark.parametrize("name", FLOAT32_CASES)
def test_float32_stays_float32(name):
    rng = np.random.default_rng(0)
    x, w, v = (mc.tensor(rng.uniform(0.5, 1.5, s).astype(np.float32), requires_grad=True)
               for s in [(2, 3), (3, 2), (3,)])
    out = FLOAT32_CASES[name](x, w, v)
    assert out.dtype == mc.float32, f"{name}: output is {out.dtype}"
    out.backward(mc.ones_like(out))
    grads = {n: t.grad for n, t in zip("xwv", (x, w, v)) if t.grad is not None}
    assert grads, f"{name}: no gradient reached any input"
    for n, g in grads.items():
        assert g.dtype == mc.float32, f"{name}: gradient of {n} is {g.dtype}"


@given(a=arrays(shapes(), lo=-3, hi=3, dtype=np.float32), s=st.floats(-3, 3) | st.integers(-3, 3))
def test_float32_with_any_python_scalar(a, s):
    x = mc.tensor(a, requires_grad=True)
    out = (x * s + s) / (1.0 + (s - x).abs()) - x.maximum(s)
    assert out.dtype == mc.float32
    out.sum().backward()
    assert x.grad.dtype == mc.float32
