"""CPU pooling and batch-norm kernels against loop references, finite differences, torch."""

import math

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicoconv.backend.cpu import adaptive_pool_kernels as apk
from minicoconv.backend.cpu import norm_kernels as nk
from minicoconv.backend.cpu import pool_kernels as pk

EXAMPLES = settings(max_examples=30, deadline=None)


# --------------------------------------------------------------------------------------
# Straightforward NumPy references
# --------------------------------------------------------------------------------------


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


def ref_batch_norm_train(x, weight, bias, eps):
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    shape = (1, -1, 1, 1)
    x_hat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return x_hat * weight.reshape(shape) + bias.reshape(shape), mean, 1 / np.sqrt(var + eps)


def numeric_grad(f, a, h=1e-6):
    """Central differences of the scalar f() with respect to the array a (changed in place).

    The thousands of tiny kernel calls run on one Numba thread: a parallel launch waits
    for every worker, which is slow when another process holds a core.
    """
    grad = np.empty_like(a)
    flat = a.reshape(-1)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + h
            f_plus = f()
            flat[k] = old - h
            f_minus = f()
            flat[k] = old
            grad.reshape(-1)[k] = (f_plus - f_minus) / (2 * h)
    finally:
        numba.set_num_threads(threads)
    return grad


def maybe_strided(x, strided):
    """The same values as x, as a non-contiguous view when strided."""
    if not strided:
        return x
    big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype)
    big[..., ::2] = x
    return big[..., ::2]


# --------------------------------------------------------------------------------------
# Hypothesis strategies
# --------------------------------------------------------------------------------------


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


@st.composite
def norm_cases(draw, max_side=5):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)),
             draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))
    if shape[0] * shape[2] * shape[3] < 2:
        shape = (2,) + shape[1:]
    return shape, draw(st.integers(0, 2**32 - 1))


def distinct_values(rng, shape):
    """Values without ties (a permutation of 0..size-1, spread), for max pooling."""
    return (rng.permutation(math.prod(shape)).reshape(shape) - 20.0) * 0.5


# --------------------------------------------------------------------------------------
# Forward against the references (float64)
# --------------------------------------------------------------------------------------


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
    """The bin rule of DESIGN.md: bin j spans [floor(j*L/o), ceil((j+1)*L/o))."""
    x = np.arange(length, dtype=np.float64).reshape(1, 1, 1, length)
    y = apk.adaptive_avg_pool2d_forward(x, (1, bins))
    expected = [np.mean(np.arange(length)[(j * length) // bins:-(-(j + 1) * length // bins)])
                for j in range(bins)]
    np.testing.assert_allclose(y.reshape(-1), expected)


@EXAMPLES
@given(norm_cases(), st.booleans(), st.booleans())
def test_batch_norm_train_forward_matches_reference(case, affine, strided):
    shape, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3 + 5
    weight = rng.standard_normal(shape[1]) if affine else None
    bias = rng.standard_normal(shape[1]) if affine else None
    y, mean, invstd = nk.batch_norm_train_forward(maybe_strided(x, strided), weight, bias, 1e-5)
    ones, zeros = np.ones(shape[1]), np.zeros(shape[1])
    y_ref, mean_ref, invstd_ref = ref_batch_norm_train(
        x, ones if weight is None else weight, zeros if bias is None else bias, 1e-5)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(invstd, invstd_ref, rtol=1e-10)
    np.testing.assert_allclose(1 / invstd**2 - 1e-5, x.var(axis=(0, 2, 3)), rtol=1e-9,
                               atol=1e-12)  # the documented way to recover the variance


def test_batch_norm_train_forward_is_stable_with_a_large_mean():
    x = 1e4 + np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    _, _, invstd = nk.batch_norm_train_forward(x, None, None, 1e-5)
    var = x.astype(np.float64).var(axis=(0, 2, 3))
    np.testing.assert_allclose(1 / invstd.astype(np.float64) ** 2 - 1e-5, var, rtol=1e-4)


@EXAMPLES
@given(norm_cases(), st.booleans())
def test_batch_norm_eval_forward_matches_reference(case, affine):
    shape, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    running_mean, running_var = rng.standard_normal(shape[1]), rng.random(shape[1]) + 0.1
    weight = rng.standard_normal(shape[1]) if affine else None
    bias = rng.standard_normal(shape[1]) if affine else None
    y = nk.batch_norm_eval_forward(x, running_mean, running_var, weight, bias, 1e-3)
    s = (1, -1, 1, 1)
    y_ref = (x - running_mean.reshape(s)) / np.sqrt(running_var.reshape(s) + 1e-3)
    if affine:
        y_ref = y_ref * weight.reshape(s) + bias.reshape(s)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# Backward against central finite differences of <forward(x), R> (float64)
# --------------------------------------------------------------------------------------


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


@EXAMPLES
@given(norm_cases(max_side=4), st.booleans())
def test_batch_norm_backward_matches_finite_differences(case, strided):
    shape, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) + 1
    weight, bias = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    cotangent = rng.standard_normal(shape)

    def loss():
        return np.sum(nk.batch_norm_train_forward(x, weight, bias, 1e-3)[0] * cotangent)

    _, mean, invstd = nk.batch_norm_train_forward(x, weight, bias, 1e-3)
    dx, dweight, dbias = nk.batch_norm_backward(maybe_strided(cotangent, strided),
                                                maybe_strided(x, strided), weight, mean,
                                                invstd, True, True, True)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dweight, numeric_grad(loss, weight), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dbias, numeric_grad(loss, bias), rtol=1e-5, atol=1e-6)
    only_dx = nk.batch_norm_backward(cotangent, x, weight, mean, invstd, True, False, False)
    assert only_dx[1] is None and only_dx[2] is None
    np.testing.assert_array_equal(only_dx[0], dx)


