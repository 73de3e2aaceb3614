"""Pooling kernels for the CPU backend: max and average pooling (adaptive: adaptive_pool_kernels.py).

All arrays are NumPy arrays in NCHW layout, float32 or float64; outputs keep the
input dtype.  Every public function validates its arguments first, so that the Numba
kernels below are never handed anything that makes them read or write out of bounds.

Window of output pixel (i, j) for a kernel (kh, kw), stride (sh, sw), padding (ph, pw):

    rows [i*sh - ph, i*sh - ph + kh),  columns [j*sw - pw, j*sw - pw + kw),
    OH = (H + 2*ph - kh) // sh + 1,    OW = (W + 2*pw - kw) // sw + 1,

clipped to the input (PyTorch's rules: ceil_mode=False, padding <= kernel / 2, so
every window holds at least one input pixel).  Max pooling pads with -inf; average
pooling counts the padding in the divisor (count_include_pad=True), divisor kh*kw.

The kernels run in parallel over the N*C planes of the input (`prange`); each plane
is owned by one thread, so the backward scatters need no atomics.
"""

import numpy as np
from numba import njit, prange

from ...dtypes import FLOAT_DTYPES
from ...geometry import is_int as _is_int
from ...geometry import pair as _pair  # noqa: F401  (the CUDA pooling imports it from here)

INDEX_DTYPES = (np.int32, np.int64)
# Let LLVM reorder float sums so that reductions vectorise; no nnan/ninf (NaN propagates).
REDUCE_FASTMATH = {"reassoc", "contract"}


# --------------------------------------------------------------------------------------
# Validation (runs before any kernel)
# --------------------------------------------------------------------------------------


