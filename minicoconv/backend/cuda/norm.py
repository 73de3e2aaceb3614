"""Fused batch-norm kernels on the GPU, same contract as the CPU backend (`norm_kernels.py`).

Per channel c over its M = N*H*W values (x viewed as (N, C, L), L = H*W):

    mean_c = sum(x) / M,   var_c = sum((x - mean_c)^2) / M    (two passes, float64)
    invstd_c = 1 / sqrt(var_c + eps),   y = (x - mean_c) * invstd_c * weight_c + bias_c
    backward:  dbias_c = sum(gy),  dweight_c = invstd_c * sum(gy * (x - mean_c)),
               dx = weight_c * invstd_c * (gy - dbias_c/M - (x - mean_c) * invstd_c^2 * sum(gy*(x - mean_c))/M)

Training kernels give one *block* to a channel: its threads stride over the M values
(neighbouring threads, neighbouring memory), `block_sum` adds the per-thread partial
sums in shared memory, and the same block then writes y (or dx) for the channel: the
statistics never leave the chip. Eval mode is an affine map per channel: a tiny kernel
makes alpha = weight * invstd, and one thread per element computes
y = (x - running_mean_c) * alpha_c + bias_c. Both modes subtract the mean before scaling:
folding it into a shift, x * alpha_c + (bias_c - mean_c * alpha_c), cancels catastrophically
when |mean| >> std.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ..cpu.norm_kernels import _check_eps
from . import device as dev
from .creation import full
from .reduce import block_sum

THREADS = dev.THREADS


@cuda.jit
def _train_forward_kernel(x, weight, bias, eps, y, mean, invstd):
    partial = cuda.shared.array(THREADS, np.float64)
    n_batch, n_chan, size = x.shape[0], x.shape[1], x.shape[2]
    count, tid = n_batch * size, cuda.threadIdx.x
    for c in range(cuda.blockIdx.x, n_chan, cuda.gridDim.x):
        total = np.float64(0.0)  # float64 sums, also under the simulator (NumPy would keep float32)
        for q in range(tid, count, THREADS):
            total += x[q // size, c, q % size]
        mu = block_sum(partial, total) / count
        squares = np.float64(0.0)
        for q in range(tid, count, THREADS):
            d = x[q // size, c, q % size] - mu
            squares += d * d
        istd = 1.0 / math.sqrt(block_sum(partial, squares) / count + eps)
        if tid == 0:
            mean[c] = mu
            invstd[c] = istd
        alpha = weight[c] * istd
        for q in range(tid, count, THREADS):  # x - mu against the float64 mean: no cancellation
            y[q // size, c, q % size] = (x[q // size, c, q % size] - mu) * alpha + bias[c]


@cuda.jit
def _train_backward_kernel(gy, x, weight, mean, invstd, need_dx, dx, dweight, dbias):
    partial = cuda.shared.array(THREADS, np.float64)
    n_batch, n_chan, size = x.shape[0], x.shape[1], x.shape[2]
    count, tid = n_batch * size, cuda.threadIdx.x
    for c in range(cuda.blockIdx.x, n_chan, cuda.gridDim.x):
        mu = mean[c]
        part_gy, part_dot = 0.0, 0.0
        for q in range(tid, count, THREADS):
            g = gy[q // size, c, q % size]
            part_gy += g
            part_dot += g * (x[q // size, c, q % size] - mu)
        sum_gy = block_sum(partial, part_gy)
        dot = block_sum(partial, part_dot)
        istd = invstd[c]
        if tid == 0:
            dbias[c] = sum_gy
            dweight[c] = dot * istd
        if need_dx:
            grad_mean, proj, scale = sum_gy / count, dot / count * istd * istd, weight[c] * istd
            for q in range(tid, count, THREADS):
                b, k = q // size, q % size
                dx[b, c, k] = ((gy[b, c, k] - grad_mean) - (x[b, c, k] - mu) * proj) * scale


@cuda.jit
def _eval_scale_kernel(running_var, weight, eps, invstd, alpha):
    for c in range(cuda.grid(1), invstd.size, cuda.gridsize(1)):
        istd = 1.0 / math.sqrt(running_var[c] + eps)
        invstd[c] = istd
        alpha[c] = weight[c] * istd


@cuda.jit
def _normalize_kernel(x, mean, alpha, bias, size, y):
    """Flat views of (N, C, L) arrays: y = (x - mean_c) * alpha_c + bias_c."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        c = (i // size) % alpha.size
        y[i] = (x[i] - mean[c]) * alpha[c] + bias[c]


