"""Convolution, pooling, batch-norm and SGD kernels: the CUDA backend against the CPU backend."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_helpers import assert_matches

pytestmark = pytest.mark.cuda
rng = np.random.default_rng(3)

# (N, Cin, H, W, Cout, k, stride, padding, dilation, groups, bias)
CONVS = {
    "plain": (2, 3, 5, 6, 4, 3, 1, 1, 1, 1, True),
    "strided-dilated": (2, 3, 7, 6, 2, 3, 2, 0, 2, 1, False),
    "grouped": (1, 4, 5, 5, 6, 3, 1, 1, 1, 2, True),
    "1x1": (2, 3, 4, 4, 5, 1, 1, 0, 1, 1, False),
    "depthwise": (2, 3, 5, 5, 3, 3, 1, 1, 1, 3, True),
    "depthwise-x2-strided": (1, 2, 6, 5, 4, 3, 2, 1, 1, 2, False),
}


def conv_case(name, dtype=np.float64):
    n, c, h, w, co, k, s, p, d, g, bias = CONVS[name]
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((co, c // g, k, k)).astype(dtype)
    b = rng.standard_normal(co).astype(dtype) if bias else None
    return x, wt, b, (s, p, d, g)


@pytest.mark.parametrize("name", list(CONVS))
def test_conv2d(be, cpu, name):
    x, w, b, args = conv_case(name)
    y, saved = be.conv2d_forward(be.asarray(x), be.asarray(w), None if b is None else be.asarray(b), *args)
    y_ref, _ = cpu.conv2d_forward(x, w, b, *args)
    assert saved is None
    assert_matches(be, y, y_ref)
    gy = rng.standard_normal(y_ref.shape)
    grads = be.conv2d_backward(be.asarray(gy), be.asarray(x), be.asarray(w), None, *args)
    for got, expected in zip(grads, cpu.conv2d_backward(gy, x, w, None, *args)):
        assert_matches(be, got, expected)


@pytest.mark.parametrize("need", [(True, False, False), (False, True, True)])
def test_conv2d_backward_only_what_is_needed(be, cpu, need):
    x, w, _, args = conv_case("grouped")
    gy = rng.standard_normal(cpu.conv2d_forward(x, w, None, *args)[0].shape)
    got = be.conv2d_backward(be.asarray(gy), be.asarray(x), be.asarray(w), None, *args, *need)
    for g, expected, wanted in zip(got, cpu.conv2d_backward(gy, x, w, None, *args, *need), need):
        assert (g is None) == (not wanted)
        if wanted:
            assert_matches(be, g, expected)


def test_conv2d_in_batch_chunks(be, cpu, monkeypatch):
    """A columns budget of one sample: the batch goes through im2col/GEMM one sample at a time."""
    from minicoconv.backend.cuda import conv

    monkeypatch.setattr(conv, "COLS_BUDGET_BYTES", 1)
    x, w, b, args = conv_case("plain")
    x = np.concatenate([x, x[:1]])
    y_ref, _ = cpu.conv2d_forward(x, w, b, *args)
    assert_matches(be, be.conv2d_forward(be.asarray(x), be.asarray(w), be.asarray(b), *args)[0], y_ref)
    gy = rng.standard_normal(y_ref.shape)
    got = be.conv2d_backward(be.asarray(gy), be.asarray(x), be.asarray(w), None, *args)
    for g, expected in zip(got, cpu.conv2d_backward(gy, x, w, None, *args)):
        assert_matches(be, g, expected)


def test_conv2d_float32(be, cpu):
    x, w, b, args = conv_case("plain", np.float32)
    assert_matches(be, be.conv2d_forward(be.asarray(x), be.asarray(w), be.asarray(b), *args)[0],
                   cpu.conv2d_forward(x, w, b, *args)[0], tol=1e-5)


def test_conv2d_validates(be):
    x, w = be.asarray(np.zeros((1, 3, 4, 4))), be.asarray(np.zeros((2, 2, 3, 3)))
    with pytest.raises(ValueError, match="conv2d"):
        be.conv2d_forward(x, w)
    with pytest.raises(ValueError, match="device array"):
        be.conv2d_forward(np.zeros((1, 3, 4, 4)), w)


@pytest.mark.parametrize("name", ["plain", "grouped", "depthwise", "depthwise-x2-strided"])
def test_per_sample_conv2d(be, cpu, name, monkeypatch):
    from minicoconv.backend.cuda import conv

    monkeypatch.setattr(conv, "COLS_BUDGET_BYTES", 1)  # one sample per chunk
    x, w, _, (s, p, d, g) = conv_case(name)
    kernels = rng.standard_normal((x.shape[0],) + w.shape)
    args = ((s, s), (p, p), (d, d), g)
    dx_, dk_ = be.asarray(x), be.asarray(kernels)
    y_ref, _ = cpu.per_sample_conv2d_forward(x, kernels, *args)
    assert_matches(be, be.per_sample_conv2d_forward(dx_, dk_, *args)[0], y_ref)
    gy = rng.standard_normal(y_ref.shape)
    got = be.per_sample_conv2d_backward(be.asarray(gy), dx_, dk_, None, *args)
    for g_, expected in zip(got, cpu.per_sample_conv2d_backward(gy, x, kernels, None, *args)):
        assert_matches(be, g_, expected)


X = rng.standard_normal((2, 3, 5, 6))


@pytest.mark.parametrize("kernel, stride, padding", [((2, 2), (2, 2), (0, 0)), ((3, 2), (1, 2), (1, 1))])
def test_max_and_avg_pool(be, cpu, kernel, stride, padding):
    d = be.asarray(X)
    y, argmax = be.max_pool2d_forward(d, kernel, stride, padding)
    y_ref, argmax_ref = cpu.max_pool2d_forward(X, kernel, stride, padding)
    assert_matches(be, y, y_ref)
    assert_matches(be, argmax, argmax_ref)
    gy = rng.standard_normal(y_ref.shape)
    assert_matches(be, be.max_pool2d_backward(be.asarray(gy), argmax, X.shape),
                   cpu.max_pool2d_backward(gy, argmax_ref, X.shape))
    assert_matches(be, be.avg_pool2d_forward(d, kernel, stride, padding), cpu.avg_pool2d_forward(X, kernel, stride,
                                                                                                   padding))
    assert_matches(be, be.avg_pool2d_backward(be.asarray(gy), X.shape, kernel, stride, padding),
                   cpu.avg_pool2d_backward(gy, X.shape, kernel, stride, padding))


@pytest.mark.parametrize("size", [(1, 1), (3, 3), (2, 4), (7, 8)], ids=str)  # (7, 8): bins overlap and repeat
def test_adaptive_avg_pool(be, cpu, size):
    assert_matches(be, be.adaptive_avg_pool2d_forward(be.asarray(X), size), cpu.adaptive_avg_pool2d_forward(X, size))
    gy = rng.standard_normal(X.shape[:2] + size)
    assert_matches(be, be.adaptive_avg_pool2d_backward(be.asarray(gy), X.shape),
                   cpu.adaptive_avg_pool2d_backward(gy, X.shape))


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_training(be, cpu, affine):
    x = rng.standard_normal((2, 3, 4, 5)) * 3 + 1
    w, b = (rng.standard_normal(3), rng.standard_normal(3)) if affine else (None, None)
    dev = [None if a is None else be.asarray(a) for a in (x, w, b)]
    out, ref = be.batch_norm_train_forward(*dev, 1e-5), cpu.batch_norm_train_forward(x, w, b, 1e-5)
    for got, expected in zip(out, ref):
        assert_matches(be, got, expected)
    gy = rng.standard_normal(x.shape)
    grads = be.batch_norm_backward(be.asarray(gy), dev[0], dev[1], out[1], out[2])
    for got, expected in zip(grads, cpu.batch_norm_backward(gy, x, w, ref[1], ref[2])):
        assert_matches(be, got, expected)
    rm, rv = rng.standard_normal(3), rng.random(3) + 0.5
    d_rm, d_rv = be.asarray(rm), be.asarray(rv)
    be.batch_norm_update_running(d_rm, d_rv, out[1], out[2], 1e-5, 40, 0.1)
    cpu.batch_norm_update_running(rm, rv, ref[1], ref[2], 1e-5, 40, 0.1)
    assert_matches(be, d_rm, rm)
    assert_matches(be, d_rv, rv)


def test_batch_norm_eval(be, cpu):
    x, gy = rng.standard_normal((2, 3, 2, 3)), rng.standard_normal((2, 3, 2, 3))
    rm, rv, w, b = rng.standard_normal(3), rng.random(3) + 0.5, rng.standard_normal(3), rng.standard_normal(3)
    dev = [be.asarray(a) for a in (x, rm, rv, w, b)]
    assert_matches(be, be.batch_norm_eval_forward(*dev, 1e-5), cpu.batch_norm_eval_forward(x, rm, rv, w, b, 1e-5))
    got = be.batch_norm_eval_backward(be.asarray(gy), dev[2], dev[3], 1e-5, dev[0], dev[1], True, True, True)
    for g, expected in zip(got, cpu.batch_norm_eval_backward(gy, rv, w, 1e-5, x, rm, True, True, True)):
        assert_matches(be, g, expected)
    dx, dw, db = be.batch_norm_eval_backward(be.asarray(gy), dev[2], None, 1e-5)
    assert dw is None and db is None
    assert_matches(be, dx, cpu.batch_norm_eval_backward(gy, rv, None, 1e-5)[0])


def test_batch_norm_validates(be):
    with pytest.raises(ValueError, match="N\\*H\\*W"):
        be.batch_norm_train_forward(be.asarray(np.zeros((1, 2, 1, 1))), None, None, 1e-5)


@pytest.mark.parametrize("momentum, weight_decay, nesterov", [(0.0, 0.0, False), (0.9, 5e-4, False), (0.9, 0.0, True)])
def test_sgd_update(be, cpu, momentum, weight_decay, nesterov):
    p, g = rng.standard_normal(7).astype(np.float32), rng.standard_normal(7).astype(np.float32)
    d_p, buf, ref_buf = be.asarray(p), None, None
    for _ in range(2):  # the first step creates the momentum buffer, the second uses it
        buf = be.sgd_update(d_p, be.asarray(g), buf, 0.1, momentum, weight_decay, nesterov)
        ref_buf = cpu.sgd_update(p, g, ref_buf, 0.1, momentum, weight_decay, nesterov)
    assert_matches(be, d_p, p)
    assert (buf is None) == (ref_buf is None)
    if buf is not None:
        assert_matches(be, buf, ref_buf)


def test_batch_norm_does_not_cancel(be):
    """Mean subtracted before scaling, as on the CPU (tests/norm_cancellation.py)."""
    from norm_cancellation import check_eval_forward, check_train_forward

    check_train_forward(be, be.to_numpy)
    check_eval_forward(be, be.to_numpy)