@EXAMPLES
@given(norm_cases(max_side=4))
def test_batch_norm_eval_backward_matches_finite_differences(case):
    shape, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    running_mean, running_var = rng.standard_normal(shape[1]), rng.random(shape[1]) + 0.1
    weight, bias = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    cotangent = rng.standard_normal(shape)

    def loss():
        y = nk.batch_norm_eval_forward(x, running_mean, running_var, weight, bias, 1e-3)
        return np.sum(y * cotangent)

    dx, dweight, dbias = nk.batch_norm_eval_backward(cotangent, running_var, weight, 1e-3, x,
                                                     running_mean, True, True, True)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dweight, numeric_grad(loss, weight), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dbias, numeric_grad(loss, bias), rtol=1e-6, atol=1e-7)
    only_dx = nk.batch_norm_eval_backward(cotangent, running_var, weight, 1e-3)
    np.testing.assert_array_equal(only_dx[0], dx)
    assert only_dx[1] is None and only_dx[2] is None


# --------------------------------------------------------------------------------------
# Parity with PyTorch (float32)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


F32 = {"rtol": 1e-5, "atol": 1e-5}


def torch_grad(torch, fn, cotangent, *arrays):
    """Forward fn on torch leaves made from arrays; return output and input gradients."""
    leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*leaves)
    out.backward(torch.from_numpy(cotangent))
    return out.detach().numpy(), [t.grad.numpy() for t in leaves]


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


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (8, 16, 1, 1), (2, 5, 9, 9)])
def test_batch_norm_train_matches_torch(torch, shape):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(shape) * 2 + 3).astype(np.float32)
    weight = rng.standard_normal(shape[1]).astype(np.float32)
    bias = rng.standard_normal(shape[1]).astype(np.float32)
    cotangent = rng.standard_normal(shape).astype(np.float32)
    y, mean, invstd = nk.batch_norm_train_forward(x, weight, bias, 1e-5)
    dx, dweight, dbias = nk.batch_norm_backward(cotangent, x, weight, mean, invstd,
                                                True, True, True)
    y_t, (dx_t, dweight_t, dbias_t) = torch_grad(
        torch, lambda t, w, b: torch.nn.functional.batch_norm(t, None, None, w, b, True, 0.1,
                                                              1e-5),
        cotangent, x, weight, bias)
    assert {a.dtype for a in (y, mean, invstd, dx, dweight, dbias)} == {np.dtype(np.float32)}
    np.testing.assert_allclose(y, y_t, **F32)
    np.testing.assert_allclose(dx, dx_t, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dweight, dweight_t, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dbias, dbias_t, rtol=1e-4, atol=1e-4)


