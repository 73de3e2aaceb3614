"""F.expert_weighted_sum and F.expert_scale: CoConv's mixing of its stacked experts.

Forward against the NumPy broadcasting formula (the oracle, and what CoConv2d computed
before these ops), float64 gradients against central finite differences, every layout
of the inputs, the backend's need_* flags, CoConv2d against the formula, and bad
shapes and dtypes rejected with a clear error before any kernel runs.
"""

from __future__ import annotations

import numpy as np
import pytest
from dyn_helpers import make_layer, one_numba_thread  # noqa: F401  (a fixture, requested by name)
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import arrays, layouts, leaf

import minicoconv as mc
from minicoconv.autograd import no_grad
from minicoconv.backend import Backend
from minicoconv.backend.cpu import CPUBackend, expert_kernels
from minicoconv.nn import functional as F
from minicoconv.testing import gradcheck

pytestmark = pytest.mark.usefixtures("one_numba_thread")
cpu = CPUBackend()


# ---- the oracle: NumPy broadcasting ------------------------------------------------------
def weighted_sum_formula(z, r):
    """z (N, G*n*D, H, W), r (N, G, n, D) -> (N, G*D, H, W)."""
    n_batch, n_groups, n_exp, depth = r.shape
    z6 = z.reshape(n_batch, n_groups, n_exp, depth, *z.shape[2:])
    return (z6 * r[..., None, None]).sum(axis=2).reshape(n_batch, n_groups * depth, *z.shape[2:])


def scale_formula(x, r):
    """x (N, G*D, H, W), r (N, G, n, D) -> (N, G*n*D, H, W)."""
    n_batch, n_groups, n_exp, depth = r.shape
    x6 = x.reshape(n_batch, n_groups, 1, depth, *x.shape[2:])
    return (x6 * r[..., None, None]).reshape(n_batch, n_groups * n_exp * depth, *x.shape[2:])


#: (N, G, n, D, H, W), small enough for finite differences
dims = st.tuples(*(st.integers(1, 3) for _ in range(4)), st.integers(1, 4), st.integers(1, 4))


def _shapes(d):
    n_batch, n_groups, n_exp, depth, height, width = d
    stacked = (n_batch, n_groups * n_exp * depth, height, width)
    plain = (n_batch, n_groups * depth, height, width)
    return stacked, plain, (n_batch, n_groups, n_exp, depth)


# ---- forward -----------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(data=st.data(), d=dims, dtype=st.sampled_from([np.float32, np.float64]), layout=layouts)
def test_forward_matches_broadcast_formula(data, d, dtype, layout):
    stacked, plain, routing = _shapes(d)
    z, x = data.draw(arrays(stacked)), data.draw(arrays(plain))
    r = data.draw(arrays(routing, 0.0, 1.0))
    tol = 1e-6 if dtype == np.float32 else 1e-14
    y = F.expert_weighted_sum(leaf(z, layout, dtype=dtype), leaf(r, layout, dtype=dtype))
    assert y.dtype == dtype and y.shape == plain
    np.testing.assert_allclose(y.numpy(), weighted_sum_formula(z, r), rtol=tol, atol=tol)
    xs = F.expert_scale(leaf(x, layout, dtype=dtype), leaf(r, layout, dtype=dtype))
    assert xs.dtype == dtype and xs.shape == stacked
    np.testing.assert_allclose(xs.numpy(), scale_formula(x, r), rtol=tol, atol=tol)


# ---- gradients -----------------------------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(data=st.data(), d=dims, layout=layouts)
def test_expert_weighted_sum_gradcheck(data, d, layout):
    stacked, _, routing = _shapes(d)
    z, r = leaf(data.draw(arrays(stacked)), layout), leaf(data.draw(arrays(routing)), layout)
    gradcheck(F.expert_weighted_sum, z, r, name=f"expert_weighted_sum (N, G, n, D, H, W) = {d}, {layout}")


@settings(max_examples=15, deadline=None)
@given(data=st.data(), d=dims, layout=layouts)
def test_expert_scale_gradcheck(data, d, layout):
    _, plain, routing = _shapes(d)
    x, r = leaf(data.draw(arrays(plain)), layout), leaf(data.draw(arrays(routing)), layout)
    gradcheck(F.expert_scale, x, r, name=f"expert_scale (N, G, n, D, H, W) = {d}, {layout}")


