"""Winograd F(2x2, 3x3) convolution: its matrices, the reference form, the CPU kernels, precision.

- the 1-d identities behind F(2, 3) and F(3, 2), checked on random vectors;
- the reference form (backend/reference/winograd.py) against the reference im2col convolution;
- the CPU path (forced with set_conv_algorithm("winograd")) against the reference backend in
  float64, with and without the saved tiles, in several batch blocks, with bias, empty batch;
- float32 error, max-normalised, against a float64 direct convolution, for y, dX and dW, at every
  3x3 stride-1 shape of the models and at adversarial value ranges: <= 1e-4 (the bound stated in
  docs/performance.md);
- float64 gradchecks (hypothesis) through the public F.conv2d with Winograd forced;
- the "auto" rule and the forcing switch, and grouped / depthwise convs left on their paths.
"""

from __future__ import annotations

from contextlib import contextmanager

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import arrays, leaf

from minicoconv.backend.cpu import conv_kernels as cpu
from minicoconv.backend.cpu import winograd
from minicoconv.backend.reference import conv as ref
from minicoconv.backend.reference import winograd as ref_winograd
from minicoconv.nn import functional as F
from minicoconv.testing import gradcheck

BOUND = 1e-4  # float32 error, max-normalised (docs/performance.md)


@contextmanager
def algorithm(name: str):
    """set_conv_algorithm(name) inside the block, the previous setting after."""
    previous = winograd.set_conv_algorithm(name)
    try:
        yield
    finally:
        winograd.set_conv_algorithm(previous)


@pytest.fixture
def force():
    """set_conv_algorithm for the test (callable any number of times), restored after."""
    previous = winograd.get_conv_algorithm()
    yield winograd.set_conv_algorithm
    winograd.set_conv_algorithm(previous)


def rel_err(a, b) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(b).max(), 1e-300))


# ---- the transform matrices ------------------------------------------------------------
def test_f23_and_f32_compute_the_1d_correlations():
    rng = np.random.default_rng(0)
    for _ in range(20):
        d, g3, g2 = rng.standard_normal(4), rng.standard_normal(3), rng.standard_normal(2)
        y = ref_winograd.AT @ ((ref_winograd.G @ g3) * (ref_winograd.BT @ d))
        np.testing.assert_allclose(y, [d[0:3] @ g3, d[1:4] @ g3], rtol=0, atol=1e-13)
        y3 = ref_winograd.AT3 @ ((ref_winograd.G2 @ g2) * (ref_winograd.BT3 @ d))
        np.testing.assert_allclose(y3, [d[i:i + 2] @ g2 for i in range(3)], rtol=0, atol=1e-13)
        # the dW form on the forward's tiles: G2 with its last row negated, B instead of B3
        y3b = ref_winograd.AT3 @ ((ref_winograd.G2_FWD @ g2) * (ref_winograd.BT @ d))
        np.testing.assert_allclose(y3b, y3, rtol=0, atol=1e-13)


# ---- reference form and CPU kernels against direct convolution (float64) -----------------
shapes = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.integers(1, 9), st.integers(1, 9),
                   st.integers(0, 2))


def _case(n, c, k, h, w, p, seed=0):
    h, w = max(h, 3 - 2 * p), max(w, 3 - 2 * p)
    rng = np.random.default_rng(seed)
    x, wt, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((k, c, 3, 3)), rng.standard_normal(k)
    y, saved = ref.conv2d_forward(x, wt, b, 1, p)
    gy = rng.standard_normal(y.shape)
    return x, wt, b, p, y, gy, ref.conv2d_backward(gy, x, wt, saved, 1, p)


