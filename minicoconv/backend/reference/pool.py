"""Pooling: max, average and adaptive average, forward and backward (PyTorch's rules).

Window of output pixel (i, j): rows [i*sh - ph, i*sh - ph + kh), columns [j*sw - pw, j*sw - pw + kw),
OH = (H + 2*ph - kh) // sh + 1 (OW likewise), padding <= kernel / 2. Max pooling pads with -inf and
the first maximum of a window wins (a NaN beats numbers: the last NaN); average pooling pads with
zeros and divides by kh*kw.
Adaptive pooling of an axis of length L into o bins: bin j spans [floor(j*L/o), ceil((j+1)*L/o)).
"""

from __future__ import annotations

import numpy as np

from .checks import float_array, pair, same_shape


def _geometry(op: str, x_shape: tuple, kernel, stride, padding) -> tuple:
    """Validate a window; return (kernel, stride, padding, output shape)."""
    kernel, stride = pair(op, "kernel", kernel, 1), pair(op, "stride", stride, 1)
    padding = pair(op, "padding", padding, 0)
    if 2 * padding[0] > kernel[0] or 2 * padding[1] > kernel[1]:
        raise ValueError(f"{op}: expected padding <= kernel / 2, got padding {padding} for kernel {kernel}")
    n, c, height, width = x_shape
    if min(height, width) < 1 or kernel[0] > height + 2 * padding[0] or kernel[1] > width + 2 * padding[1]:
        raise ValueError(f"{op}: expected a window no larger than the padded input, got kernel {kernel} for "
                         f"input {tuple(x_shape)} padded by {padding}")
    out_h = (height + 2 * padding[0] - kernel[0]) // stride[0] + 1
    out_w = (width + 2 * padding[1] - kernel[1]) // stride[1] + 1
    return kernel, stride, padding, (n, c, out_h, out_w)


def _x_shape(op: str, x_shape) -> tuple:
    if len(x_shape) != 4 or min(x_shape[2:]) < 1:
        raise ValueError(f"{op}: expected x_shape (N, C, H, W) with H, W >= 1, got {x_shape!r}")
    return tuple(int(s) for s in x_shape)


def _windows(xp: np.ndarray, kernel, stride) -> np.ndarray:
    """(N, C, Hp, Wp) -> (N, C, OH, OW, kh*kw): every window, flattened (a copy)."""
    win = np.lib.stride_tricks.sliding_window_view(xp, kernel, axis=(2, 3))[:, :, ::stride[0], ::stride[1]]
    return win.reshape(*win.shape[:4], -1)