@pytest.mark.parametrize("need", [(True, False), (False, True), (False, False)], ids=["first", "dr", "none"])
def test_backward_computes_only_what_is_needed(need):
    rng = np.random.default_rng(0)
    stacked, plain, routing = _shapes((2, 3, 2, 2, 3, 4))
    z, x, r = rng.normal(size=stacked), rng.normal(size=plain), rng.normal(size=routing)
    gy, gxs = rng.normal(size=plain), rng.normal(size=stacked)
    g6 = gy.reshape(2, 3, 1, 2, 3, 4)
    expected = {
        "weighted_sum": ((r[..., None, None] * g6).reshape(stacked),
                         (z.reshape(2, 3, 2, 2, 3, 4) * g6).sum(axis=(4, 5))),
        "scale": (weighted_sum_formula(gxs, r),
                  (gxs.reshape(2, 3, 2, 2, 3, 4) * x.reshape(2, 3, 1, 2, 3, 4)).sum(axis=(4, 5))),
    }
    got = {"weighted_sum": cpu.expert_weighted_sum_backward(gy, z, r, *need),
           "scale": cpu.expert_scale_backward(gxs, x, r, *need)}
    for op in got:
        for grad, wanted, reference in zip(got[op], need, expected[op]):
            assert (grad is None) == (not wanted), op
            if wanted:
                np.testing.assert_allclose(grad, reference, rtol=1e-13, atol=1e-13, err_msg=op)


@pytest.mark.parametrize("d", [(2, 3, 2, 2, 3, 4), (3, 1, 4, 5, 1, 1), (1, 6, 3, 1, 4, 4)],
                         ids=["grouped", "1x1-maps", "depthwise"])
def test_kernels_match_the_generic_forms(d):
    """The CPU kernels against `Backend`'s generic forms (composed of broadcasting array ops), run on NumPy."""
    rng = np.random.default_rng(3)
    stacked, plain, routing = _shapes(d)
    z, x, r = rng.normal(size=stacked), rng.normal(size=plain), rng.normal(size=routing)
    gy, gxs = rng.normal(size=plain), rng.normal(size=stacked)
    pairs = [("expert_weighted_sum_forward", (z, r)), ("expert_weighted_sum_backward", (gy, z, r)),
             ("expert_scale_forward", (x, r)), ("expert_scale_backward", (gxs, x, r))]
    for name, args in pairs:
        got, expected = getattr(cpu, name)(*args), getattr(Backend, name)(cpu, *args)
        if not isinstance(got, tuple):  # forwards give one array, backwards a pair
            got, expected = (got,), (expected,)
        for a, b in zip(got, expected):
            assert a.shape == b.shape, name
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13, err_msg=name)


def test_float32_matches_float64():
    rng = np.random.default_rng(1)
    stacked, plain, routing = _shapes((3, 2, 4, 3, 5, 5))
    z, r, gy = rng.normal(size=stacked), rng.uniform(size=routing), rng.normal(size=plain)
    grads = {}
    for dtype in (np.float32, np.float64):
        zt, rt = mc.Tensor(z, dtype=dtype, requires_grad=True), mc.Tensor(r, dtype=dtype, requires_grad=True)
        y = F.expert_weighted_sum(zt, rt)
        y.backward(mc.Tensor(gy, dtype=dtype))
        grads[dtype] = [y.numpy(), zt.grad.numpy(), rt.grad.numpy()]
        assert all(a.dtype == dtype for a in grads[dtype])
    for name, a, b in zip(["y", "dz", "dr"], grads[np.float32], grads[np.float64]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)


# ---- CoConv2d uses them ---------------------------------------------------------------------
@pytest.mark.parametrize("cin, cout, groups, attention",
                         [(3, 4, 1, "output"), (4, 6, 2, "output"), (3, 3, 3, "output"), (3, 4, 1, "input")],
                         ids=["groups1", "grouped", "depthwise", "input-attention"])
