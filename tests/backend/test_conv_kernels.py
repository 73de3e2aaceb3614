"""Tests for the CPU convolution kernels (minicoconv/backend/cpu/conv_kernels.py).

Oracles: a direct-loop NumPy convolution written here, central finite differences in
float64 against a random cotangent, and torch.nn.functional.conv2d when installed.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicoconv.backend.cpu import conv_kernels as ck
from minicoconv.backend.cpu.conv_kernels import (
    col2im,
    conv2d_backward,
    conv2d_forward,
    conv2d_output_shape,
    im2col,
)

# --------------------------------------------------------------------------------------
# Oracles
# --------------------------------------------------------------------------------------


def conv2d_reference(x, w, bias, stride, padding, dilation, groups):
    """Direct loops over (co, ci, i, j); each term is a strided slice of the padded input."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n_batch, c_in, height, width = x.shape
    c_out, c_in_g, kh, kw = w.shape
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n_batch, c_out, out_h, out_w), dtype=np.float64)
    for co in range(c_out):
        group = co // (c_out // groups)
        for ci in range(c_in_g):
            c = group * c_in_g + ci
            for i in range(kh):
                for j in range(kw):
                    patch = xp[:, c, i * dh:i * dh + sh * (out_h - 1) + 1:sh,
                               j * dw:j * dw + sw * (out_w - 1) + 1:sw]
                    y[:, co] += w[co, ci, i, j] * patch
        if bias is not None:
            y[:, co] += bias[co]
    return y


def im2col_reference(x, kh, kw, stride, padding, dilation):
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n_batch, c_in, height, width = x.shape
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.zeros((n_batch, c_in, kh, kw, out_h, out_w))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i * dh:i * dh + sh * (out_h - 1) + 1:sh,
                                  j * dw:j * dw + sw * (out_w - 1) + 1:sw]
    return cols.reshape(n_batch, c_in * kh * kw, out_h * out_w)


def exact_grads(x, w, gy, args):
    """Gradients of <conv(x, w), gy> from the reference, exactly, by linearity.

    dx: the reference run once on a batch holding every unit image e_(c,h,w), then
    dx[n, c, h, w] = <conv(e_(c,h,w)), gy[n]>; dw: one reference run per unit kernel.
    """
    units = np.eye(x[0].size).reshape(-1, *x.shape[1:])
    responses = conv2d_reference(units, w, None, *args).reshape(x[0].size, -1)
    dx = (gy.reshape(x.shape[0], -1) @ responses.T).reshape(x.shape)
    dw = np.zeros(w.shape)
    for idx in np.ndindex(*w.shape):
        e = np.zeros(w.shape)
        e[idx] = 1.0
        dw[idx] = np.vdot(conv2d_reference(x, e, None, *args), gy)
    return dx, dw, gy.sum(axis=(0, 2, 3))


def finite_difference(f, a, h=1e-3, max_entries=24, seed=0):
    """Central differences of scalar f at (up to max_entries random) entries of a, in place."""
    grad = np.full(a.shape, np.nan)
    flat, gflat = a.reshape(-1), grad.reshape(-1)
    rng = np.random.default_rng(seed)
    picks = rng.permutation(flat.size)[:max_entries]
    for idx in picks:
        old = flat[idx]
        flat[idx] = old + h
        f_plus = f()
        flat[idx] = old - h
        f_minus = f()
        flat[idx] = old
        gflat[idx] = (f_plus - f_minus) / (2 * h)
    return grad, picks


# --------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------


