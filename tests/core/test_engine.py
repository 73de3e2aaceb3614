"""The autodiff engine: accumulation, graph shapes, grad modes, leaves, un-broadcasting, PyTorch parity."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import arrays, broadcast_pairs, leaf

import minicoconv as mc
from minicoconv.autograd import Function, topological_order, unbroadcast
from minicoconv.backend import get_backend
from minicoconv.nn.functional import cross_entropy
from minicoconv.testing import gradcheck


def f64(values, requires_grad=True) -> mc.Tensor:
    return mc.tensor(values, dtype=mc.float64, requires_grad=requires_grad)


# ---- accumulation and graph shapes ----------------------------------------------------
def test_tensor_used_several_times_accumulates():
    x = f64([1.0, -2.0, 3.0])
    (x * x + x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 2 * np.array([1.0, -2.0, 3.0]) + 1)


def test_diamond_graph():
    """x -> a -> (b, c) -> d: a's gradient is the sum over both paths, and a's backward runs once."""
    x = f64([0.5, -1.0])
    a = x * 2.0
    b, c = a * 3.0, a.tanh()
    d = (b + c).sum()
    d.backward()
    av = 2 * np.array([0.5, -1.0])
    np.testing.assert_allclose(x.grad.numpy(), 2 * (3 + (1 - np.tanh(av) ** 2)), rtol=1e-14)
    assert gradcheck(lambda t: ((t * 2.0) * 3.0 + (t * 2.0).tanh()).sum(), f64([0.5, -1.0]), name="diamond")


def test_each_backward_runs_once_per_node():
    calls = []

    class Counted(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 1.0

        @staticmethod
        def backward(ctx, g):
            calls.append(g.copy())
            return g

    x = f64([1.0, 2.0])
    y = Counted.apply(x)
    (y * 2.0 + y * 3.0 + y).sum().backward()
    assert len(calls) == 1  # the three uses are summed first, then backward is called once
    np.testing.assert_array_equal(calls[0], [6.0, 6.0])


def test_grad_accumulates_across_backward_calls_on_separate_graphs():
    x = f64([1.0, 2.0])
    (x * 2.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 2.0 + 2 * np.array([1.0, 2.0]))
    x.grad = None  # the way to reset
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


def test_ten_thousand_op_chain_backpropagates_without_recursion():
    x = f64([1.0])
    y = x
    for _ in range(10_000):
        y = y * 1.0001 + 0.0
    y.sum().backward()
    assert x.grad.item() == pytest.approx(1.0001 ** 10_000, rel=1e-9)


def test_deep_graph_can_be_dropped_without_backward():
    y = f64([1.0])
    for _ in range(10_000):
        y = y + 1.0
    del y  # deallocating a 20,000-object chain must not overflow the C stack


def test_backward_twice_through_the_same_graph_raises():
    x = f64([1.0, 2.0])
    y = (x.exp() * 2.0).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"backward through Sum a second time.*freed"):
        y.backward()
    z = x.exp()
    w = z * 3.0
    w.sum().backward()
    with pytest.raises(RuntimeError, match="backward through Mul a second time"):
        (w + 1.0).sum().backward()  # a new head on an already-used graph


def test_saved_arrays_are_freed_after_backward():
    x = f64([1.0, 2.0])
    y = x * x
    ctx = y._ctx
    assert ctx.saved and ctx.inputs == (x, x)
    y.sum().backward()
    assert ctx.freed and ctx.saved == () and ctx.inputs is None


def test_topological_order_lists_inputs_before_users():
    x = f64([1.0])
    a = x * 2.0
    b = a + x
    c = b * a
    order = topological_order(c)
    pos = {id(t): i for i, t in enumerate(order)}
    assert [id(t) for t in (x, a, b, c)] == sorted(pos, key=pos.get)


# ---- grad modes -----------------------------------------------------------------------
def test_no_grad_records_nothing():
    x = f64([1.0, 2.0])
    with mc.no_grad():
        assert not mc.is_grad_enabled()
        y = (x * 2.0).exp().sum()
        with mc.enable_grad():
            assert mc.is_grad_enabled()
            z = x * 2.0
    assert mc.is_grad_enabled()
    assert not y.requires_grad and y._ctx is None and y.is_leaf
    assert z.requires_grad and z._ctx is not None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_restores_the_mode_after_an_exception_and_works_as_a_decorator():
    with pytest.raises(KeyError), mc.no_grad():
        raise KeyError("fails inside no_grad")
    assert mc.is_grad_enabled()

    @mc.no_grad()
    def infer(t):
        return t * 2.0

    assert not infer(f64([1.0])).requires_grad


def test_no_grad_is_thread_local():
    seen = []
    with mc.no_grad():
        worker = threading.Thread(target=lambda: seen.append(mc.is_grad_enabled()))
        worker.start()
        worker.join()
    assert seen == [True]


def test_outputs_require_grad_only_when_an_input_does():
    x, c = f64([1.0]), f64([2.0], requires_grad=False)
    assert not (c * 2.0).requires_grad
    y = x * c
    assert y.requires_grad and not y.is_leaf
    y.backward(f64([1.0], requires_grad=False))
    assert c.grad is None
    np.testing.assert_array_equal(x.grad.numpy(), [2.0])


# ---- leaves, detach, retain_grad --------------------------------------------------------
def test_leaf_and_non_leaf():
    x = f64([1.0, 2.0])
    h = x * 3.0
    y = (h * h).sum()
    assert x.is_leaf and not h.is_leaf and not y.is_leaf
    y.backward()
    assert h.grad is None  # non-leaves do not keep gradients by default
    np.testing.assert_array_equal(x.grad.numpy(), 18 * np.array([1.0, 2.0]))


def test_retain_grad_keeps_a_non_leaf_gradient():
    x = f64([1.0, 2.0])
    h = (x * 3.0).retain_grad()
    y = (h * h).sum()
    y.retain_grad()
    y.backward()
    np.testing.assert_array_equal(h.grad.numpy(), 2 * 3 * np.array([1.0, 2.0]))
    assert y.grad.item() == 1.0
    np.testing.assert_array_equal(x.grad.numpy(), 18 * np.array([1.0, 2.0]))


def test_detach_cuts_the_graph_but_shares_the_data():
    x = f64([1.0, 2.0])
    d = (x * 2.0).detach()
    assert d.is_leaf and not d.requires_grad and d._ctx is None
    y = (x * d).sum()  # d is a constant here
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])
    e = x.detach()
    assert np.shares_memory(e.data, x.data)


def test_backward_on_a_leaf_and_with_an_explicit_gradient():
    x = f64([[1.0, 2.0]])
    x.backward(f64([[3.0, 4.0]], requires_grad=False))
    np.testing.assert_array_equal(x.grad.numpy(), [[3.0, 4.0]])
    y = f64([1.0, 2.0, 3.0])
    (y * y).backward(np.array([1.0, 0.0, -1.0]))  # an ndarray is accepted as the gradient too
    np.testing.assert_array_equal(y.grad.numpy(), [2.0, 0.0, -6.0])


def test_grad_is_a_fresh_array_not_an_alias_of_the_upstream_gradient():
    x = f64([1.0, 2.0])
    g = f64([1.0, 1.0], requires_grad=False)
    x.backward(g)
    x.grad.data += 1.0
    np.testing.assert_array_equal(g.numpy(), [1.0, 1.0])


def test_leaves_sharing_one_upstream_gradient_get_separate_arrays():
    # add's backward hands the same array to both inputs: at most one of them may keep it
    a, b = f64([1.0, 2.0]), f64([3.0, 4.0])
    (a + b).backward(np.array([1.0, 1.0]))
    assert not np.shares_memory(a.grad.data, b.grad.data)
    a.grad.data += 1.0
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0])


def test_in_place_accumulation_leaves_other_gradients_alone(monkeypatch):
    """Sums of several uses are added in place when nothing else holds the partial sum; a
    retained gradient and the leaves' gradients must come out as if every sum were new."""
    from minicoconv.backend.cpu import backend as cpu_backend

    in_place = []
    original = cpu_backend._accumulate

    def spy(total, g):
        out = original(total, g)
        in_place.append(out is total)
        return out

    monkeypatch.setattr(cpu_backend.CPUBackend, "accumulate", staticmethod(spy))
    x = f64([1.0, -2.0, 3.0])
    a = x * 2.0
    a.retain_grad()
    b = a + a                     # the same upstream array for both uses of a
    c = a * a                     # a third use of a
    (b * 3.0 + c + a).sum().backward()
    xv = np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(a.grad.numpy(), 3.0 * 2 + 2 * (2 * xv) + 1)
    np.testing.assert_allclose(x.grad.numpy(), 2 * (7 + 4 * xv))
    assert any(in_place), "the in-place path should run on this graph"