def test_coconv_forward_is_the_broadcast_formula(cin, cout, groups, attention):
    """CoConv2d's output equals sum_i r_i * BN_i(conv(x, W_i)), written with broadcasting."""
    layer = make_layer("coconv", cin, cout, groups=groups, experts=3, attention=attention).double()
    x = mc.Tensor(np.random.default_rng(2).normal(size=(2, cin, 5, 4)))
    with no_grad():
        r = layer.routing_weights(x).numpy()                                          # (N, n, C' or C)
        if attention == "output":
            z = layer.bn(F.conv2d(x, layer.stacked_weight(), None, 1, 1, groups=groups)).numpy()
            g = groups
            r_stacked = r.reshape(2, 3, g, cout // g).transpose(0, 2, 1, 3)           # (N, g, n, C'/g)
            expected = weighted_sum_formula(z, r_stacked)
        else:
            xs = scale_formula(x.numpy(), r.reshape(2, 1, 3, cin))
            z = layer.bn(F.conv2d(mc.Tensor(xs), layer.stacked_weight(), None, 1, 1, groups=3 * groups)).numpy()
            expected = z.reshape(2, 3, cout, 5, 4).sum(axis=1)
        got = layer(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# ---- errors ---------------------------------------------------------------------------------
@pytest.fixture
def no_kernels(monkeypatch):
    """Make any kernel launch fail the test: errors must come from validation first."""
    def launched(*args):
        raise AssertionError("a kernel ran before the arguments were validated")

    monkeypatch.setattr(expert_kernels, "_sum_over_experts_kernel", launched)
    monkeypatch.setattr(expert_kernels, "_scale_per_expert_kernel", launched)


def _t(shape, dtype=np.float64):
    return mc.Tensor(np.ones(shape), dtype=dtype)


@pytest.mark.parametrize("fn, a_shape, r_shape, message", [
    (F.expert_weighted_sum, (2, 12, 3, 3), (2, 2, 3, 3), "z must have G\\*n\\*D = 18 channels"),
    (F.expert_weighted_sum, (2, 12, 3, 3), (3, 1, 4, 3), "routing weights r must be \\(N, G, n, D\\) with N = 2"),
    (F.expert_weighted_sum, (2, 12, 3, 3), (2, 4, 3), "routing weights r must be \\(N, G, n, D\\)"),
    (F.expert_weighted_sum, (2, 12, 3), (2, 1, 4, 3), "input must be 4-d"),
    (F.expert_weighted_sum, (2, 0, 3, 3), (2, 1, 0, 3), "n >= 1"),
    (F.expert_scale, (2, 5, 3, 3), (2, 1, 4, 3), "x must have G\\*D = 3 channels"),
    (F.expert_scale, (2, 3, 3, 3), (1, 1, 4, 3), "with N = 2"),
], ids=["channels", "batch", "r-3d", "z-3d", "no-experts", "scale-channels", "scale-batch"])
def test_bad_shapes_are_a_value_error(no_kernels, fn, a_shape, r_shape, message):
    with pytest.raises(ValueError, match=message):
        fn(_t(a_shape), _t(r_shape))


def test_bad_dtypes_are_rejected_before_any_kernel(no_kernels):
    with pytest.raises(TypeError, match="float32 or float64"):  # as every F function that takes maps
        F.expert_weighted_sum(mc.Tensor(np.ones((1, 4, 2, 2), dtype=np.int64)), _t((1, 1, 4, 1)))
    with pytest.raises(TypeError, match="dtype mismatch"):
        F.expert_scale(_t((1, 2, 2, 2), np.float32), _t((1, 1, 3, 2)))


@pytest.mark.parametrize("call, message", [
    (lambda: cpu.expert_weighted_sum_forward(np.ones((1, 4, 2, 2), np.float32), np.ones((1, 1, 4, 1))),
     "expected z of dtype float64 \\(like r\\), got float32"),
    (lambda: cpu.expert_weighted_sum_forward(np.ones((1, 4, 2, 2), np.int32), np.ones((1, 1, 4, 1), np.int32)),
     "expected r of dtype float32 or float64, got int32"),
    (lambda: cpu.expert_weighted_sum_forward([[1.0]], np.ones((1, 1, 4, 1))),
     "expected z to be a numpy.ndarray, got list"),
    (lambda: cpu.expert_weighted_sum_forward(np.ones((1, 4, 2, 2)), np.ones((1, 1, 3, 1))),
     "expected z of shape \\(1, 3, H, W\\)"),
    (lambda: cpu.expert_weighted_sum_backward(np.ones((1, 1, 2, 3)), np.ones((1, 4, 2, 2)), np.ones((1, 1, 4, 1))),
     "expected gy of shape \\(1, 1, 2, 2\\)"),
    (lambda: cpu.expert_scale_forward(np.ones((1, 2, 2, 2)), np.ones((1, 1, 4, 1))),
     "expected x of shape \\(1, 1, 2, 2\\)"),
    (lambda: cpu.expert_scale_backward(np.ones((1, 4, 2, 2)), np.ones((1, 1, 3, 3)), np.ones((1, 1, 4, 1))),
     "expected x of shape \\(1, 1, 2, 2\\)"),
    (lambda: cpu.expert_scale_backward(np.ones((1, 4, 2, 2)), np.ones((1, 1, 2, 2)), np.ones((1, 4))),
     "expected r of shape \\(N, G, n, D\\)"),
], ids=["dtype-mismatch", "int", "not-an-array", "stacked-channels", "gy-size", "x-channels", "x-size", "r-2d"])
def test_backend_rejects_bad_arguments_before_any_kernel(no_kernels, call, message):
    with pytest.raises(ValueError, match=message):
        call()