def test_batch_norm_eval_matches_torch(torch):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 5, 6)).astype(np.float32)
    running_mean = rng.standard_normal(3).astype(np.float32)
    running_var = (rng.random(3) + 0.5).astype(np.float32)
    weight = rng.standard_normal(3).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    cotangent = rng.standard_normal(x.shape).astype(np.float32)
    y = nk.batch_norm_eval_forward(x, running_mean, running_var, weight, bias, 1e-5)
    dx, dweight, dbias = nk.batch_norm_eval_backward(cotangent, running_var, weight, 1e-5, x,
                                                     running_mean, True, True, True)
    y_t, (dx_t, dweight_t, dbias_t) = torch_grad(
        torch, lambda t, w, b: torch.nn.functional.batch_norm(
            t, torch.from_numpy(running_mean), torch.from_numpy(running_var), w, b, False, 0.1,
            1e-5),
        cotangent, x, weight, bias)
    assert {a.dtype for a in (y, dx, dweight, dbias)} == {np.dtype(np.float32)}
    np.testing.assert_allclose(y, y_t, **F32)
    np.testing.assert_allclose(dx, dx_t, **F32)
    np.testing.assert_allclose(dweight, dweight_t, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dbias, dbias_t, rtol=1e-4, atol=1e-4)


def test_batch_norm_running_stats_match_torch(torch):
    rng = np.random.default_rng(6)
    bn = torch.nn.BatchNorm2d(3, momentum=0.1)
    running_mean, running_var = np.zeros(3, np.float32), np.ones(3, np.float32)
    for step in range(5):
        x = (rng.standard_normal((4, 3, 5, 5)) * (step + 1) + step).astype(np.float32)
        _, mean, invstd = nk.batch_norm_train_forward(x, None, None, bn.eps)
        nk.batch_norm_update_running(running_mean, running_var, mean, invstd, bn.eps,
                                     4 * 5 * 5, 0.1)
        bn(torch.from_numpy(x))
    assert running_mean.dtype == running_var.dtype == np.float32
    np.testing.assert_allclose(running_mean, bn.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(running_var, bn.running_var.numpy(), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------
# Bad input is refused before any kernel runs
# --------------------------------------------------------------------------------------

X = np.zeros((2, 3, 6, 6), np.float32)
C3 = np.ones(3, np.float32)
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
    ("bn 2-d input", lambda: nk.batch_norm_train_forward(X[0, 0], None, None, 1e-5),
     "batch_norm: expected x of shape"),
    ("bn weight shape", lambda: nk.batch_norm_train_forward(X, C3[:2], None, 1e-5),
     r"batch_norm: expected weight of shape \(3,\), got \(2,\)"),
    ("bn bias dtype", lambda: nk.batch_norm_train_forward(X, C3, C3.astype(np.float64), 1e-5),
     "batch_norm: expected bias of dtype float32"),
    ("bn single value", lambda: nk.batch_norm_train_forward(X[:1, :, :1, :1], None, None, 1e-5),
     "more than 1 value per channel"),
    ("bn negative eps", lambda: nk.batch_norm_train_forward(X, None, None, -1.0),
     "batch_norm: expected eps"),
    ("bn gy shape", lambda: nk.batch_norm_backward(X[:1], X, C3, C3, C3, True, True, True),
     r"batch_norm_backward: expected gy of shape \(2, 3, 6, 6\)"),
    ("bn gy dtype", lambda: nk.batch_norm_backward(X.astype(np.float64), X, C3, C3, C3),
     "batch_norm_backward: expected gy of dtype float32"),
    ("bn mean shape", lambda: nk.batch_norm_backward(X, X, C3, C3[:1], C3),
     r"batch_norm_backward: expected mean of shape \(3,\)"),
    ("bn eval running_var", lambda: nk.batch_norm_eval_forward(X, C3, C3[:2], None, None, 1e-5),
     r"batch_norm_eval: expected running_var of shape \(3,\)"),
    ("bn eval backward without x", lambda: nk.batch_norm_eval_backward(
        X, C3, C3, 1e-5, need_dweight=True), "need_dweight needs x and running_mean"),
    ("running update n", lambda: nk.batch_norm_update_running(C3.copy(), C3.copy(), C3, C3,
                                                              1e-5, 1, 0.1),
     "batch_norm_update_running: expected n = N\\*H\\*W >= 2"),
    ("running update shape", lambda: nk.batch_norm_update_running(C3.copy(), C3[:2].copy(), C3,
                                                                  C3, 1e-5, 8, 0.1),
     r"expected running_var of shape \(3,\)"),
]


@pytest.mark.parametrize("call, message", [(c, m) for _, c, m in BAD_CALLS],
                         ids=[name for name, _, _ in BAD_CALLS])
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