def test_in_place_accumulation_matches_finite_differences():
    def f(x, w):
        h = x * w
        return ((h + h) * h + (h * x).exp() + h.sum()).sum()

    rng = np.random.default_rng(3)
    assert gradcheck(f, f64(rng.standard_normal((2, 3)) * 0.3), f64(rng.standard_normal((2, 3)) * 0.3))


# ---- un-broadcasting --------------------------------------------------------------------
def test_unbroadcast_column_plus_row():
    a, b = f64(np.ones((3, 1))), f64(np.ones((1, 4)))
    (a + b).sum().backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (1, 4)
    np.testing.assert_array_equal(a.grad.numpy(), np.full((3, 1), 4.0))
    np.testing.assert_array_equal(b.grad.numpy(), np.full((1, 4), 3.0))


def test_bias_gradient_sums_over_the_batch():
    x = f64(np.arange(12.0).reshape(3, 4), requires_grad=False)
    bias = f64(np.zeros(4))
    (x + bias).backward(f64(np.arange(12.0).reshape(3, 4), requires_grad=False))
    np.testing.assert_array_equal(bias.grad.numpy(), np.arange(12.0).reshape(3, 4).sum(0))


@given(data=st.data())
def test_unbroadcast_sums_exactly_the_broadcast_axes(data):
    shape_a, shape_b = data.draw(broadcast_pairs(max_dims=4))
    out_shape = np.broadcast_shapes(shape_a, shape_b)
    g = data.draw(arrays(out_shape))
    for shape in (shape_a, shape_b):
        # the reference: broadcast_to's adjoint is the sum over what broadcasting added or stretched
        lead = len(out_shape) - len(shape)
        axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and out_shape[lead + i] != 1)
        want = g.sum(axis=axes, keepdims=True).reshape(shape)
        got = unbroadcast(get_backend("cpu"), g, shape, "test")
        assert got.shape == shape
        np.testing.assert_allclose(got, want, rtol=1e-12)