@cuda.jit
def _eval_backward_kernel(gy, x, running_mean, invstd, alpha, need_dx, need_dweight, dx, dweight, dbias):
    partial = cuda.shared.array(THREADS, np.float64)
    n_batch, n_chan, size = gy.shape[0], gy.shape[1], gy.shape[2]
    count, tid = n_batch * size, cuda.threadIdx.x
    for c in range(cuda.blockIdx.x, n_chan, cuda.gridDim.x):
        part_gy, part_dot = 0.0, 0.0
        for q in range(tid, count, THREADS):
            b, k = q // size, q % size
            g = gy[b, c, k]
            part_gy += g
            if need_dweight:
                part_dot += g * (x[b, c, k] - running_mean[c])
            if need_dx:
                dx[b, c, k] = g * alpha[c]
        sum_gy = block_sum(partial, part_gy)
        dot = block_sum(partial, part_dot)
        if tid == 0:
            dbias[c] = sum_gy
            dweight[c] = dot * invstd[c]


@cuda.jit
def _update_running_kernel(running_mean, running_var, mean, invstd, eps, n, momentum):
    for c in range(cuda.grid(1), mean.size, cuda.gridsize(1)):
        istd = np.float64(invstd[c])
        var_unbiased = max(1.0 / (istd * istd) - eps, 0.0) * (n / (n - 1))
        running_mean[c] = momentum * mean[c] + (1 - momentum) * running_mean[c]
        running_var[c] = momentum * var_unbiased + (1 - momentum) * running_var[c]


# ---- validated drivers (same signatures as the CPU backend) ---------------------------------
def _check_nchw(op, name, a, dtype=None):
    dev.check_device_array(op, name, a, 4, "(N, C, H, W)")
    if dtype is not None and a.dtype != dtype:
        raise ValueError(f"{op}: expected {name} of dtype {dtype} (like x), got {a.dtype}")
    return a


def _vector(op, name, a, n_chan, dtype, fill=None):
    """A (C,) array of `dtype`; None becomes a constant `fill` (or stays None)."""
    if a is None:
        return None if fill is None else full((n_chan,), fill, dtype)
    dev.check_device_array(op, name, a, 1, f"({n_chan},)")
    if tuple(a.shape) != (n_chan,) or a.dtype != dtype:
        raise ValueError(f"{op}: expected {name} of shape ({n_chan},) and dtype {dtype}, got {tuple(a.shape)} "
                         f"and {a.dtype}")
    return a


def _required(op, name, a, n_chan, dtype):
    if a is None:
        raise ValueError(f"{op}: expected {name} of shape ({n_chan},), got None")
    return _vector(op, name, a, n_chan, dtype)


def _flat3(a):
    """(N, C, H, W) -> (N, C, H*W) view."""
    return a.reshape((a.shape[0], a.shape[1], a.shape[2] * a.shape[3]))


def batch_norm_train_forward(x, weight, bias, eps):
    """Batch statistics over (N, H, W): returns y (N, C, H, W), mean (C,), invstd (C,)."""
    op = "batch_norm"
    x = _check_nchw(op, "x", x)
    n_batch, n_chan, height, width = x.shape
    weight = _vector(op, "weight", weight, n_chan, x.dtype, fill=1)
    bias = _vector(op, "bias", bias, n_chan, x.dtype, fill=0)
    eps = _check_eps(op, eps)
    if n_batch * height * width < 2:
        raise ValueError(f"{op}: training needs more than 1 value per channel (N*H*W >= 2), "
                         f"got input of shape {tuple(x.shape)}")
    y = dev.empty(x.shape, x.dtype)
    mean, invstd = dev.empty((n_chan,), x.dtype), dev.empty((n_chan,), x.dtype)
    dev.launch(_train_forward_kernel, n_chan, _flat3(x), weight, bias, eps, _flat3(y), mean, invstd,
               items_per_block=1)
    return y, mean, invstd


def _eval_scale(op, running_mean, running_var, weight, bias, eps, n_chan, dtype):
    """(invstd, alpha, running_mean, bias), each (C,) of dtype: alpha = weight * invstd from the running var."""
    running_mean = _required(op, "running_mean", running_mean, n_chan, dtype)
    running_var = _required(op, "running_var", running_var, n_chan, dtype)
    weight = _vector(op, "weight", weight, n_chan, dtype, fill=1)
    bias = _vector(op, "bias", bias, n_chan, dtype, fill=0)
    invstd, alpha = dev.empty((n_chan,), dtype), dev.empty((n_chan,), dtype)
    dev.launch(_eval_scale_kernel, n_chan, running_var, weight, eps, invstd, alpha)
    return invstd, alpha, running_mean, bias