@st.composite
def conv_configs(draw, max_batch=3, max_size=9, max_channels=3):
    """Valid conv arguments: dense, grouped and depthwise (multiplier 1..3), half of them
    "same" stride-1 convolutions (output size = input size)."""
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    if kind == "depthwise":
        groups = draw(st.integers(2, 4))
        c_in, c_out = groups, groups * draw(st.integers(1, 3))
    elif kind == "grouped":
        groups = draw(st.integers(2, 3))
        c_in = groups * draw(st.integers(1, 2))
        c_out = groups * draw(st.integers(1, 2))
    else:
        groups = 1
        c_in, c_out = draw(st.integers(1, max_channels)), draw(st.integers(1, max_channels))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if draw(st.booleans()):  # "same" stride-1 convolution (the kernels' flat fast path)
        kh, kw = 2 * (kh // 2) + 1, 2 * (kw // 2) + 1
        stride = (1, 1)
        padding = (dilation[0] * (kh // 2), dilation[1] * (kw // 2))
    min_h = max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0])
    min_w = max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1])
    height = draw(st.integers(min_h, max(min_h, max_size)))
    width = draw(st.integers(min_w, max(min_w, max_size)))
    return {
        "x_shape": (draw(st.integers(1, max_batch)), c_in, height, width),
        "w_shape": (c_out, c_in // groups, kh, kw),
        "bias": draw(st.booleans()),
        "args": (stride, padding, dilation, groups),
    }


def make_inputs(cfg, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["x_shape"]).astype(dtype)
    w = rng.standard_normal(cfg["w_shape"]).astype(dtype)
    b = rng.standard_normal(cfg["w_shape"][0]).astype(dtype) if cfg["bias"] else None
    return x, w, b


# --------------------------------------------------------------------------------------
# im2col / col2im
# --------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(cfg=conv_configs())
def test_im2col_matches_reference_and_col2im_is_its_adjoint(cfg):
    x, w, _ = make_inputs(cfg)
    (stride, padding, dilation, _), (kh, kw) = cfg["args"], cfg["w_shape"][2:]
    cols = im2col(x, kh, kw, stride, padding, dilation)
    np.testing.assert_array_equal(cols, im2col_reference(x, kh, kw, stride, padding, dilation))
    c = np.random.default_rng(1).standard_normal(cols.shape)
    dx = col2im(c, x.shape, kh, kw, stride, padding, dilation)
    assert dx.shape == x.shape
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, dx), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# Forward and backward against the oracles
# --------------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(cfg=conv_configs())
def test_forward_matches_direct_loops(cfg):
    x, w, b = make_inputs(cfg)
    y, _ = conv2d_forward(x, w, b, *cfg["args"])
    assert y.shape == conv2d_output_shape(x.shape, w.shape, *cfg["args"])
    np.testing.assert_allclose(y, conv2d_reference(x, w, b, *cfg["args"]), rtol=1e-12,
                               atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(cfg=conv_configs())
def test_float32_stays_float32(cfg):
    x, w, b = make_inputs(cfg, np.float32)
    y, saved = conv2d_forward(x, w, b, *cfg["args"])
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, conv2d_reference(x, w, b, *cfg["args"]), rtol=1e-4,
                               atol=1e-4)
    grads = conv2d_backward(np.ones_like(y), x, w, saved, *cfg["args"], True, True, True)
    assert [g.dtype for g in grads] == [np.float32] * 3


@settings(max_examples=30, deadline=None)
@given(cfg=conv_configs(max_batch=2, max_size=6))
def test_backward_matches_finite_differences(cfg):
    x, w, b = make_inputs(cfg)
    if b is None:
        b = np.zeros(w.shape[0])
    y, saved = conv2d_forward(x, w, b, *cfg["args"])
    r = np.random.default_rng(2).standard_normal(y.shape)
    dx, dw, db = conv2d_backward(r, x, w, saved, *cfg["args"], True, True, True)

    def loss():
        return np.vdot(conv2d_forward(x, w, b, *cfg["args"])[0], r)

    for grad, param in ((dx, x), (dw, w), (db, b)):
        assert grad.shape == param.shape
        numeric, picks = finite_difference(loss, param)
        np.testing.assert_allclose(grad.reshape(-1)[picks], numeric.reshape(-1)[picks],
                                   rtol=1e-6, atol=1e-8)


@settings(max_examples=15, deadline=None)
@given(cfg=conv_configs(), flags=st.tuples(st.booleans(), st.booleans(), st.booleans()))
def test_backward_skips_grads_not_needed(cfg, flags):
    x, w, b = make_inputs(cfg)
    y, saved = conv2d_forward(x, w, b, *cfg["args"])
    gy = np.random.default_rng(3).standard_normal(y.shape)
    full = conv2d_backward(gy, x, w, saved, *cfg["args"], True, True, True)
    part = conv2d_backward(gy, x, w, saved, *cfg["args"], *flags)
    for needed, g_full, g_part in zip(flags, full, part):
        if needed:
            np.testing.assert_allclose(g_part, g_full, rtol=1e-12, atol=1e-12)
        else:
            assert g_part is None