def _check_nchw(op, name, a):
    """Require a 4-d float32/float64 NumPy array with H, W >= 1; return it C-contiguous."""
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{op}: expected {name} to be a numpy.ndarray, got {type(a).__name__}")
    if a.ndim != 4:
        raise ValueError(f"{op}: expected {name} of shape (N, C, H, W), got shape {a.shape}")
    if a.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{op}: expected {name} of dtype float32 or float64, got {a.dtype}")
    if a.shape[2] < 1 or a.shape[3] < 1:
        raise ValueError(f"{op}: expected {name} with H >= 1 and W >= 1, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _check_grad(op, gy, expected_shape):
    """Require the output gradient to be a float array of the forward output's shape."""
    if not isinstance(gy, np.ndarray):
        raise ValueError(f"{op}: expected gy to be a numpy.ndarray, got {type(gy).__name__}")
    if gy.shape != tuple(expected_shape):
        raise ValueError(f"{op}: expected gy of shape {tuple(expected_shape)}, got {gy.shape}")
    if gy.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{op}: expected gy of dtype float32 or float64, got {gy.dtype}")
    return np.ascontiguousarray(gy)


def _check_x_shape(op, x_shape):
    """Require x_shape to be four non-negative ints with H, W >= 1; return it as a tuple."""
    shape = tuple(x_shape) if isinstance(x_shape, (tuple, list)) else ()
    if (len(shape) != 4 or not all(_is_int(s) for s in shape) or min(shape) < 0
            or shape[2] < 1 or shape[3] < 1):
        raise ValueError(f"{op}: expected x_shape as (N, C, H, W) ints with H, W >= 1, "
                         f"got {x_shape!r}")
    return tuple(int(s) for s in shape)


def _window_geometry(op, x_shape, kernel, stride, padding):
    """Validate a pooling window and return (kernel, stride, padding, output shape)."""
    kernel = _pair(op, "kernel", kernel, 1)
    stride = _pair(op, "stride", stride, 1)
    padding = _pair(op, "padding", padding, 0)
    if 2 * padding[0] > kernel[0] or 2 * padding[1] > kernel[1]:
        raise ValueError(
            f"{op}: expected padding <= kernel / 2, got padding {padding} for kernel {kernel}"
        )
    n_batch, n_chan, height, width = x_shape
    padded = (height + 2 * padding[0], width + 2 * padding[1])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise ValueError(
            f"{op}: expected a window no larger than the padded input, got kernel {kernel} "
            f"for padded input size {padded}"
        )
    out_h = (padded[0] - kernel[0]) // stride[0] + 1
    out_w = (padded[1] - kernel[1]) // stride[1] + 1
    return kernel, stride, padding, (n_batch, n_chan, out_h, out_w)


# --------------------------------------------------------------------------------------
# Max pooling (_window_offsets serves average pooling too)
# --------------------------------------------------------------------------------------


@njit(cache=True)
def _window_offsets(kh, kw, width):
    """Flat offsets r*W + s of the kh*kw taps of a window, row-major (r, then s)."""
    offsets = np.empty(kh * kw, dtype=np.int64)
    for r in range(kh):
        for s in range(kw):
            offsets[r * kw + s] = r * width + s
    return offsets




@njit(parallel=True, cache=True)
def _max_pool2d_forward_kernel(x, kh, kw, sh, sw, ph, pw, y, argmax):
    """(N, C, H, W) -> y, argmax (N, C, OH, OW); argmax is a flat index into H*W.

    A window that lies inside the input walks its taps by precomputed flat offsets (one
    short loop, no clipping); a window that overlaps the padding is clipped first.
    Taps are visited row-major and taken when v > best or v is NaN: the first maximum
    wins and NaN propagates, PyTorch's rule.  The update is written as selects, not
    branches, because a branch on random data is mispredicted half the time.
    """
    n_batch, n_chan, height, width = x.shape
    out_h, out_w = y.shape[2], y.shape[3]
    x_planes = x.reshape(n_batch * n_chan, height * width)
    y_planes = y.reshape(n_batch * n_chan, out_h * out_w)
    argmax_planes = argmax.reshape(n_batch * n_chan, out_h * out_w)
    offsets = _window_offsets(kh, kw, width)
    for p in prange(n_batch * n_chan):
        src = x_planes[p]
        for i in range(out_h):
            r0 = i * sh - ph
            r_lo = max(r0, 0)
            r_hi = min(r0 + kh, height)
            for j in range(out_w):
                c0 = j * sw - pw
                best = -np.inf
                if r_lo == r0 and r_hi == r0 + kh and c0 >= 0 and c0 + kw <= width:
                    base = r0 * width + c0
                    best_idx = base
                    for t in range(kh * kw):
                        k = base + offsets[t]
                        v = src[k]
                        take = (v > best) | (v != v)
                        best = v if take else best
                        best_idx = k if take else best_idx
                else:
                    c_lo = max(c0, 0)
                    c_hi = min(c0 + kw, width)
                    best_idx = r_lo * width + c_lo
                    for r in range(r_lo, r_hi):
                        for k in range(r * width + c_lo, r * width + c_hi):
                            v = src[k]
                            take = (v > best) | (v != v)
                            best = v if take else best
                            best_idx = k if take else best_idx
                y_planes[p, i * out_w + j] = best
                argmax_planes[p, i * out_w + j] = best_idx


@njit(parallel=True, cache=True)
def _max_pool2d_backward_kernel(gy, argmax, dx):
    """dx[n, c].flat[argmax[n, c, i, j]] += gy[n, c, i, j]; returns #indices out of range."""
    n_batch, n_chan, height, width = dx.shape
    size = height * width
    n_out = gy.shape[2] * gy.shape[3]
    gy_planes = gy.reshape(n_batch * n_chan, n_out)
    argmax_planes = argmax.reshape(n_batch * n_chan, n_out)
    dx_planes = dx.reshape(n_batch * n_chan, size)
    n_bad = 0
    for p in prange(n_batch * n_chan):
        dx_planes[p, :] = 0
        for k in range(n_out):
            idx = argmax_planes[p, k]
            if idx >= 0 and idx < size:
                dx_planes[p, idx] += gy_planes[p, k]
            else:
                n_bad += 1
    return n_bad


def max_pool2d_forward(x, kernel, stride, padding):
    """Max pooling, -inf padding, first maximum wins on ties (PyTorch's MaxPool2d).

    x: (N, C, H, W) -> y: (N, C, OH, OW) of x's dtype, argmax: (N, C, OH, OW) int64,
    the flat index r*W + s into the H*W plane of each window's maximum.
    kernel, stride, padding: (h, w) pairs (or ints).
    """
    op = "max_pool2d"
    x = _check_nchw(op, "x", x)
    kernel, stride, padding, out_shape = _window_geometry(op, x.shape, kernel, stride, padding)
    y = np.empty(out_shape, dtype=x.dtype)
    argmax = np.empty(out_shape, dtype=np.int64)
    _max_pool2d_forward_kernel(x, *kernel, *stride, *padding, y, argmax)
    return y, argmax


def max_pool2d_backward(gy, argmax, x_shape):
    """Route each output gradient to the input pixel that won its window.

    gy, argmax: (N, C, OH, OW) -> dx: (N, C, H, W) of gy's dtype, x_shape = (N, C, H, W).
    """
    op = "max_pool2d"
    x_shape = _check_x_shape(op, x_shape)
    if not isinstance(argmax, np.ndarray) or argmax.ndim != 4:
        raise ValueError(f"{op}: expected argmax as a 4-d numpy.ndarray, got "
                         f"{getattr(argmax, 'shape', type(argmax).__name__)}")
    if argmax.dtype not in INDEX_DTYPES:
        raise ValueError(f"{op}: expected argmax of dtype int32 or int64, got {argmax.dtype}")
    if argmax.shape[:2] != x_shape[:2]:
        raise ValueError(f"{op}: expected argmax of shape ({x_shape[0]}, {x_shape[1]}, OH, OW) "
                         f"for x_shape {x_shape}, got {argmax.shape}")
    gy = _check_grad(op, gy, argmax.shape)
    argmax = np.ascontiguousarray(argmax)
    dx = np.empty(x_shape, dtype=gy.dtype)
    n_bad = _max_pool2d_backward_kernel(gy, argmax, dx)
    if n_bad:
        raise ValueError(f"{op}: expected argmax entries in [0, H*W) = [0, "
                         f"{x_shape[2] * x_shape[3]}), got {n_bad} outside")
    return dx


# --------------------------------------------------------------------------------------
# Average pooling
# --------------------------------------------------------------------------------------


@njit(parallel=True, cache=True, fastmath=REDUCE_FASTMATH)
def _avg_pool2d_forward_kernel(x, kh, kw, sh, sw, ph, pw, y):
    """(N, C, H, W) -> (N, C, OH, OW): window sum / (kh*kw), padding counted as zeros."""
    n_batch, n_chan, height, width = x.shape
    out_h, out_w = y.shape[2], y.shape[3]
    x_planes = x.reshape(n_batch * n_chan, height * width)
    y_planes = y.reshape(n_batch * n_chan, out_h * out_w)
    offsets = _window_offsets(kh, kw, width)
    inv_size = 1.0 / (kh * kw)
    for p in prange(n_batch * n_chan):
        src = x_planes[p]
        for i in range(out_h):
            r0 = i * sh - ph
            r_lo = max(r0, 0)
            r_hi = min(r0 + kh, height)
            for j in range(out_w):
                c0 = j * sw - pw
                total = np.float64(0.0)
                if r_lo == r0 and r_hi == r0 + kh and c0 >= 0 and c0 + kw <= width:
                    base = r0 * width + c0
                    for t in range(kh * kw):
                        total += src[base + offsets[t]]
                else:
                    for r in range(r_lo, r_hi):
                        for k in range(r * width + max(c0, 0), r * width + min(c0 + kw, width)):
                            total += src[k]
                y_planes[p, i * out_w + j] = total * inv_size


@njit(parallel=True, cache=True)
def _avg_pool2d_backward_kernel(gy, kh, kw, sh, sw, ph, pw, dx):
    """dx[window(i, j)] += gy[i, j] / (kh*kw) for every output pixel."""
    n_batch, n_chan, height, width = dx.shape
    out_h, out_w = gy.shape[2], gy.shape[3]
    gy_planes = gy.reshape(n_batch * n_chan, out_h * out_w)
    dx_planes = dx.reshape(n_batch * n_chan, height * width)
    offsets = _window_offsets(kh, kw, width)
    inv_size = dx.dtype.type(1.0 / (kh * kw))  # keeps the scatter in dx's dtype
    for p in prange(n_batch * n_chan):
        dst = dx_planes[p]
        dst[:] = 0
        for i in range(out_h):
            r0 = i * sh - ph
            r_lo = max(r0, 0)
            r_hi = min(r0 + kh, height)
            for j in range(out_w):
                c0 = j * sw - pw
                g = gy_planes[p, i * out_w + j] * inv_size
                if r_lo == r0 and r_hi == r0 + kh and c0 >= 0 and c0 + kw <= width:
                    base = r0 * width + c0
                    for t in range(kh * kw):
                        dst[base + offsets[t]] += g
                else:
                    for r in range(r_lo, r_hi):
                        for k in range(r * width + max(c0, 0), r * width + min(c0 + kw, width)):
                            dst[k] += g


def avg_pool2d_forward(x, kernel, stride, padding):
    """Average pooling with zero padding counted in the divisor (PyTorch's AvgPool2d).

    x: (N, C, H, W) -> y: (N, C, OH, OW) of x's dtype.
    """
    op = "avg_pool2d"
    x = _check_nchw(op, "x", x)
    kernel, stride, padding, out_shape = _window_geometry(op, x.shape, kernel, stride, padding)
    y = np.empty(out_shape, dtype=x.dtype)
    _avg_pool2d_forward_kernel(x, *kernel, *stride, *padding, y)
    return y


def avg_pool2d_backward(gy, x_shape, kernel, stride, padding):
    """Gradient of avg_pool2d_forward: gy (N, C, OH, OW) -> dx (N, C, H, W) of gy's dtype."""
    op = "avg_pool2d"
    x_shape = _check_x_shape(op, x_shape)
    kernel, stride, padding, out_shape = _window_geometry(op, x_shape, kernel, stride, padding)
    gy = _check_grad(op, gy, out_shape)
    dx = np.empty(x_shape, dtype=gy.dtype)
    _avg_pool2d_backward_kernel(gy, *kernel, *stride, *padding, dx)
    return dx