def batch_norm_eval_forward(x, running_mean, running_var, weight, bias, eps):
    """Eval mode: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias."""
    op = "batch_norm_eval"
    x = _check_nchw(op, "x", x)
    eps = _check_eps(op, eps)
    _, alpha, mean, bias = _eval_scale(op, running_mean, running_var, weight, bias, eps, x.shape[1], x.dtype)
    y = dev.empty(x.shape, x.dtype)
    dev.launch(_normalize_kernel, x.size, dev.flat(x), mean, alpha, bias, x.shape[2] * x.shape[3], dev.flat(y))
    return y


def batch_norm_backward(gy, x, weight, mean, invstd, need_dx=True, need_dweight=True, need_dbias=True):
    """Training-mode gradients through the batch statistics: (dx, dweight, dbias), None unless asked."""
    op = "batch_norm_backward"
    x = _check_nchw(op, "x", x)
    gy = _check_nchw(op, "gy", gy, x.dtype)
    if tuple(gy.shape) != tuple(x.shape):
        raise ValueError(f"{op}: expected gy of shape {tuple(x.shape)} (like x), got {tuple(gy.shape)}")
    n_chan = x.shape[1]
    weight = _vector(op, "weight", weight, n_chan, x.dtype, fill=1)
    mean = _required(op, "mean", mean, n_chan, x.dtype)
    invstd = _required(op, "invstd", invstd, n_chan, x.dtype)
    dx = dev.empty(x.shape, x.dtype) if need_dx else None
    dweight, dbias = dev.empty((n_chan,), x.dtype), dev.empty((n_chan,), x.dtype)
    dev.launch(_train_backward_kernel, n_chan, _flat3(gy), _flat3(x), weight, mean, invstd, bool(need_dx),
               _flat3(dx) if need_dx else _flat3(gy), dweight, dbias, items_per_block=1)
    return dx, (dweight if need_dweight else None), (dbias if need_dbias else None)


def batch_norm_eval_backward(gy, running_var, weight, eps, x=None, running_mean=None,
                             need_dx=True, need_dweight=False, need_dbias=False):
    """Gradient of the eval-mode map (running statistics are constants): (dx, dweight, dbias)."""
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
        if tuple(x.shape) != tuple(gy.shape):
            raise ValueError(f"{op}: expected x of shape {tuple(gy.shape)} (like gy), got {tuple(x.shape)}")
    else:
        x, running_mean = gy, full((n_chan,), 0, gy.dtype)
    invstd, alpha, running_mean, _ = _eval_scale(op, running_mean, running_var, weight, None, eps, n_chan,
                                                 gy.dtype)
    dx = dev.empty(gy.shape, gy.dtype) if need_dx else None
    dweight, dbias = dev.empty((n_chan,), gy.dtype), dev.empty((n_chan,), gy.dtype)
    dev.launch(_eval_backward_kernel, n_chan, _flat3(gy), _flat3(x), running_mean, invstd, alpha, bool(need_dx),
               bool(need_dweight), _flat3(dx) if need_dx else _flat3(gy), dweight, dbias, items_per_block=1)
    return dx, (dweight if need_dweight else None), (dbias if need_dbias else None)


def batch_norm_update_running(running_mean, running_var, mean, invstd, eps, n, momentum):
    """Move the running statistics towards the batch's, in place (PyTorch's rule, unbiased var)."""
    op = "batch_norm_update_running"
    dev.check_device_array(op, "running_mean", running_mean, 1, "(C,)")
    n_chan, dtype = running_mean.shape[0], running_mean.dtype
    for name, a in (("running_var", running_var), ("mean", mean), ("invstd", invstd)):
        _required(op, name, a, n_chan, dtype)
    if not isinstance(n, int | np.integer) or n < 2:
        raise ValueError(f"{op}: expected n = N*H*W >= 2 values per channel, got {n!r}")
    if not isinstance(momentum, float | int | np.floating) or not 0 <= momentum <= 1:
        raise ValueError(f"{op}: expected momentum in [0, 1], got {momentum!r}")
    eps = _check_eps(op, eps)
    dev.launch(_update_running_kernel, n_chan, running_mean, running_var, mean, invstd, eps, int(n),
               float(momentum))
