"""CPU batch-norm kernels against loop references, finite differences and PyTorch, and their
refusal of bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_checks import C3, EXAMPLES, F32, X, maybe_strided, numeric_grad, torch_grad

from minicoconv.backend.cpu import norm_kernels as nk


def ref_batch_norm_train(x, weight, bias, eps):
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    shape = (1, -1, 1, 1)
    x_hat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return x_hat * weight.reshape(shape) + bias.reshape(shape), mean, 1 / np.sqrt(var + eps)


@st.composite
def norm_cases(draw, max_side=5):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)),
             draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))
    if shape[0] * shape[2] * shape[3] < 2:
        shape = (2,) + shape[1:]
    return shape, draw(st.integers(0, 2**32 - 1))


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


BAD_CALLS = [
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
