"""CPU max, average and adaptive average pooling kernels against loop references, finite
differences and PyTorch, and their refusal of bad input."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_checks import EXAMPLES, F32, X, maybe_strided, numeric_grad, torch_grad

from minicoconv.backend.cpu import adaptive_pool_kernels as apk
from minicoconv.backend.cpu import pool_kernels as pk


def out_size(length, kernel, stride, pad):
    return (length + 2 * pad - kernel) // stride + 1


def ref_max_pool(x, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    xp = np.full((n, c, h + 2 * ph, w + 2 * pw), -np.inf)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    oh, ow = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    y = np.empty((n, c, oh, ow))
    idx = np.empty((n, c, oh, ow), dtype=np.int64)
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    window = xp[b, ch, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    r, s = np.unravel_index(np.argmax(window), window.shape)
                    y[b, ch, i, j] = window[r, s]
                    idx[b, ch, i, j] = (i * sh + r - ph) * w + (j * sw + s - pw)
    return y, idx


def ref_avg_pool(x, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    y = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            y[:, :, i, j] = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].sum(axis=(2, 3))
    return y / (kh * kw)


def ref_adaptive_avg_pool(x, output_size):
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.empty((n, c, oh, ow))
    for i in range(oh):
        r0, r1 = math.floor(i * h / oh), math.ceil((i + 1) * h / oh)
        for j in range(ow):
            c0, c1 = math.floor(j * w / ow), math.ceil((j + 1) * w / ow)
            y[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return y


@st.composite
def pool_cases(draw, max_side=8, max_planes=3):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), max_side))
    w = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), max_side))
    n, c = draw(st.integers(1, max_planes)), draw(st.integers(1, max_planes))
    return (n, c, h, w), kernel, stride, padding, draw(st.integers(0, 2**32 - 1))


@st.composite
def adaptive_cases(draw, max_side=9, max_planes=3):
    shape = (draw(st.integers(1, max_planes)), draw(st.integers(1, max_planes)),
             draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))
    output_size = (draw(st.integers(1, max_side + 3)), draw(st.integers(1, max_side + 3)))
    return shape, output_size, draw(st.integers(0, 2**32 - 1))


def distinct_values(rng, shape):
    """Values without ties (a permutation of 0..size-1, spread), for max pooling."""
    return (rng.permutation(math.prod(shape)).reshape(shape) - 20.0) * 0.5


@EXAMPLES
@given(pool_cases(), st.booleans())
def test_max_pool_forward_matches_reference(case, strided):
    shape, kernel, stride, padding, seed = case
    x = np.random.default_rng(seed).standard_normal(shape).round(1)  # ties happen
    y, argmax = pk.max_pool2d_forward(maybe_strided(x, strided), kernel, stride, padding)
    y_ref, idx_ref = ref_max_pool(x, kernel, stride, padding)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, idx_ref)  # first maximum wins
    assert y.dtype == np.float64


@EXAMPLES
@given(pool_cases(), st.booleans())
def test_avg_pool_forward_matches_reference(case, strided):
    shape, kernel, stride, padding, seed = case
    x = np.random.default_rng(seed).standard_normal(shape)
    y = pk.avg_pool2d_forward(maybe_strided(x, strided), kernel, stride, padding)
    np.testing.assert_allclose(y, ref_avg_pool(x, kernel, stride, padding), rtol=1e-12,
                               atol=1e-12)


@EXAMPLES
@given(adaptive_cases(), st.booleans())
def test_adaptive_avg_pool_forward_matches_reference(case, strided):
    shape, output_size, seed = case
    x = np.random.default_rng(seed).standard_normal(shape)
    y = apk.adaptive_avg_pool2d_forward(maybe_strided(x, strided), output_size)
    np.testing.assert_allclose(y, ref_adaptive_avg_pool(x, output_size), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("length, bins", [(1, 3), (2, 3), (3, 3), (4, 3), (5, 3), (7, 2), (8, 3)])
def test_adaptive_bins_cover_pytorch_rule(length, bins):
    """The bin rule of docs/layers.md: bin j spans [floor(j*L/o), ceil((j+1)*L/o))."""
    x = np.arange(length, dtype=np.float64).reshape(1, 1, 1, length)
    y = apk.adaptive_avg_pool2d_forward(x, (1, bins))
    expected = [np.mean(np.arange(length)[(j * length) // bins:-(-(j + 1) * length // bins)])
                for j in range(bins)]
    np.testing.assert_allclose(y.reshape(-1), expected)


@EXAMPLES
@given(pool_cases(max_side=6, max_planes=2))
def test_max_pool_backward_matches_finite_differences(case):
    shape, kernel, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, shape)
    y, argmax = pk.max_pool2d_forward(x, kernel, stride, padding)
    cotangent = rng.standard_normal(y.shape)
    dx = pk.max_pool2d_backward(cotangent, argmax, x.shape)
    expected = numeric_grad(
        lambda: np.sum(pk.max_pool2d_forward(x, kernel, stride, padding)[0] * cotangent), x)
    np.testing.assert_allclose(dx, expected, rtol=1e-6, atol=1e-6)


@EXAMPLES
@given(pool_cases(max_side=6, max_planes=2))
def test_avg_pool_backward_matches_finite_differences(case):
    shape, kernel, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    cotangent = rng.standard_normal(pk.avg_pool2d_forward(x, kernel, stride, padding).shape)
    dx = pk.avg_pool2d_backward(cotangent, x.shape, kernel, stride, padding)
    expected = numeric_grad(
        lambda: np.sum(pk.avg_pool2d_forward(x, kernel, stride, padding) * cotangent), x)
    np.testing.assert_allclose(dx, expected, rtol=1e-6, atol=1e-7)


@EXAMPLES
@given(adaptive_cases(max_side=6, max_planes=2))
def test_adaptive_avg_pool_backward_matches_finite_differences(case):
    shape, output_size, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    cotangent = rng.standard_normal(shape[:2] + output_size)
    dx = apk.adaptive_avg_pool2d_backward(cotangent, x.shape)
    expected = numeric_grad(
        lambda: np.sum(apk.adaptive_avg_pool2d_forward(x, output_size) * cotangent), x)
    np.testing.assert_allclose(dx, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kernel, stride, padding", [((2, 2), (2, 2), (0, 0)),
                                                     ((3, 3), (2, 2), (1, 1)),
                                                     ((3, 2), (1, 2), (1, 0))])
def test_max_pool_matches_torch(torch, kernel, stride, padding):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 9, 10)).round(1).astype(np.float32)  # with ties
    y, argmax = pk.max_pool2d_forward(x, kernel, stride, padding)
    cotangent = rng.standard_normal(y.shape).astype(np.float32)
    dx = pk.max_pool2d_backward(cotangent, argmax, x.shape)
    y_t, idx_t = torch.nn.functional.max_pool2d(torch.from_numpy(x), kernel, stride, padding,
                                                return_indices=True)
    _, (dx_t,) = torch_grad(
        torch, lambda t: torch.nn.functional.max_pool2d(t, kernel, stride, padding), cotangent, x)
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_array_equal(y, y_t.numpy())
    np.testing.assert_array_equal(argmax, idx_t.numpy())
    np.testing.assert_allclose(dx, dx_t, **F32)


def test_max_pool_propagates_nan_like_torch(torch):
    x = np.random.default_rng(7).standard_normal((2, 3, 7, 8)).astype(np.float32)
    x[0, 0, 1, 1] = x[0, 0, 2, 2] = x[1, 2, 6, 7] = x[1, 1, 0, 0] = np.nan
    y, argmax = pk.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1))
    y_t, idx_t = torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, 2, 1,
                                                return_indices=True)
    np.testing.assert_array_equal(y, y_t.numpy())  # NaN where torch has NaN
    np.testing.assert_array_equal(argmax, idx_t.numpy())


@pytest.mark.parametrize("kernel, stride, padding", [((2, 2), (2, 2), (0, 0)),
                                                     ((3, 3), (1, 1), (1, 1)),
                                                     ((4, 3), (3, 2), (2, 1))])
def test_avg_pool_matches_torch(torch, kernel, stride, padding):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 9, 10)).astype(np.float32)
    y = pk.avg_pool2d_forward(x, kernel, stride, padding)
    cotangent = rng.standard_normal(y.shape).astype(np.float32)
    dx = pk.avg_pool2d_backward(cotangent, x.shape, kernel, stride, padding)
    y_t, (dx_t,) = torch_grad(
        torch, lambda t: torch.nn.functional.avg_pool2d(t, kernel, stride, padding), cotangent, x)
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_allclose(y, y_t, **F32)
    np.testing.assert_allclose(dx, dx_t, **F32)


@pytest.mark.parametrize("shape, output_size", [((2, 5, 8, 8), (1, 1)), ((2, 5, 8, 8), (3, 3)),
                                                ((2, 3, 2, 2), (3, 3)), ((1, 2, 7, 5), (4, 9))])
def test_adaptive_avg_pool_matches_torch(torch, shape, output_size):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    y = apk.adaptive_avg_pool2d_forward(x, output_size)
    cotangent = rng.standard_normal(y.shape).astype(np.float32)
    dx = apk.adaptive_avg_pool2d_backward(cotangent, x.shape)
    y_t, (dx_t,) = torch_grad(
        torch, lambda t: torch.nn.functional.adaptive_avg_pool2d(t, output_size), cotangent, x)
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_allclose(y, y_t, **F32)
    np.testing.assert_allclose(dx, dx_t, **F32)


GY_POOL = np.zeros((2, 3, 3, 3), np.float32)


ARGMAX = np.zeros((2, 3, 3, 3), np.int64)


BAD_CALLS = [
    ("3-d input", lambda: pk.max_pool2d_forward(X[0], (2, 2), (2, 2), (0, 0)),
     r"max_pool2d: expected x of shape \(N, C, H, W\), got shape \(3, 6, 6\)"),
    ("int input", lambda: pk.avg_pool2d_forward(X.astype(int), (2, 2), (2, 2), (0, 0)),
     "avg_pool2d: expected x of dtype float32 or float64"),
    ("list input", lambda: pk.max_pool2d_forward(X.tolist(), (2, 2), (2, 2), (0, 0)),
     "numpy.ndarray"),
    ("zero kernel", lambda: pk.max_pool2d_forward(X, (0, 2), (2, 2), (0, 0)),
     r"max_pool2d: expected kernel >= 1, got \(0, 2\)"),
    ("zero stride", lambda: pk.avg_pool2d_forward(X, (2, 2), (1, 0), (0, 0)),
     "avg_pool2d: expected stride >= 1"),
    ("negative padding", lambda: pk.max_pool2d_forward(X, (2, 2), (2, 2), (0, -1)),
     "max_pool2d: expected padding >= 0"),
    ("padding over half the kernel", lambda: pk.max_pool2d_forward(X, (3, 3), (1, 1), (2, 1)),
     r"padding <= kernel / 2, got padding \(2, 1\) for kernel \(3, 3\)"),
    ("window larger than input", lambda: pk.avg_pool2d_forward(X, (7, 2), (1, 1), (0, 0)),
     "avg_pool2d: expected a window no larger than the padded input"),
    ("bad kernel type", lambda: pk.max_pool2d_forward(X, (2, 2, 2), (1, 1), (0, 0)),
     "max_pool2d: expected kernel as an int or an"),
    ("adaptive output 0", lambda: apk.adaptive_avg_pool2d_forward(X, (0, 3)),
     "adaptive_avg_pool2d: expected output_size >= 1"),
    ("max gy shape", lambda: pk.max_pool2d_backward(GY_POOL[:, :, :2], ARGMAX, X.shape),
     r"max_pool2d: expected gy of shape \(2, 3, 3, 3\), got \(2, 3, 2, 3\)"),
    ("max argmax shape", lambda: pk.max_pool2d_backward(GY_POOL, ARGMAX[:1], X.shape),
     "max_pool2d: expected argmax of shape"),
    ("max argmax dtype", lambda: pk.max_pool2d_backward(GY_POOL, ARGMAX * 1.0, X.shape),
     "max_pool2d: expected argmax of dtype int32 or int64"),
    ("max argmax out of range", lambda: pk.max_pool2d_backward(GY_POOL, ARGMAX + 36, X.shape),
     r"max_pool2d: expected argmax entries in \[0, H\*W\) = \[0, 36\), got 54 outside"),
    ("max x_shape", lambda: pk.max_pool2d_backward(GY_POOL, ARGMAX, (2, 3, 6)),
     r"max_pool2d: expected x_shape as \(N, C, H, W\)"),
    ("avg gy shape", lambda: pk.avg_pool2d_backward(GY_POOL, X.shape, (3, 3), (1, 1), (0, 0)),
     r"avg_pool2d: expected gy of shape \(2, 3, 4, 4\), got \(2, 3, 3, 3\)"),
    ("adaptive gy shape", lambda: apk.adaptive_avg_pool2d_backward(GY_POOL[:1], X.shape),
     r"adaptive_avg_pool2d: expected gy of shape \(2, 3, OH, OW\)"),
]


@pytest.mark.parametrize("call, message", [(c, m) for _, c, m in BAD_CALLS],
                         ids=[name for name, _, _ in BAD_CALLS])
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
