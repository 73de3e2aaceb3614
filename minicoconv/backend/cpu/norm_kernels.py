"""Batch-norm kernels for the CPU backend (BatchNorm2d over NCHW arrays).

Per channel c, with M = N*H*W values x[:, c, :, :]:

    mean_c   = sum(x) / M
    var_c    = sum((x - mean_c)^2) / M                      (biased, two-pass)
    invstd_c = 1 / sqrt(var_c + eps)
    y        = (x - mean_c) * alpha_c + bias_c,   alpha_c = weight_c * invstd_c

The mean is subtracted before scaling, never folded into a shift
(x * alpha_c + (bias_c - mean_c * alpha_c)): with |mean| >> std that shift and
x * alpha_c are huge and nearly cancel, losing the digits that hold the result
(a constant channel at 1e6 gave 8.69 instead of 0 in float32).

Training backward through the batch statistics (x_hat = (x - mean) * invstd):

    dbias_c   = sum(gy)
    dweight_c = sum(gy * x_hat) = invstd_c * sum(gy * (x - mean_c))
    dx        = weight_c * invstd_c * (gy - dbias_c / M - x_hat * dweight_c / M)

Eval mode uses the running statistics and is an affine map, y = (x - running_mean_c) *
alpha_c + bias_c with invstd_c = 1 / sqrt(running_var_c + eps), so dx = gy * alpha_c.

The biased batch variance is not returned; recover it as var_c = 1 / invstd_c^2 - eps
(`batch_norm_update_running` does this, then uses the unbiased var_c * M / (M - 1)).

Arrays are float32 or float64 and all share one dtype; outputs keep it.  Sums are
accumulated in float64 inside the kernels.  Each kernel runs in parallel over the
channels (`prange`): a channel's N*H*W values are read once from memory and the later
passes over them hit the cache.
"""

import numpy as np
from numba import njit, prange

from ...dtypes import FLOAT_DTYPES

# Let LLVM reorder float sums so that reductions vectorise; no nnan/ninf (NaN propagates).
REDUCE_FASTMATH = {"reassoc", "contract"}


# --------------------------------------------------------------------------------------
# Validation (runs before any kernel)
# --------------------------------------------------------------------------------------


def _check_nchw(op, name, a, dtype=None):
    """Require a 4-d float32/float64 NumPy array (of `dtype` if given); return it C-contiguous."""
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{op}: expected {name} to be a numpy.ndarray, got {type(a).__name__}")
    if a.ndim != 4:
        raise ValueError(f"{op}: expected {name} of shape (N, C, H, W), got shape {a.shape}")
    if a.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{op}: expected {name} of dtype float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise ValueError(f"{op}: expected {name} of dtype {dtype} (like x), got {a.dtype}")
    return np.ascontiguousarray(a)


def _check_channel_vector(op, name, a, n_chan, dtype, fill=None):
    """Require a (C,) array of `dtype`; None becomes `fill` (or stays None if fill is None)."""
    if a is None:
        return None if fill is None else np.full(n_chan, fill, dtype=dtype)
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{op}: expected {name} to be a numpy.ndarray, got {type(a).__name__}")
    if a.shape != (n_chan,):
        raise ValueError(f"{op}: expected {name} of shape ({n_chan},), got {a.shape}")
    if a.dtype != dtype:
        raise ValueError(f"{op}: expected {name} of dtype {dtype} (like x), got {a.dtype}")
    return np.ascontiguousarray(a)


def _check_eps(op, eps):
    if not isinstance(eps, (float, int, np.floating, np.integer)) or not eps >= 0:
        raise ValueError(f"{op}: expected eps as a number >= 0, got {eps!r}")
    return float(eps)


def _check_gy(op, gy, x):
    gy = _check_nchw(op, "gy", gy, x.dtype)
    if gy.shape != x.shape:
        raise ValueError(f"{op}: expected gy of shape {x.shape} (like x), got {gy.shape}")
    return gy


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