@given(shape=shapes)
def test_reference_form_matches_direct_convolution(shape):
    x, w, b, p, y, gy, (dx, dw, db) = _case(*shape)
    y2, _ = ref_winograd.conv2d_forward(x, w, b, 1, p)
    dx2, dw2, db2 = ref_winograd.conv2d_backward(gy, x, w, None, 1, p)
    for got, want in ((y2, y), (dx2, dx), (dw2, dw), (db2, db)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@given(shape=shapes, reuse=st.booleans(), block_bytes=st.sampled_from([1, winograd.BLOCK_BYTES]))
def test_cpu_winograd_matches_the_reference_backend(shape, reuse, block_bytes):
    x, w, b, p, y, gy, (dx, dw, db) = _case(*shape)
    previous, winograd.BLOCK_BYTES = winograd.BLOCK_BYTES, block_bytes  # 1 byte: the smallest blocks
    try:
        with algorithm("winograd"):
            y2, saved = cpu.conv2d_forward(x, w, b, 1, p)
            dx2, dw2, db2 = cpu.conv2d_backward(gy, x, w, saved if reuse else None, 1, p)
    finally:
        winograd.BLOCK_BYTES = previous
    for got, want in ((y2, y), (dx2, dx), (dw2, dw), (db2, db)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_cpu_winograd_in_several_blocks(force):
    """Tiles of one sample outweigh twice U's bytes: with 1-byte blocks, one sample per block,
    no saved tiles, and the backward recomputes them block by block."""
    force("winograd")
    x, w, b, p, y, gy, (dx, dw, db) = _case(3, 1, 1, 9, 9, 1)
    previous, winograd.BLOCK_BYTES = winograd.BLOCK_BYTES, 1
    try:
        y2, saved = cpu.conv2d_forward(x, w, b, 1, p)
        dx2, dw2, db2 = cpu.conv2d_backward(gy, x, w, saved, 1, p)
    finally:
        winograd.BLOCK_BYTES = previous
    assert saved is None
    for got, want in ((y2, y), (dx2, dx), (dw2, dw), (db2, db)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    _, saved = cpu.conv2d_forward(x, w, b, 1, p)  # the default blocks: one, and its tiles are kept
    assert isinstance(saved, winograd.WinogradSaved)


def test_cpu_winograd_partial_gradients_and_empty_batch(force):
    force("winograd")
    x, w, b, p, y, gy, (dx, dw, _) = _case(2, 3, 4, 6, 5, 1)
    only_dx = cpu.conv2d_backward(gy, x, w, None, 1, p, need_dw=False, need_db=False)
    only_dw = cpu.conv2d_backward(gy, x, w, None, 1, p, need_dx=False, need_db=False)
    assert only_dx[1] is None and only_dw[0] is None
    np.testing.assert_allclose(only_dx[0], dx, atol=1e-10)
    np.testing.assert_allclose(only_dw[1], dw, atol=1e-10)
    x0, gy0 = np.zeros((0, 3, 6, 5)), np.zeros((0, 4, 6, 5))
    y0, _ = cpu.conv2d_forward(x0, w, b, 1, 1)
    dx0, dw0, db0 = cpu.conv2d_backward(gy0, x0, w, None, 1, 1)
    assert y0.shape == (0, 4, 6, 5) and dx0.shape == x0.shape
    assert np.all(dw0 == 0) and np.all(db0 == 0)


def test_saved_tiles_of_another_call_are_refused(force):
    force("winograd")
    x, w, b, p, y, gy, _ = _case(2, 3, 4, 6, 6, 1)
    _, saved = cpu.conv2d_forward(x[:1], w, b, 1, p)
    with pytest.raises(ValueError, match="saved"):
        cpu.conv2d_backward(gy, x, w, saved, 1, p)


def test_switching_the_algorithm_between_forward_and_backward(force):
    x, w, b, p, y, gy, (dx, dw, _) = _case(2, 3, 4, 6, 6, 1)
    force("winograd")
    _, saved = cpu.conv2d_forward(x, w, b, 1, p)
    force("im2col")  # the Winograd tiles are not im2col columns: the backward recomputes
    dx2, dw2, _ = cpu.conv2d_backward(gy, x, w, saved, 1, p)
    np.testing.assert_allclose(dx2, dx, atol=1e-10)
    np.testing.assert_allclose(dw2, dw, atol=1e-10)


# ---- float32 precision --------------------------------------------------------------------
# every 3x3 stride-1 conv of the models (C, C', H = W): ResNet18 stem and stages, CoConv's stacked
# experts (4 experts x 64), MobileNetV2's stem, AlexNet's stride-1 convs (after its pools)
MODEL_SHAPES = [(3, 64, 32), (64, 64, 32), (128, 128, 16), (256, 256, 8), (512, 512, 4), (64, 256, 32),
                (3, 32, 32), (64, 192, 8), (192, 384, 4), (384, 256, 4), (256, 256, 4)]


def _values(rng, kind, shape):
    if kind == "normal":
        return rng.standard_normal(shape)
    if kind == "offset":  # a large common offset: the transforms subtract neighbours that nearly cancel
        return 100.0 + rng.standard_normal(shape)
    if kind == "relu":  # non-negative, as after a ReLU: no cancellation in the sums
        return np.maximum(rng.standard_normal(shape), 0.0)
    # magnitudes spread over six decades, random signs
    return rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(-3, 3, shape)


def _float32_errors(c, k, s, kind, batch=4):
    rng = np.random.default_rng(c * 1000 + k + s)
    x, w = _values(rng, kind, (batch, c, s, s)), _values(rng, kind, (k, c, 3, 3)) / np.sqrt(9 * c)
    gy = _values(rng, kind, (batch, k, s, s))
    y64, saved = ref.conv2d_forward(x, w, None, 1, 1)
    dx64, dw64, _ = ref.conv2d_backward(gy, x, w, saved, 1, 1, need_db=False)
    x32, w32, gy32 = x.astype(np.float32), w.astype(np.float32), gy.astype(np.float32)
    y, saved32 = cpu.conv2d_forward(x32, w32, None, 1, 1)
    dx, dw, _ = cpu.conv2d_backward(gy32, x32, w32, saved32, 1, 1, need_db=False)
    assert y.dtype == dx.dtype == dw.dtype == np.float32
    return rel_err(y, y64), rel_err(dx, dx64), rel_err(dw, dw64)


@pytest.mark.parametrize("c, k, s", MODEL_SHAPES)
def test_float32_error_at_the_model_shapes(c, k, s, force):
    force("winograd")
    errors = _float32_errors(c, k, s, "normal")
    assert max(errors) <= BOUND, f"(y, dX, dW) errors {errors}"


@pytest.mark.parametrize("kind", ["offset", "relu", "decades"])
@pytest.mark.parametrize("c, k, s", [(64, 64, 32), (512, 512, 4), (3, 64, 32)])
def test_float32_error_at_adversarial_values(c, k, s, kind, force):
    force("winograd")
    errors = _float32_errors(c, k, s, kind)
    assert max(errors) <= BOUND, f"{kind}: (y, dX, dW) errors {errors}"


def test_float32_error_at_batch_32_stage_1(force):
    """dW sums over the whole batch's tiles: the longest sum of the training shapes."""
    force("winograd")
    errors = _float32_errors(64, 64, 32, "normal", batch=32)
    assert max(errors) <= BOUND, f"(y, dX, dW) errors {errors}"


# ---- float64 gradchecks through the public op --------------------------------------------
@given(n=st.integers(1, 2), c=st.integers(1, 3), k=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6),
       p=st.integers(0, 2), bias=st.booleans(), data=st.data())
def test_gradcheck_through_conv2d_with_winograd(n, c, k, h, w, p, bias, data):
    h, w = max(h, 3 - 2 * p), max(w, 3 - 2 * p)
    inputs = [leaf(data.draw(arrays((n, c, h, w)), label="x")), leaf(data.draw(arrays((k, c, 3, 3)), label="w"))]
    if bias:
        inputs.append(leaf(data.draw(arrays((k,)), label="bias")))
    previous = numba.get_num_threads()
    numba.set_num_threads(1)  # thousands of tiny calls: the thread pool costs more than the work
    try:
        with algorithm("winograd"):
            assert gradcheck(lambda x, wt, b=None: F.conv2d(x, wt, b, 1, p), *inputs, name=f"winograd conv p={p}")
    finally:
        numba.set_num_threads(previous)


# ---- selection ---------------------------------------------------------------------------
def test_auto_rule_and_forcing(force):
    geometry = ((1, 1), (1, 1), (1, 1), 1)
    force("auto")
    assert winograd.use_winograd((32, 64, 32, 32), (64, 64, 3, 3), *geometry)      # ResNet18 stage 1
    assert winograd.use_winograd((32, 64, 32, 32), (256, 64, 3, 3), *geometry)     # CoConv stacked experts
    assert not winograd.use_winograd((32, 3, 32, 32), (64, 3, 3, 3), *geometry)    # the stem
    assert not winograd.use_winograd((32, 512, 4, 4), (512, 512, 3, 3), *geometry)  # stage 4
    assert not winograd.use_winograd((32, 256, 8, 8), (1024, 256, 3, 3), *geometry)  # CoConv's stacked stage 3
    assert winograd.use_winograd((32, 256, 8, 8), (256, 256, 3, 3), *geometry)       # stage 3
    force("im2col")
    assert not winograd.use_winograd((32, 64, 32, 32), (64, 64, 3, 3), *geometry)
    force("winograd")
    assert winograd.use_winograd((32, 3, 32, 32), (64, 3, 3, 3), *geometry)
    # never where F(2x2, 3x3) does not apply, even when forced
    assert not winograd.use_winograd((2, 4, 8, 8), (4, 4, 3, 3), (2, 2), (1, 1), (1, 1), 1)
    assert not winograd.use_winograd((2, 4, 8, 8), (4, 2, 3, 3), (1, 1), (1, 1), (1, 1), 2)
    assert not winograd.use_winograd((2, 4, 8, 8), (4, 4, 3, 3), (1, 1), (1, 1), (2, 2), 1)
    assert not winograd.use_winograd((2, 4, 8, 8), (4, 4, 5, 5), (1, 1), (1, 1), (1, 1), 1)
    with pytest.raises(ValueError, match="set_conv_algorithm"):
        winograd.set_conv_algorithm("fft")


@pytest.mark.parametrize("groups", [2, 4])
def test_grouped_and_depthwise_stay_on_their_paths_when_forced(groups, force):
    force("winograd")
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((4, 4 // groups, 3, 3))
    y, saved = cpu.conv2d_forward(x, w, None, 1, 1, 1, groups)
    assert not isinstance(saved, winograd.WinogradSaved)
    np.testing.assert_allclose(y, ref.conv2d_forward(x, w, None, 1, 1, 1, groups)[0], atol=1e-12)


def test_bad_input_is_refused_before_a_kernel_runs(force):
    force("winograd")
    x, w = np.zeros((2, 3, 5, 5)), np.zeros((4, 3, 3, 3))
    with pytest.raises(ValueError, match="conv2d"):
        cpu.conv2d_forward(x, w.astype(np.float32), None, 1, 1)
    with pytest.raises(ValueError, match="conv2d"):
        cpu.conv2d_forward(x, np.zeros((4, 2, 3, 3)), None, 1, 1)
    with pytest.raises(ValueError, match="conv2d"):
        cpu.conv2d_backward(np.zeros((2, 4, 4, 4)), x, w, None, 1, 1)
    with pytest.raises(ValueError, match="winograd_conv2d"):
        ref_winograd.conv2d_forward(x, w, None, 2, 1)
