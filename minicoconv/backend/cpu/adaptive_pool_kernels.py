"""Adaptive average pooling kernels for the CPU backend.

Adaptive average pooling of an axis of length L into o bins (PyTorch's rule): bin j spans

    [floor(j*L/o), ceil((j+1)*L/o)),

which is valid for any L, o >= 1 (for L < o the bins overlap and repeat). Arrays are
NumPy NCHW, float32 or float64, validated (pool_kernels.py's checks) before a kernel runs.
The kernels run in parallel over blocks of the N*C planes; a plane is owned by one
thread, so the backward needs no atomics.
"""

import numpy as np
from numba import njit, prange

from .pool_kernels import REDUCE_FASTMATH, _check_grad, _check_nchw, _check_x_shape, _pair


@njit(cache=True)
def _bins(length, n_bins):
    """Bounds of the adaptive bins of an axis: bin i is [lo[i], hi[i]) =
    [floor(i*L/o), ceil((i+1)*L/o))."""
    lo = np.empty(n_bins, dtype=np.int64)
    hi = np.empty(n_bins, dtype=np.int64)
    for i in range(n_bins):
        lo[i] = (i * length) // n_bins
        hi[i] = ((i + 1) * length + n_bins - 1) // n_bins
    return lo, hi


@njit(cache=True, fastmath=REDUCE_FASTMATH)
def _run_sum(run):
    """Sum of a 1-d slice in float64.  Indexing a slice from 0 lets Numba drop its
    negative-index check, so the loop vectorises."""
    total = np.float64(0.0)
    for k in range(run.shape[0]):
        total += run[k]
    return total


# Planes per task of the adaptive kernels: each task allocates its scratch rows once.
_ADAPTIVE_PLANES = 64


@njit(parallel=True, cache=True, fastmath=REDUCE_FASTMATH)
def _adaptive_avg_pool2d_forward_kernel(x, y):
    """(N, C, H, W) -> (N, C, OH, OW): mean of x over rows bin(i) and columns bin(j).

    Separable: per plane, first the row-bin sums rows[i, :] = sum over r in bin(i) of
    x[r, :] (full-width, contiguous loops that vectorise), then each output sums its
    column bin of rows[i]. Bins are short (3 x 3 bins of a 16 x 16 map hold 6 x 6
    pixels), and summing each bin row by row ran as many short scalar loops.
    """
    n_batch, n_chan, height, width = x.shape
    out_h, out_w = y.shape[2], y.shape[3]
    x_planes = x.reshape(n_batch * n_chan, height, width)
    y_planes = y.reshape(n_batch * n_chan, out_h * out_w)
    r_lo, r_hi = _bins(height, out_h)
    c_lo, c_hi = _bins(width, out_w)
    n_planes = n_batch * n_chan
    for task in prange((n_planes + _ADAPTIVE_PLANES - 1) // _ADAPTIVE_PLANES):
        rows = np.empty((out_h, width), dtype=np.float64)
        for p in range(task * _ADAPTIVE_PLANES, min(n_planes, (task + 1) * _ADAPTIVE_PLANES)):
            src = x_planes[p]
            if out_h == 1 and out_w == 1:  # global average pool: one contiguous run
                y_planes[p, 0] = _run_sum(src.reshape(height * width)) / (height * width)
                continue
            for i in range(out_h):
                acc = rows[i]
                first = src[r_lo[i]]
                for k in range(width):
                    acc[k] = first[k]
                for r in range(r_lo[i] + 1, r_hi[i]):
                    row = src[r]
                    for k in range(width):
                        acc[k] += row[k]
                for j in range(out_w):
                    size = (r_hi[i] - r_lo[i]) * (c_hi[j] - c_lo[j])
                    y_planes[p, i * out_w + j] = _run_sum(acc[c_lo[j]:c_hi[j]]) / size


@njit(parallel=True, cache=True)
def _adaptive_avg_pool2d_backward_kernel(gy, dx):
    """dx[r, c] = sum over the bins (i, j) holding (r, c) of gy[i, j] / (bin(i) size * bin(j) size).

    Separable like the forward: per output row i, the column profile
    prof[c] = sum over j with c in bin(j) of gy[i, j] / size(i, j), then added to every
    row of bin(i).
    """
    n_batch, n_chan, height, width = dx.shape
    out_h, out_w = gy.shape[2], gy.shape[3]
    gy_planes = gy.reshape(n_batch * n_chan, out_h * out_w)
    dx_planes = dx.reshape(n_batch * n_chan, height, width)
    r_lo, r_hi = _bins(height, out_h)
    c_lo, c_hi = _bins(width, out_w)
    n_planes = n_batch * n_chan
    for task in prange((n_planes + _ADAPTIVE_PLANES - 1) // _ADAPTIVE_PLANES):
        prof = np.empty(width, dtype=dx.dtype)
        for p in range(task * _ADAPTIVE_PLANES, min(n_planes, (task + 1) * _ADAPTIVE_PLANES)):
            dst = dx_planes[p]
            if out_h == 1 and out_w == 1:  # global average pool: a broadcast, no scatter
                flat = dst.reshape(height * width)
                g = gy_planes[p, 0] * dx.dtype.type(1.0 / (height * width))
                for k in range(height * width):
                    flat[k] = g
                continue
            dst[:] = 0
            for i in range(out_h):
                prof[:] = 0
                for j in range(out_w):
                    size = (r_hi[i] - r_lo[i]) * (c_hi[j] - c_lo[j])
                    g = gy_planes[p, i * out_w + j] * dx.dtype.type(1.0 / size)
                    for k in range(c_lo[j], c_hi[j]):
                        prof[k] += g
                for r in range(r_lo[i], r_hi[i]):
                    row = dst[r]
                    for k in range(width):
                        row[k] += prof[k]


def adaptive_avg_pool2d_forward(x, output_size):
    """Adaptive average pooling to output_size = (OH, OW) (or an int), PyTorch's bin rule.

    x: (N, C, H, W) -> y: (N, C, OH, OW) of x's dtype; OH, OW may exceed H, W.
    """
    op = "adaptive_avg_pool2d"
    x = _check_nchw(op, "x", x)
    out_h, out_w = _pair(op, "output_size", output_size, 1)
    y = np.empty((x.shape[0], x.shape[1], out_h, out_w), dtype=x.dtype)
    _adaptive_avg_pool2d_forward_kernel(x, y)
    return y


def adaptive_avg_pool2d_backward(gy, x_shape):
    """Gradient of adaptive_avg_pool2d_forward: gy (N, C, OH, OW) -> dx (N, C, H, W)."""
    op = "adaptive_avg_pool2d"
    x_shape = _check_x_shape(op, x_shape)
    if not isinstance(gy, np.ndarray) or gy.ndim != 4 or gy.shape[:2] != x_shape[:2] \
            or min(gy.shape[2:]) < 1:
        raise ValueError(f"{op}: expected gy of shape ({x_shape[0]}, {x_shape[1]}, OH, OW) with "
                         f"OH, OW >= 1 for x_shape {x_shape}, got "
                         f"{getattr(gy, 'shape', type(gy).__name__)}")
    gy = _check_grad(op, gy, gy.shape)
    dx = np.empty(x_shape, dtype=gy.dtype)
    _adaptive_avg_pool2d_backward_kernel(gy, dx)
    return dx