def max_pool2d_forward(x: np.ndarray, kernel, stride, padding) -> tuple[np.ndarray, np.ndarray]:
    """x (N, C, H, W) -> (y (N, C, OH, OW), argmax (N, C, OH, OW) int64, the flat index r*W + s of each max)."""
    op = "max_pool2d"
    float_array(op, "x", x, 4, "(N, C, H, W)")
    (kh, kw), (sh, sw), (ph, pw), out_shape = _geometry(op, x.shape, kernel, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    win = _windows(xp, (kh, kw), (sh, sw))
    t = win.argmax(axis=-1)  # first maximum of each window, as position t = a*kw + b in it
    nan = np.isnan(win)  # a NaN wins (it propagates), the last one of its window as on the cpu and cuda
    t = np.where(nan.any(axis=-1), win.shape[-1] - 1 - nan[..., ::-1].argmax(axis=-1), t)
    y = np.take_along_axis(win, t[..., None], axis=-1)[..., 0]
    rows = np.arange(out_shape[2])[:, None] * sh - ph + t // kw
    cols = np.arange(out_shape[3])[None, :] * sw - pw + t % kw
    return y, (rows * x.shape[3] + cols).astype(np.int64)


def max_pool2d_backward(gy: np.ndarray, argmax: np.ndarray, x_shape) -> np.ndarray:
    """dx[n, c].flat[argmax[n, c, i, j]] += gy[n, c, i, j]:  gy, argmax (N, C, OH, OW) -> dx (N, C, H, W)."""
    op = "max_pool2d"
    x_shape = _x_shape(op, x_shape)
    if not isinstance(argmax, np.ndarray) or argmax.ndim != 4 or argmax.dtype not in (np.int32, np.int64) \
            or argmax.shape[:2] != x_shape[:2]:
        raise ValueError(f"{op}: expected argmax (N, C, OH, OW) of int32 or int64 for x_shape {x_shape}, got "
                         f"{getattr(argmax, 'shape', type(argmax).__name__)} {getattr(argmax, 'dtype', '')}")
    float_array(op, "gy", gy, 4, "(N, C, OH, OW)")
    same_shape(op, "gy", gy, argmax.shape, gy.dtype)
    n, c, height, width = x_shape
    if argmax.size and (argmax.min() < 0 or argmax.max() >= height * width):
        raise ValueError(f"{op}: expected argmax entries in [0, H*W) = [0, {height * width})")
    dx = np.zeros((n, c, height * width), dtype=gy.dtype)
    ni, ci = np.indices((n, c))
    np.add.at(dx, (ni[..., None], ci[..., None], argmax.reshape(n, c, -1)), gy.reshape(n, c, -1))
    return dx.reshape(x_shape)


def avg_pool2d_forward(x: np.ndarray, kernel, stride, padding) -> np.ndarray:
    """y[n, c, i, j] = sum of the zero-padded window / (kh*kw):  (N, C, H, W) -> (N, C, OH, OW)."""
    op = "avg_pool2d"
    float_array(op, "x", x, 4, "(N, C, H, W)")
    (kh, kw), stride, (ph, pw), _ = _geometry(op, x.shape, kernel, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    return (_windows(xp, (kh, kw), stride).sum(axis=-1) * x.dtype.type(1.0 / (kh * kw))).astype(x.dtype)


def avg_pool2d_backward(gy: np.ndarray, x_shape, kernel, stride, padding) -> np.ndarray:
    """dx[window(i, j)] += gy[i, j] / (kh*kw): one strided add per window offset, then crop the padding."""
    op = "avg_pool2d"
    x_shape = _x_shape(op, x_shape)
    (kh, kw), (sh, sw), (ph, pw), out_shape = _geometry(op, x_shape, kernel, stride, padding)
    float_array(op, "gy", gy, 4, "(N, C, OH, OW)")
    same_shape(op, "gy", gy, out_shape, gy.dtype)
    n, c, height, width = x_shape
    oh, ow = out_shape[2:]
    g = gy * gy.dtype.type(1.0 / (kh * kw))
    dxp = np.zeros((n, c, height + 2 * ph, width + 2 * pw), dtype=gy.dtype)
    for a in range(kh):
        for b in range(kw):
            dxp[:, :, a:a + sh * (oh - 1) + 1:sh, b:b + sw * (ow - 1) + 1:sw] += g
    return dxp[:, :, ph:ph + height, pw:pw + width]


def adaptive_bins(length: int, n_bins: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive bins of an axis: bin j = [floor(j*L/o), ceil((j+1)*L/o))."""
    return [((j * length) // n_bins, -(-((j + 1) * length) // n_bins)) for j in range(n_bins)]


def adaptive_avg_pool2d_forward(x: np.ndarray, output_size) -> np.ndarray:
    """y[n, c, i, j] = mean of x[n, c, rows bin i, columns bin j]:  (N, C, H, W) -> (N, C, OH, OW)."""
    op = "adaptive_avg_pool2d"
    float_array(op, "x", x, 4, "(N, C, H, W)")
    out_h, out_w = pair(op, "output_size", output_size, 1)
    y = np.empty((*x.shape[:2], out_h, out_w), dtype=x.dtype)
    for i, (r0, r1) in enumerate(adaptive_bins(x.shape[2], out_h)):
        for j, (c0, c1) in enumerate(adaptive_bins(x.shape[3], out_w)):
            y[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return y


def adaptive_avg_pool2d_backward(gy: np.ndarray, x_shape) -> np.ndarray:
    """dx[n, c, bin(i, j)] += gy[n, c, i, j] / |bin(i, j)|:  (N, C, OH, OW) -> (N, C, H, W)."""
    op = "adaptive_avg_pool2d"
    x_shape = _x_shape(op, x_shape)
    float_array(op, "gy", gy, 4, "(N, C, OH, OW)")
    if gy.shape[:2] != x_shape[:2] or min(gy.shape[2:]) < 1:
        raise ValueError(f"{op}: expected gy of shape ({x_shape[0]}, {x_shape[1]}, OH, OW) with OH, OW >= 1 "
                         f"for x_shape {x_shape}, got {gy.shape}")
    dx = np.zeros(x_shape, dtype=gy.dtype)
    for i, (r0, r1) in enumerate(adaptive_bins(x_shape[2], gy.shape[2])):
        for j, (c0, c1) in enumerate(adaptive_bins(x_shape[3], gy.shape[3])):
            dx[:, :, r0:r1, c0:c1] += gy[:, :, i, j, None, None] / gy.dtype.type((r1 - r0) * (c1 - c0))
    return dx