@given(data=st.data())
def test_every_broadcast_gradient_has_its_input_shape(data):
    shape_a, shape_b = data.draw(broadcast_pairs(max_dims=4))
    x, y = leaf(data.draw(arrays(shape_a))), leaf(data.draw(arrays(shape_b)))
    ((x * y + x - y) / 3.0).sum().backward()
    assert x.grad.shape == shape_a and y.grad.shape == shape_b


# ---- custom functions -----------------------------------------------------------------
class Cube(Function):
    """y = a**3, written as a user would, with needs_input_grad honoured."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * a * a

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return 3 * a * a * g if ctx.needs_input_grad[0] else None


@given(a=arrays((3, 2)))
def test_custom_function(a):
    x = leaf(a)
    y = Cube.apply(x)
    assert y._ctx.fn is Cube and y._ctx.needs_input_grad == (True,)
    np.testing.assert_allclose(y.numpy(), a ** 3, rtol=1e-12)
    assert gradcheck(Cube.apply, x)


# ---- PyTorch parity for composite expressions -----------------------------------------
def _compare_with_torch(torch, fn_mc, fn_torch, arrays_in, rtol=1e-10):
    xs = [leaf(a) for a in arrays_in]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays_in]
    out, tout = fn_mc(*xs), fn_torch(*ts)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=rtol, atol=1e-12)
    g = np.random.default_rng(1).standard_normal(out.shape)
    out.backward(mc.tensor(g, dtype=mc.float64))
    tout.backward(torch.tensor(g))
    for i, (x, t) in enumerate(zip(xs, ts)):
        np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=rtol, atol=1e-12, err_msg=f"input {i}")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mlp_with_cross_entropy_matches_torch(torch, seed):
    rng = np.random.default_rng(seed)
    x, w1, b1, w2, b2 = (rng.standard_normal(s) for s in [(5, 4), (4, 6), (6,), (6, 3), (3,)])
    targets = rng.integers(0, 3, size=5)

    def mlp_mc(x, w1, b1, w2, b2):
        return cross_entropy((x @ w1 + b1).tanh() @ w2 + b2, targets)

    def mlp_torch(x, w1, b1, w2, b2):
        return torch.nn.functional.cross_entropy(torch.tanh(x @ w1 + b1) @ w2 + b2, torch.tensor(targets))

    _compare_with_torch(torch, mlp_mc, mlp_torch, [x, w1, b1, w2, b2])


@pytest.mark.parametrize("seed", [0, 1])
def test_normalise_and_softmax_matches_torch(torch, seed):
    """A batch-norm-like expression: mean and biased variance over axes (0, 2), broadcast back."""
    rng = np.random.default_rng(seed)
    x, gamma = rng.standard_normal((4, 3, 5)), rng.standard_normal((1, 3, 1))

    def f_mc(x, gamma):
        mu, var = x.mean((0, 2), keepdims=True), x.var((0, 2), keepdims=True, correction=0)
        return ((x - mu) / (var + 1e-5).sqrt() * gamma).relu().log_softmax(1)

    def f_torch(x, gamma):
        mu, var = x.mean((0, 2), keepdim=True), x.var((0, 2), keepdim=True, correction=0)
        return torch.log_softmax(torch.relu((x - mu) / (var + 1e-5).sqrt() * gamma), 1)

    _compare_with_torch(torch, f_mc, f_torch, [x, gamma])


@pytest.mark.parametrize("seed", [0, 1])
def test_indexing_and_elementwise_mix_matches_torch(torch, seed):
    rng = np.random.default_rng(seed)
    a, b, c = rng.standard_normal((3, 4)), rng.standard_normal((4,)), rng.standard_normal((3, 1))

    def f_mc(a, b, c):
        m = mc.maximum(a, b) * mc.sigmoid(c) - (a.exp() / (1.0 + c.abs())) ** 2
        top = mc.cat([m[::-1, 1:], m[[0, 0, 2]][:, :3]], axis=0)
        return mc.where(top > 0, top, 0.1 * top).max(axis=1) + mc.stack([b[:3]] * 6).sum(1) / 2.0

    def f_torch(a, b, c):
        m = torch.maximum(a, b) * torch.sigmoid(c) - (a.exp() / (1.0 + c.abs())) ** 2
        top = torch.cat([m.flip(0)[:, 1:], m[[0, 0, 2]][:, :3]], dim=0)
        return torch.where(top > 0, top, 0.1 * top).amax(dim=1) + torch.stack([b[:3]] * 6).sum(1) / 2.0

    _compare_with_torch(torch, f_mc, f_torch, [a, b, c])


def test_the_callers_gradient_and_pass_through_gradients_are_never_written():
    """Ownership is explicit (autograd/engine.py): the root's gradient is the caller's, and an op
    that hands its incoming gradient on (add, reshape) shares it; only sums the engine made are
    accumulated in place."""
    x = f64([[1.0, 2.0], [3.0, 4.0]])
    g = np.array([1.0, -1.0, 2.0, 0.5])
    kept = g.copy()
    y = (x.reshape(4) + x.reshape(4)) + x.reshape(4)   # x used three times, every gradient passed on as is
    y.backward(g)
    np.testing.assert_array_equal(g, kept)
    np.testing.assert_array_equal(x.grad.numpy(), 3 * kept.reshape(2, 2))