@njit(parallel=True, cache=True, fastmath=REDUCE_FASTMATH)
def _train_forward_kernel(x, weight, bias, eps, y, mean, invstd):
    """(N, C, L) x -> y (N, C, L), mean and invstd (C,): two-pass statistics per channel."""
    n_batch, n_chan, size = x.shape
    count = n_batch * size
    for c in prange(n_chan):
        total = np.float64(0.0)
        for b in range(n_batch):
            for k in range(size):
                total += x[b, c, k]
        mu = total / count
        squares = np.float64(0.0)
        for b in range(n_batch):
            for k in range(size):
                d = x[b, c, k] - mu
                squares += d * d
        mean[c] = mu
        invstd[c] = 1.0 / np.sqrt(squares / count + eps)
        alpha = weight[c] * invstd[c]            # x's dtype
        shift = bias[c]
        for b in range(n_batch):
            for k in range(size):
                # x - mu in float64 against the float64 mean: exact for float32 x, no cancellation
                y[b, c, k] = (x[b, c, k] - mu) * alpha + shift


@njit(parallel=True, cache=True)
def _normalize_kernel(x, mean, alpha, bias, y):
    """(N, C, L) -> (N, C, L): y = (x - mean_c) * alpha_c + bias_c (mean first: no cancellation)."""
    n_batch, n_chan, size = x.shape
    for p in prange(n_batch * n_chan):
        b = p // n_chan
        c = p - b * n_chan
        mu = mean[c]
        a = alpha[c]
        s = bias[c]
        for k in range(size):
            y[b, c, k] = (x[b, c, k] - mu) * a + s


@njit(parallel=True, cache=True, fastmath=REDUCE_FASTMATH)
def _train_backward_kernel(gy, x, weight, mean, invstd, need_dx, dx, dweight, dbias):
    """One pass for sum(gy) and sum(gy * (x - mean)) per channel, one pass for dx."""
    n_batch, n_chan, size = x.shape
    count = n_batch * size
    for c in prange(n_chan):
        mu = mean[c]
        sum_gy = np.float64(0.0)
        dot = np.float64(0.0)
        for b in range(n_batch):
            for k in range(size):
                g = gy[b, c, k]
                sum_gy += g
                dot += g * (x[b, c, k] - mu)
        dbias[c] = sum_gy
        dweight[c] = dot * invstd[c]
        if need_dx:
            istd = invstd[c]
            grad_mean = mean.dtype.type(sum_gy / count)
            proj = mean.dtype.type(dot / count) * istd * istd
            scale = weight[c] * istd
            for b in range(n_batch):
                for k in range(size):
                    dx[b, c, k] = ((gy[b, c, k] - grad_mean) - (x[b, c, k] - mu) * proj) * scale


@njit(parallel=True, cache=True, fastmath=REDUCE_FASTMATH)
def _eval_backward_kernel(gy, x, running_mean, invstd, alpha, need_dx, need_dweight,
                          dx, dweight, dbias):
    """dx = gy * alpha_c; dbias_c = sum(gy); dweight_c = invstd_c * sum(gy * (x - mean_c))."""
    n_batch, n_chan, size = gy.shape
    for c in prange(n_chan):
        a = alpha[c]
        mu = running_mean[c]
        sum_gy = np.float64(0.0)
        dot = np.float64(0.0)
        for b in range(n_batch):
            for k in range(size):
                g = gy[b, c, k]
                sum_gy += g
                if need_dweight:
                    dot += g * (x[b, c, k] - mu)
                if need_dx:
                    dx[b, c, k] = g * a
        dbias[c] = sum_gy
        dweight[c] = dot * invstd[c]


# --------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------


def _flat(a):
    """(N, C, H, W) -> (N, C, H*W) view of a C-contiguous array."""
    return a.reshape(a.shape[0], a.shape[1], a.shape[2] * a.shape[3])


