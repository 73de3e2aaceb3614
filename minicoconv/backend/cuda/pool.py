"""Pooling kernels on the GPU: max, average and adaptive average pooling (NCHW).

Same contract and window rules as the CPU backend (`backend/cpu/pool_kernels.py`, whose
shape validation is reused): window (i, j) covers rows [i*sh - ph, i*sh - ph + kh) and
columns [j*sw - pw, j*sw - pw + kw), clipped to the input; max pooling pads with -inf,
average pooling divides by kh*kw (padding counted); adaptive bin i of an axis of
length L into o bins is [floor(i*L/o), ceil((i+1)*L/o)).

Forward: one thread per output element, looping over its window.
Average backward: one thread per *input* element, gathering the gradient of every
window that contains it (`windows_containing`, `bins_containing`: index helpers
compiled for both targets), so each thread writes only its own element: no atomics,
and sums that do not depend on thread timing. Max backward: one thread per output,
adding gy to the pixel whose flat index r*W + s the forward recorded in `argmax`
with an atomic add (overlapping windows can pick the same pixel; argmax entries
outside [0, H*W) are skipped, where the CPU backend raises).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ..cpu.pool_kernels import _check_x_shape, _pair, _window_geometry
from . import device as dev
from .elementwise import fill
from .indexing import adaptive_bin, bins_containing, windows_containing

_windows = windows_containing.device
_bin = adaptive_bin.device
_bins = bins_containing.device


def _decode(t, shape):
    """Flat index t of an (N, C, H, W) array -> (n, c, r, s)."""
    s = t % shape[3]
    r = (t // shape[3]) % shape[2]
    c = (t // (shape[3] * shape[2])) % shape[1]
    return t // (shape[3] * shape[2] * shape[1]), c, r, s


_nchw = cuda.jit(device=True)(_decode)


@cuda.jit
def _max_forward_kernel(x, kh, kw, sh, sw, ph, pw, y, argmax):
    height, width = x.shape[2], x.shape[3]
    for t in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        n, c, i, j = _nchw(t, y.shape)
        r_lo, r_hi = max(i * sh - ph, 0), min(i * sh - ph + kh, height)
        s_lo, s_hi = max(j * sw - pw, 0), min(j * sw - pw + kw, width)
        best = -math.inf
        best_idx = r_lo * width + s_lo
        for r in range(r_lo, r_hi):
            for s in range(s_lo, s_hi):
                v = x[n, c, r, s]
                if v > best or v != v:  # first maximum wins; NaN propagates (as the CPU kernel)
                    best = v
                    best_idx = r * width + s
        y[n, c, i, j] = best
        argmax[n, c, i, j] = best_idx


@cuda.jit
def _max_backward_kernel(gy, argmax, plane, n_out, dx):
    """Flat views: dx[p*plane + argmax[t]] += gy[t] for output t of plane p = t // n_out."""
    for t in range(cuda.grid(1), gy.size, cuda.gridsize(1)):
        idx = argmax[t]
        if 0 <= idx < plane:  # atomic: overlapping windows may pick the same pixel
            cuda.atomic.add(dx, (t // n_out) * plane + idx, gy[t])


@cuda.jit
def _avg_forward_kernel(x, kh, kw, sh, sw, ph, pw, y):
    height, width = x.shape[2], x.shape[3]
    for t in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        n, c, i, j = _nchw(t, y.shape)
        total = 0.0
        for r in range(max(i * sh - ph, 0), min(i * sh - ph + kh, height)):
            for s in range(max(j * sw - pw, 0), min(j * sw - pw + kw, width)):
                total += x[n, c, r, s]
        y[n, c, i, j] = total / (kh * kw)


@cuda.jit
def _avg_backward_kernel(gy, kh, kw, sh, sw, ph, pw, dx):
    out_h, out_w = gy.shape[2], gy.shape[3]
    for t in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        n, c, r, s = _nchw(t, dx.shape)
        i_lo, i_hi = _windows(r, ph, kh, sh, out_h)
        j_lo, j_hi = _windows(s, pw, kw, sw, out_w)
        total = 0.0
        for i in range(i_lo, i_hi):
            for j in range(j_lo, j_hi):
                total += gy[n, c, i, j]
        dx[n, c, r, s] = total / (kh * kw)


@cuda.jit
def _adaptive_forward_kernel(x, y):
    height, width = x.shape[2], x.shape[3]
    out_h, out_w = y.shape[2], y.shape[3]
    for t in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        n, c, i, j = _nchw(t, y.shape)
        r_lo, r_hi = _bin(i, height, out_h)
        s_lo, s_hi = _bin(j, width, out_w)
        total = 0.0
        for r in range(r_lo, r_hi):
            for s in range(s_lo, s_hi):
                total += x[n, c, r, s]
        y[n, c, i, j] = total / ((r_hi - r_lo) * (s_hi - s_lo))


@cuda.jit
def _adaptive_backward_kernel(gy, dx):
    height, width = dx.shape[2], dx.shape[3]
    out_h, out_w = gy.shape[2], gy.shape[3]
    for t in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        n, c, r, s = _nchw(t, dx.shape)
        i_lo, i_hi = _bins(r, height, out_h)
        j_lo, j_hi = _bins(s, width, out_w)
        total = 0.0
        for i in range(i_lo, i_hi):
            r_lo, r_hi = _bin(i, height, out_h)
            for j in range(j_lo, j_hi):
                s_lo, s_hi = _bin(j, width, out_w)
                total += gy[n, c, i, j] / ((r_hi - r_lo) * (s_hi - s_lo))
        dx[n, c, r, s] = total


# ---- validated drivers (same signatures as the CPU backend) ---------------------------------
def _check_x(op, x):
    dev.check_device_array(op, "x", x, 4, "(N, C, H, W)")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{op}: expected x with H >= 1 and W >= 1, got shape {tuple(x.shape)}")
    return x


def _check_gy(op, gy, expected_shape):
    dev.check_device_array(op, "gy", gy, 4, str(tuple(expected_shape)))
    if tuple(gy.shape) != tuple(expected_shape):
        raise ValueError(f"{op}: expected gy of shape {tuple(expected_shape)}, got {tuple(gy.shape)}")
    return gy


def max_pool2d_forward(x, kernel, stride, padding):
    """x (N, C, H, W) -> y (N, C, OH, OW), argmax (N, C, OH, OW) int64 (flat index into H*W)."""
    x = _check_x("max_pool2d", x)
    kernel, stride, padding, out_shape = _window_geometry("max_pool2d", tuple(x.shape), kernel, stride, padding)
    y, argmax = dev.empty(out_shape, x.dtype), dev.empty(out_shape, np.int64)
    dev.launch(_max_forward_kernel, y.size, x, *kernel, *stride, *padding, y, argmax)
    return y, argmax


def max_pool2d_backward(gy, argmax, x_shape):
    """gy, argmax (N, C, OH, OW) -> dx (N, C, H, W): each gy is added to the pixel its window picked."""
    op = "max_pool2d"
    x_shape = _check_x_shape(op, x_shape)
    dev.check_device_array(op, "argmax", argmax, 4, f"({x_shape[0]}, {x_shape[1]}, OH, OW)", floating=False)
    if argmax.dtype not in (np.int32, np.int64) or tuple(argmax.shape[:2]) != x_shape[:2]:
        raise ValueError(f"{op}: expected argmax of dtype int32/int64 and shape ({x_shape[0]}, {x_shape[1]}, OH, OW),"
                         f" got {argmax.dtype} {tuple(argmax.shape)}")
    gy = _check_gy(op, gy, argmax.shape)
    dx = fill(dev.empty(x_shape, gy.dtype), 0)
    dev.launch(_max_backward_kernel, gy.size, dev.flat(gy), dev.flat(argmax), x_shape[2] * x_shape[3],
               argmax.shape[2] * argmax.shape[3], dev.flat(dx))
    return dx


def avg_pool2d_forward(x, kernel, stride, padding):
    """Average over each window, zero padding counted: x (N, C, H, W) -> (N, C, OH, OW)."""
    x = _check_x("avg_pool2d", x)
    kernel, stride, padding, out_shape = _window_geometry("avg_pool2d", tuple(x.shape), kernel, stride, padding)
    y = dev.empty(out_shape, x.dtype)
    dev.launch(_avg_forward_kernel, y.size, x, *kernel, *stride, *padding, y)
    return y


def avg_pool2d_backward(gy, x_shape, kernel, stride, padding):
    """Gradient of avg_pool2d_forward: gy (N, C, OH, OW) -> dx (N, C, H, W)."""
    x_shape = _check_x_shape("avg_pool2d", x_shape)
    kernel, stride, padding, out_shape = _window_geometry("avg_pool2d", x_shape, kernel, stride, padding)
    gy = _check_gy("avg_pool2d", gy, out_shape)
    dx = dev.empty(x_shape, gy.dtype)
    dev.launch(_avg_backward_kernel, dx.size, gy, *kernel, *stride, *padding, dx)
    return dx


def adaptive_avg_pool2d_forward(x, output_size):
    """Mean over PyTorch's adaptive bins: x (N, C, H, W) -> (N, C, OH, OW)."""
    x = _check_x("adaptive_avg_pool2d", x)
    out_h, out_w = _pair("adaptive_avg_pool2d", "output_size", output_size, 1)
    y = dev.empty((x.shape[0], x.shape[1], out_h, out_w), x.dtype)
    dev.launch(_adaptive_forward_kernel, y.size, x, y)
    return y


def adaptive_avg_pool2d_backward(gy, x_shape):
    """Gradient of adaptive_avg_pool2d_forward: gy (N, C, OH, OW) -> dx (N, C, H, W)."""
    op = "adaptive_avg_pool2d"
    x_shape = _check_x_shape(op, x_shape)
    dev.check_device_array(op, "gy", gy, 4, f"({x_shape[0]}, {x_shape[1]}, OH, OW)")
    if tuple(gy.shape[:2]) != x_shape[:2] or min(gy.shape[2:]) < 1:
        raise ValueError(f"{op}: expected gy of shape ({x_shape[0]}, {x_shape[1]}, OH, OW) with OH, OW >= 1 "
                         f"for x_shape {x_shape}, got {tuple(gy.shape)}")
    dx = dev.empty(x_shape, gy.dtype)
    dev.launch(_adaptive_backward_kernel, dx.size, gy, dx)
    return dx