@pytest.mark.parametrize("dw_transposed_max_cout", [0, 1 << 30])  # both dW GEMM orientations
@pytest.mark.parametrize("groups, c_in, c_out", [(1, 3, 5), (2, 4, 6), (4, 4, 8)])
def test_batch_blocks_with_a_partial_last_block(monkeypatch, groups, c_in, c_out,
                                                dw_transposed_max_cout):
    """Several column blocks (the last one short) give the same result as the reference."""
    monkeypatch.setattr(ck, "DW_TRANSPOSED_MAX_COUT", dw_transposed_max_cout)
    cfg = {"x_shape": (7, c_in, 6, 5), "w_shape": (c_out, c_in // groups, 3, 3), "bias": True,
           "args": ((1, 2), (1, 1), (1, 1), groups)}
    x, w, b = make_inputs(cfg)
    k_l_bytes = c_in * 9 * 6 * 3 * 8  # one sample's columns
    monkeypatch.setattr(ck, "BLOCK_BYTES", 3 * k_l_bytes)  # blocks of 3, 3, 1 samples
    y, saved = conv2d_forward(x, w, b, *cfg["args"])
    np.testing.assert_allclose(y, conv2d_reference(x, w, b, *cfg["args"]), rtol=1e-12)
    gy = np.random.default_rng(4).standard_normal(y.shape)
    grads = conv2d_backward(gy, x, w, saved, *cfg["args"], True, True, True)
    expected = exact_grads(x, w, gy, cfg["args"])
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_saved_columns_give_the_same_gradients_as_recomputing(monkeypatch):
    cfg = {"x_shape": (3, 4, 7, 6), "w_shape": (6, 2, 3, 2), "bias": False,
           "args": ((2, 1), (1, 0), (1, 2), 2)}
    x, w, _ = make_inputs(cfg)
    y, saved = conv2d_forward(x, w, None, *cfg["args"])
    assert isinstance(saved, np.ndarray)  # small batch: one block, columns kept
    gy = np.random.default_rng(7).standard_normal(y.shape)
    kept = conv2d_backward(gy, x, w, saved, *cfg["args"], True, True, True)
    recomputed = conv2d_backward(gy, x, w, None, *cfg["args"], True, True, True)
    for a, b in zip(kept, recomputed):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setattr(ck, "BLOCK_BYTES", 1)  # one sample per block: nothing kept
    assert conv2d_forward(x, w, None, *cfg["args"])[1] is None
    with pytest.raises(ValueError, match=r"conv2d: expected saved = None or the columns"):
        conv2d_backward(gy, x, w, saved[:, 1:], *cfg["args"], True, True, True)


@pytest.mark.parametrize("c_out, groups", [(4, 1), (6, 3)])  # im2col and depthwise paths
def test_non_contiguous_inputs_and_empty_batch(c_out, groups):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 6, 7, 3)).transpose(0, 3, 1, 2)[::2]  # (3, 3, 6, 7), strided
    w = rng.standard_normal((c_out, 3 // groups, 3, 3)).transpose(0, 1, 3, 2)
    args = ((1, 1), (1, 1), (1, 1), groups)
    y, _ = conv2d_forward(x, w, None, *args)
    np.testing.assert_allclose(y, conv2d_reference(x, w, None, *args), rtol=1e-12)
    gy = rng.standard_normal(y.shape)
    grads = conv2d_backward(gy[..., ::-1], x, w, None, *args, True, True, True)
    expected = conv2d_backward(gy[..., ::-1].copy(), x.copy(), w.copy(), None, *args,
                               True, True, True)
    for got, want in zip(grads, expected):
        np.testing.assert_array_equal(got, want)
    y0, _ = conv2d_forward(x[:0], w, None, *args)
    dx0, dw0, db0 = conv2d_backward(y0, x[:0], w, None, *args, True, True, True)
    assert y0.shape == (0, c_out, 6, 7) and dx0.shape == (0, 3, 6, 7)
    assert dw0.shape == w.shape and not dw0.any() and not db0.any()


# --------------------------------------------------------------------------------------
# Parity with PyTorch (float32)
# --------------------------------------------------------------------------------------

TORCH_CASES = [  # x_shape, w_shape, stride, padding, dilation, groups
    ((4, 8, 12, 12), (16, 8, 3, 3), 1, 1, 1, 1),
    ((3, 16, 9, 11), (8, 16, 1, 1), 1, 0, 1, 1),
    ((2, 6, 10, 10), (9, 2, 3, 3), 2, 1, 1, 3),
    ((5, 12, 16, 16), (12, 1, 3, 3), 1, 1, 1, 12),
    ((5, 12, 16, 16), (12, 1, 3, 3), 2, 1, 1, 12),
    ((2, 4, 9, 9), (12, 1, 5, 5), 1, 2, 2, 4),
    ((2, 3, 13, 7), (5, 3, 3, 2), (2, 1), (0, 2), (2, 1), 1),
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", TORCH_CASES)
def test_parity_with_torch_float32(x_shape, w_shape, stride, padding, dilation, groups):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    args = (stride, padding, dilation, groups)
    y, saved = conv2d_forward(x, w, b, *args)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = conv2d_backward(gy, x, w, saved, *args, True, True, True)

    tx, tw, tb = (torch.from_numpy(a).requires_grad_(True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride, padding, dilation, groups)
    ty.backward(torch.from_numpy(gy))
    for ours, theirs in ((y, ty), (dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
        assert ours.dtype == np.float32
        theirs = theirs.detach().numpy()
        scale = np.abs(theirs).max()
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * scale)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------

F32 = np.float32
GOOD = {"x": np.zeros((2, 4, 5, 5), F32), "w": np.zeros((6, 2, 3, 3), F32),
        "bias": np.zeros(6, F32), "stride": (1, 1), "padding": (1, 1), "dilation": (1, 1),
        "groups": 2}
BAD_FORWARD = [
    ({"x": np.zeros((4, 5, 5), F32)}, r"conv2d: expected x of shape \(N, Cin, H, W\)"),
    ({"w": np.zeros((6, 2, 3), F32)}, r"conv2d: expected w of shape"),
    ({"x": [[[[0.0]]]]}, r"conv2d: expected x to be a numpy.ndarray"),
    ({"x": np.zeros((2, 4, 5, 5), np.int32)}, r"conv2d: expected x of dtype float32 or float64"),
    ({"w": np.zeros((6, 2, 3, 3))}, r"conv2d: expected x and w of the same dtype"),
    ({"groups": 3, "w": np.zeros((6, 1, 3, 3), F32)}, r"Cin divisible by groups"),
    ({"w": np.zeros((6, 4, 3, 3), F32)}, r"w.shape\[1\] \* groups == Cin"),
    ({"w": np.zeros((5, 2, 3, 3), F32), "bias": None}, r"Cout divisible by groups"),
    ({"groups": 0}, r"groups as an int >= 1"),
    ({"w": np.zeros((6, 2, 9, 3), F32)}, r"dilated kernel height \(9\) to fit"),
    ({"dilation": (1, 4)}, r"dilated kernel width \(9\) to fit"),
    ({"stride": (0, 1)}, r"conv2d: expected stride >= 1"),
    ({"dilation": 0}, r"conv2d: expected dilation >= 1"),
    ({"padding": (1, -1)}, r"conv2d: expected padding >= 0"),
    ({"stride": (1, 1, 1)}, r"stride as an int or an \(h, w\) pair"),
    ({"bias": np.zeros(5, F32)}, r"conv2d: expected bias of shape \(6,\)"),
    ({"bias": np.zeros(6)}, r"bias of shape \(6,\) and dtype float32"),
    ({"x": np.zeros((2, 4, 0, 5), F32)}, r"x with Cin, H, W >= 1"),
]


@pytest.mark.parametrize("change, match", BAD_FORWARD)
def test_bad_forward_arguments_raise(change, match):
    kw = {**GOOD, **change}
    with pytest.raises(ValueError, match=match):
        conv2d_forward(**kw)
    if "bias" not in change:
        with pytest.raises(ValueError, match=match):
            kw.pop("bias")
            conv2d_backward(np.zeros((2, 6, 5, 5), F32), saved=None, **kw)


@pytest.mark.parametrize("gy, match", [
    (np.zeros((2, 6, 4, 5), F32), r"conv2d: expected gy of shape \(2, 6, 5, 5\)"),
    (np.zeros((2, 6, 5, 5)), r"gy of shape \(2, 6, 5, 5\) and dtype float32"),
    (np.zeros((2, 6, 5), F32), r"conv2d: expected gy of shape"),
])
def test_bad_gradient_raises(gy, match):
    kw = {k: v for k, v in GOOD.items() if k != "bias"}
    with pytest.raises(ValueError, match=match):
        conv2d_backward(gy, saved=None, **kw)


def test_bad_shapes_for_output_shape_im2col_col2im():
    with pytest.raises(ValueError, match=r"conv2d: expected x of shape \(N, Cin, H, W\)"):
        conv2d_output_shape((2, 3, 4), (1, 3, 1, 1), 1, 0, 1, 1)
    with pytest.raises(ValueError, match=r"im2col: expected kh, kw as ints >= 1"):
        im2col(np.zeros((1, 1, 4, 4)), 0, 3, 1, 0, 1)
    with pytest.raises(ValueError, match=r"im2col: expected the dilated kernel height"):
        im2col(np.zeros((1, 1, 4, 4)), 5, 3, 1, 0, 1)
    with pytest.raises(ValueError, match=r"col2im: expected cols of shape \(1, 9, 4\)"):
        col2im(np.zeros((1, 9, 5)), (1, 1, 4, 4), 3, 3, 1, 0, 1)
    with pytest.raises(ValueError, match=r"col2im: expected cols of dtype float32 or float64"):
        col2im(np.zeros((1, 9, 4), np.int64), (1, 1, 4, 4), 3, 3, 1, 0, 1)