def batch_norm_train_forward(x, weight, bias, eps):
    """Training-mode batch norm with batch statistics over (N, H, W).

    x: (N, C, H, W); weight, bias: (C,) or None (meaning 1 and 0).
    Returns y (N, C, H, W), mean (C,), invstd (C,) = 1 / sqrt(biased var + eps), all of
    x's dtype.  The biased variance is 1 / invstd^2 - eps.
    """
    op = "batch_norm"
    x = _check_nchw(op, "x", x)
    n_batch, n_chan, height, width = x.shape
    weight = _check_channel_vector(op, "weight", weight, n_chan, x.dtype, fill=1)
    bias = _check_channel_vector(op, "bias", bias, n_chan, x.dtype, fill=0)
    eps = _check_eps(op, eps)
    if n_batch * height * width < 2:
        raise ValueError(f"{op}: training needs more than 1 value per channel (N*H*W >= 2), "
                         f"got input of shape {x.shape}")
    y = np.empty_like(x)
    mean = np.empty(n_chan, dtype=x.dtype)
    invstd = np.empty(n_chan, dtype=x.dtype)
    _train_forward_kernel(_flat(x), weight, bias, eps, _flat(y), mean, invstd)
    return y, mean, invstd


def _eval_scale(op, running_var, weight, eps, n_chan, dtype):
    """invstd = 1 / sqrt(running_var + eps) and alpha = weight * invstd, (C,) of dtype."""
    running_var = _check_channel_vector(op, "running_var", running_var, n_chan, dtype)
    if running_var is None:
        raise ValueError(f"{op}: expected running_var of shape ({n_chan},), got None")
    weight = _check_channel_vector(op, "weight", weight, n_chan, dtype, fill=1)
    invstd = (1.0 / np.sqrt(running_var.astype(np.float64) + eps)).astype(dtype)
    return invstd, weight * invstd


def batch_norm_eval_forward(x, running_mean, running_var, weight, bias, eps):
    """Eval-mode batch norm, an affine map per channel with the running statistics.

    x: (N, C, H, W); running_mean, running_var: (C,); weight, bias: (C,) or None.
    y = (x - running_mean) / sqrt(running_var + eps) * weight + bias, of x's dtype.
    """
    op = "batch_norm_eval"
    x = _check_nchw(op, "x", x)
    n_chan = x.shape[1]
    eps = _check_eps(op, eps)
    running_mean = _check_channel_vector(op, "running_mean", running_mean, n_chan, x.dtype)
    if running_mean is None:
        raise ValueError(f"{op}: expected running_mean of shape ({n_chan},), got None")
    _, alpha = _eval_scale(op, running_var, weight, eps, n_chan, x.dtype)
    bias = _check_channel_vector(op, "bias", bias, n_chan, x.dtype, fill=0)
    y = np.empty_like(x)
    _normalize_kernel(_flat(x), running_mean, alpha, bias, _flat(y))
    return y


def batch_norm_backward(gy, x, weight, mean, invstd, need_dx=True, need_dweight=True,
                        need_dbias=True):
    """Training-mode gradient of batch_norm_train_forward, through the batch statistics.

    gy, x: (N, C, H, W); weight: (C,) or None; mean, invstd: (C,) from the forward.
    Returns (dx, dweight, dbias), each None unless asked for by need_dx/need_dweight/
    need_dbias; dx is (N, C, H, W), dweight and dbias (C,), all of x's dtype.
    """
    op = "batch_norm_backward"
    x = _check_nchw(op, "x", x)
    gy = _check_gy(op, gy, x)
    n_chan = x.shape[1]
    weight = _check_channel_vector(op, "weight", weight, n_chan, x.dtype, fill=1)
    mean = _check_channel_vector(op, "mean", mean, n_chan, x.dtype)
    invstd = _check_channel_vector(op, "invstd", invstd, n_chan, x.dtype)
    if mean is None or invstd is None:
        raise ValueError(f"{op}: expected mean and invstd of shape ({n_chan},), got None")
    dx = np.empty_like(x) if need_dx else np.empty((0, 0, 0), dtype=x.dtype)
    dweight = np.empty(n_chan, dtype=x.dtype)
    dbias = np.empty(n_chan, dtype=x.dtype)
    _train_backward_kernel(_flat(gy), _flat(x), weight, mean, invstd, bool(need_dx),
                           _flat(dx) if need_dx else dx, dweight, dbias)
    return (dx if need_dx else None, dweight if need_dweight else None,
            dbias if need_dbias else None)


