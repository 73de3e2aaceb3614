"""Convolution, the textbook way: im2col by stride tricks, then one matmul per group.

    x (N, C, H, W), w (C', C/G, kh, kw), groups G, stride s, padding p, dilation d
    OH = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1      (OW likewise)
    cols[n, c*kh*kw + i*kw + j, oh*OW + ow] = xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]
    y[n, g] = w[g] (C'/G, C/G*kh*kw) @ cols[n, g] (C/G*kh*kw, OH*OW)

Backward of y = W @ cols:  dW = gy @ cols^T (summed over the batch: one matmul over N*L),
dcols = W^T @ gy, and dx = col2im(dcols), the adjoint of im2col (overlapping windows add).
Per-sample, gathered (DGC) and mixture (CondConv, DY-CNN, ODConv) convolutions are the same
im2col with a different W per sample.
"""

from __future__ import annotations

import numpy as np

from ...geometry import conv_geometry as _geometry
from .checks import float_array, same_shape

Pair = tuple[int, int]


def conv_geometry(op: str, x_shape: tuple, w_shape: tuple, stride, padding, dilation, groups) -> tuple:
    """Validate a convolution (geometry.conv_geometry); return (stride, padding, dilation, output shape)."""
    g = _geometry(op, x_shape, w_shape, stride, padding, dilation, groups)
    return g.stride, g.padding, g.dilation, g.out_shape