def batch_norm_eval_backward(gy, running_var, weight, eps, x=None, running_mean=None,
                             need_dx=True, need_dweight=False, need_dbias=False):
    """Gradient of batch_norm_eval_forward (the running statistics are constants).

    gy: (N, C, H, W); running_var: (C,); weight: (C,) or None.
    dx = gy * weight / sqrt(running_var + eps); dbias = sum over (N, H, W) of gy;
    dweight = sum of gy * (x - running_mean) / sqrt(running_var + eps), so x and
    running_mean are needed only when need_dweight.  Returns (dx, dweight, dbias), each
    None unless asked for.
    """
    op = "batch_norm_eval_backward"
    gy = _check_nchw(op, "gy", gy)
    n_chan = gy.shape[1]
    eps = _check_eps(op, eps)
    if need_dweight:
        if x is None or running_mean is None:
            raise ValueError(f"{op}: need_dweight needs x and running_mean, got "
                             f"x={'None' if x is None else 'array'}, running_mean="
                             f"{'None' if running_mean is None else 'array'}")
        x = _check_nchw(op, "x", x, gy.dtype)
        if x.shape != gy.shape:
            raise ValueError(f"{op}: expected x of shape {gy.shape} (like gy), got {x.shape}")
        running_mean = _check_channel_vector(op, "running_mean", running_mean, n_chan, gy.dtype)
    else:
        x, running_mean = gy, np.zeros(n_chan, dtype=gy.dtype)
    invstd, alpha = _eval_scale(op, running_var, weight, eps, n_chan, gy.dtype)
    dx = np.empty_like(gy) if need_dx else np.empty((0, 0, 0), dtype=gy.dtype)
    dweight = np.empty(n_chan, dtype=gy.dtype)
    dbias = np.empty(n_chan, dtype=gy.dtype)
    _eval_backward_kernel(_flat(gy), _flat(x), running_mean, invstd, alpha, bool(need_dx),
                          bool(need_dweight), _flat(dx) if need_dx else dx, dweight, dbias)
    return (dx if need_dx else None, dweight if need_dweight else None,
            dbias if need_dbias else None)


def batch_norm_update_running(running_mean, running_var, mean, invstd, eps, n, momentum):
    """Update the running statistics in place, exactly as PyTorch's BatchNorm2d does.

    running_mean, running_var: (C,) arrays, modified in place; mean, invstd: (C,) from
    batch_norm_train_forward; n = N*H*W values per channel (n >= 2).

        var_biased   = 1 / invstd^2 - eps
        running_mean = momentum * mean + (1 - momentum) * running_mean
        running_var  = momentum * var_biased * n / (n - 1) + (1 - momentum) * running_var
    """
    op = "batch_norm_update_running"
    if not isinstance(running_mean, np.ndarray) or running_mean.ndim != 1:
        raise ValueError(f"{op}: expected running_mean as a (C,) numpy.ndarray, got "
                         f"{getattr(running_mean, 'shape', type(running_mean).__name__)}")
    n_chan = running_mean.shape[0]
    dtype = running_mean.dtype
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"{op}: expected running_mean of dtype float32 or float64, got {dtype}")
    for name, a in (("running_var", running_var), ("mean", mean), ("invstd", invstd)):
        if _check_channel_vector(op, name, a, n_chan, dtype) is None:
            raise ValueError(f"{op}: expected {name} of shape ({n_chan},), got None")
    if not (running_mean.flags.writeable and running_var.flags.writeable):
        raise ValueError(f"{op}: expected writeable running_mean and running_var")
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"{op}: expected n = N*H*W >= 2 values per channel, got {n!r}")
    if not isinstance(momentum, (float, int, np.floating)) or not 0 <= momentum <= 1:
        raise ValueError(f"{op}: expected momentum in [0, 1], got {momentum!r}")
    eps = _check_eps(op, eps)
    var_biased = np.maximum(1.0 / np.square(invstd.astype(np.float64)) - eps, 0.0)
    var_unbiased = var_biased * (n / (n - 1))
    running_mean[...] = momentum * mean.astype(np.float64) + (1 - momentum) * running_mean
    running_var[...] = momentum * var_unbiased + (1 - momentum) * running_var