def im2col(x: np.ndarray, kh: int, kw: int, stride: Pair, padding: Pair, dilation: Pair) -> np.ndarray:
    """x (N, C, H, W) -> cols (N, C*kh*kw, OH*OW), row c*kh*kw + i*kw + j (a copy of strided windows)."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # (N, C, OH, OW, kh, kw)
    n, c, oh, ow = win.shape[:4]
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * kh * kw, oh * ow)


def col2im(cols: np.ndarray, x_shape: tuple, kh: int, kw: int, stride: Pair, padding: Pair,
           dilation: Pair, out_hw: Pair) -> np.ndarray:
    """Adjoint of im2col: cols (N, C*kh*kw, OH*OW) -> dx (N, C, H, W), one strided add per offset (i, j)."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, height, width = x_shape
    oh, ow = out_hw
    c6 = cols.reshape(n, c, kh, kw, oh, ow)
    dxp = np.zeros((n, c, height + 2 * ph, width + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw] += c6[:, :, i, j]
    return dxp[:, :, ph:ph + height, pw:pw + width]


def _check_conv(op, x, w, stride, padding, dilation, groups, w_ndim=4):
    float_array(op, "x", x, 4, "(N, C, H, W)")
    float_array(op, "w", w, w_ndim, "(C', C/groups, kh, kw)" if w_ndim == 4 else "(N, C', C/groups, kh, kw)",
                x.dtype)
    if w_ndim == 5 and w.shape[0] != x.shape[0]:
        raise ValueError(f"{op}: expected kernels for each of the N = {x.shape[0]} samples, got {w.shape}")
    return conv_geometry(op, x.shape, w.shape[w_ndim - 4:], stride, padding, dilation, groups)


def conv2d_forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, stride=1, padding=0,
                   dilation=1, groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """y = conv2d(x, w) + bias: x (N, C, H, W), w (C', C/G, kh, kw), bias (C',) or None -> (y, saved).

    y[n, g] = w[g] @ cols[n, g] + bias; saved = cols (N, C*kh*kw, OH*OW), reused by the backward.
    """
    s, p, d, out_shape = _check_conv("conv2d", x, w, stride, padding, dilation, groups)
    if bias is not None:
        same_shape("conv2d", "bias", bias, (w.shape[0],), x.dtype)
    n, c_out, oh, ow = out_shape
    cols = im2col(x, *w.shape[2:], s, p, d)
    y = np.matmul(w.reshape(1, groups, c_out // groups, -1), cols.reshape(n, groups, -1, oh * ow))
    y = y.reshape(out_shape)
    return (y if bias is None else y + bias.reshape(1, -1, 1, 1)), cols


def conv2d_backward(gy: np.ndarray, x: np.ndarray, w: np.ndarray, saved: np.ndarray | None = None, stride=1,
                    padding=0, dilation=1, groups: int = 1, need_dx: bool = True, need_dw: bool = True,
                    need_db: bool = True) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(dx, dw, db) of conv2d_forward for gy (N, C', OH, OW), each None unless its need_* flag is set.

    dw[g] = sum_n gy[n, g] @ cols[n, g]^T,  dx = col2im(w[g]^T @ gy[n, g]),  db = sum over (N, OH, OW) of gy.
    """
    s, p, d, out_shape = _check_conv("conv2d", x, w, stride, padding, dilation, groups)
    same_shape("conv2d", "gy", gy, out_shape, x.dtype)
    n, c_out, oh, ow = out_shape
    g, kk = groups, w.shape[1] * w.shape[2] * w.shape[3]
    gy4 = gy.reshape(n, g, c_out // g, oh * ow)
    dx = dw = db = None
    if need_dw:
        cols = saved if saved is not None else im2col(x, *w.shape[2:], s, p, d)
        cols_g = cols.reshape(n, g, kk, oh * ow).transpose(1, 0, 3, 2).reshape(g, n * oh * ow, kk)
        gy_g = gy4.transpose(1, 2, 0, 3).reshape(g, c_out // g, n * oh * ow)
        dw = np.matmul(gy_g, cols_g).reshape(w.shape)  # (G, C'/G, N*L) @ (G, N*L, kk): one matmul
    if need_dx:
        dcols = np.matmul(w.reshape(1, g, c_out // g, kk).transpose(0, 1, 3, 2), gy4)  # (N, G, kk, L)
        dx = col2im(dcols.reshape(n, -1, oh * ow), x.shape, *w.shape[2:], s, p, d, (oh, ow))
    if need_db:
        db = gy.sum(axis=(0, 2, 3))
    return dx, dw, db


def per_sample_conv2d_forward(x: np.ndarray, kernels: np.ndarray, stride, padding, dilation,
                              groups: int) -> tuple[np.ndarray, None]:
    """y[b] = conv2d(x[b], kernels[b]): x (N, C, H, W), kernels (N, C', C/G, kh, kw) -> (y, None)."""
    s, p, d, out_shape = _check_conv("per_sample_conv2d", x, kernels, stride, padding, dilation, groups, 5)
    n, c_out, oh, ow = out_shape
    cols = im2col(x, *kernels.shape[3:], s, p, d).reshape(n, groups, -1, oh * ow)
    y = np.matmul(kernels.reshape(n, groups, c_out // groups, -1), cols)  # (N, G, C'/G, L)
    return y.reshape(out_shape), None


def per_sample_conv2d_backward(gy: np.ndarray, x: np.ndarray, kernels: np.ndarray, saved, stride, padding,
                               dilation, groups: int, need_dx: bool = True,
                               need_dk: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(dx, dkernels): dkernels[b, g] = gy[b, g] @ cols[b, g]^T, dx[b] = col2im(kernels[b, g]^T @ gy[b, g])."""
    s, p, d, out_shape = _check_conv("per_sample_conv2d", x, kernels, stride, padding, dilation, groups, 5)
    same_shape("per_sample_conv2d", "gy", gy, out_shape, x.dtype)
    n, c_out, oh, ow = out_shape
    k4 = kernels.reshape(n, groups, c_out // groups, -1)
    gy4 = gy.reshape(n, groups, c_out // groups, oh * ow)
    dx = dk = None
    if need_dk:
        cols = im2col(x, *kernels.shape[3:], s, p, d).reshape(n, groups, -1, oh * ow)
        dk = np.matmul(gy4, cols.transpose(0, 1, 3, 2)).reshape(kernels.shape)
    if need_dx:
        dcols = np.matmul(k4.transpose(0, 1, 3, 2), gy4).reshape(n, -1, oh * ow)
        dx = col2im(dcols, x.shape, *kernels.shape[3:], s, p, d, (oh, ow))
    return dx, dk


def gathered_conv2d_forward(x: np.ndarray, weight: np.ndarray, idx: np.ndarray, scale: np.ndarray, stride=1,
                            padding=0) -> np.ndarray:
    """DGC's sparse inference: each sample and group convolves only its gathered input channels.

    x (N, C, H, W), weight (G, C'/G, C, kh, kw), idx (G, N, K) integers in [0, C), scale (G, N, K)
    -> y (N, C', OH, OW):  y[b, g*C'/G + o] = sum_j scale[g, b, j] * conv2d(x[b, idx[g, b, j]],
    weight[g, o, idx[g, b, j]]), i.e. a per-sample conv of the gathered, scaled channels.
    """
    op = "gathered_conv2d"
    float_array(op, "x", x, 4, "(N, C, H, W)")
    float_array(op, "weight", weight, 5, "(G, C'/G, C, kh, kw)", x.dtype)
    if not isinstance(idx, np.ndarray) or idx.dtype.kind not in "iu" or idx.ndim != 3:
        raise ValueError(f"{op}: expected idx as a 3-d integer numpy.ndarray (G, N, K), got "
                         f"{getattr(idx, 'dtype', type(idx).__name__)} of shape {getattr(idx, 'shape', None)}")
    float_array(op, "scale", scale, 3, "(G, N, K)", x.dtype)
    n_batch, c_in = x.shape[:2]
    n_groups, c_out_g, c_w, kh, kw = weight.shape
    if c_w != c_in or idx.shape[:2] != (n_groups, n_batch) or scale.shape != idx.shape:
        raise ValueError(f"{op}: expected weight (G, C'/G, C={c_in}, kh, kw), idx and scale (G, N, K), got "
                         f"weight {weight.shape}, idx {idx.shape}, scale {scale.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= c_in):
        raise ValueError(f"{op}: expected idx in [0, C) = [0, {c_in}), got values in [{idx.min()}, {idx.max()}]")
    s, p, _, out_shape = conv_geometry(op, (n_batch, n_groups, *x.shape[2:]), (n_groups * c_out_g, 1, kh, kw),
                                       stride, padding, 1, n_groups)
    if n_batch == 0 or idx.shape[2] == 0:
        return np.zeros(out_shape, dtype=x.dtype)
    y = np.zeros(out_shape, dtype=x.dtype)
    rows = np.arange(n_batch)[:, None]
    for g in range(n_groups):
        xs = x[rows, idx[g]] * scale[g][:, :, None, None]  # (N, K, H, W): gathered, scaled channels
        kernels = weight[g][:, idx[g]].transpose(1, 0, 2, 3, 4)  # (C'/G, N, K, kh, kw) -> (N, C'/G, K, kh, kw)
        part, _ = per_sample_conv2d_forward(xs, np.ascontiguousarray(kernels), s, p, 1, 1)
        y[:, g * c_out_g:(g + 1) * c_out_g] = part
    return y
