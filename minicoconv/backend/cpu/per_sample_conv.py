"""Convolution with a different kernel for every sample (CPU).

    y_b = conv2d(x_b, K_b)   x (N, C, H, W), K (N, C', C/g, kh, kw) -> y (N, C', H', W')

This is what dynamic convolutions reduce to once the experts are aggregated.
General case: the shared im2col columns of a block of samples, then ONE batched
GEMM over (sample, group) (one gemm per group): K_b (g, C'/g, K/g) @ cols_b (g, K/g, L), written
straight into y's (N, C', H'*W') layout. Backward: dK_b = gy_b @ cols_b^T
(batched GEMM), dcols_b = K_b^T @ gy_b, then col2im.
Depthwise case (C/g == 1): the batch folds into the channels, so this is an
ordinary depthwise convolution of a (1, N*C, H, W) input with N*C' kernels.
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads

from ...geometry import is_depthwise as _is_depthwise
from .blas import gemm
from .conv_kernels import BLOCK_BYTES, conv2d_output_shape
from .conv_kernels import _geometry as _conv_geometry
from .depthwise import depthwise_backward_kernel, depthwise_forward_kernel
from .im2col import col2im_blocks, im2col_blocks


def _check(op, x, kernels, stride, padding, dilation, groups):
    if getattr(kernels, "ndim", 0) != 5:
        raise ValueError(f"{op}: kernels must be 5-d (N, C', C/groups, kh, kw), got shape "
                         f"{getattr(kernels, 'shape', None)}")
    if getattr(x, "ndim", 0) != 4 or kernels.shape[0] != x.shape[0]:
        raise ValueError(f"{op}: x must be (N, C, H, W) with N == kernels.shape[0] ({kernels.shape[0]}), "
                         f"got shape {getattr(x, 'shape', None)}")
    if x.dtype != kernels.dtype:
        raise ValueError(f"{op}: x and kernels dtypes differ ({x.dtype} vs {kernels.dtype})")
    try:
        out_shape = conv2d_output_shape(x.shape, kernels.shape[1:], stride, padding, dilation, groups)
    except ValueError as err:  # name the op that was called, not the convolution it checks against
        raise ValueError(f"{op}: {str(err).removeprefix('conv2d: ')} (w = one sample's kernels)") from None
    return np.ascontiguousarray(x), np.ascontiguousarray(kernels), out_shape


def _as_depthwise(x, kernels):
    n, c, h, w = x.shape
    return x.reshape(1, n * c, h, w), kernels.reshape(-1, 1, *kernels.shape[3:])


def _depthwise_args(x, kernels, stride, padding, dilation):
    """(sh, sw, ph, pw, dh, dw) as the depthwise kernels take them (ints or pairs given)."""
    g = _conv_geometry("per_sample_conv2d", x.shape, kernels.shape[1:], stride, padding, dilation, x.shape[1])
    return (*g.stride, *g.padding, *g.dilation)


def _geometry(x, kernels, out_shape, stride, padding, dilation):
    kh, kw = kernels.shape[3:]
    return (kh, kw, *stride, *padding, *dilation, *out_shape[2:])


def per_sample_conv2d_forward(x, kernels, stride, padding, dilation, groups):
    """y_b = conv2d(x_b, kernels_b); returns (y, saved) with saved = None (columns are recomputed)."""
    x, kernels, out_shape = _check("per_sample_conv2d", x, kernels, stride, padding, dilation, groups)
    n, c = x.shape[:2]
    if _is_depthwise(x, kernels):  # y allocated in its own shape: it owns its memory (see the backward)
        y = np.empty(out_shape, dtype=x.dtype)
        depthwise_forward_kernel(*_as_depthwise(x, kernels), np.empty(0, dtype=x.dtype),
                                 *_depthwise_args(x, kernels, stride, padding, dilation), get_num_threads(),
                                 y.reshape(1, -1, *out_shape[2:]))
        return y, None
    c_out, g = out_shape[1], groups
    k, n_pix = kernels[0].size // c_out * g, out_shape[2] * out_shape[3]
    geom = _geometry(x, kernels, out_shape, stride, padding, dilation)
    y = np.empty(out_shape, dtype=x.dtype)
    y4 = y.reshape(n, g, c_out // g, n_pix)
    k4 = kernels.reshape(n, g, c_out // g, k // g)
    nb = max(1, min(n, BLOCK_BYTES // max(1, k * n_pix * x.itemsize)))
    cols_buf = np.empty(k * nb * n_pix, dtype=x.dtype)
    for n0 in range(0, n, nb):
        b = min(nb, n - n0)
        cols = cols_buf[:k * b * n_pix].reshape(k, b * n_pix)
        im2col_blocks(x, geom, n0, cols)
        cols4 = cols.reshape(g, k // g, b, n_pix).transpose(2, 0, 1, 3)
        for gi in range(g):  # one batched gemm over the block's samples per group
            gemm(k4[n0:n0 + b, gi], cols4[:, gi], y4[n0:n0 + b, gi])
    return y, None


def per_sample_conv2d_backward(gy, x, kernels, saved, stride, padding, dilation, groups, need_dx=True,
                               need_dk=True):
    """Gradients of per_sample_conv2d_forward: (dx, dkernels), None where not needed."""
    x, kernels, out_shape = _check("per_sample_conv2d", x, kernels, stride, padding, dilation, groups)
    if tuple(gy.shape) != out_shape or gy.dtype != x.dtype:
        raise ValueError(f"per_sample_conv2d: expected gy of shape {out_shape} and dtype {x.dtype}, "
                         f"got {tuple(gy.shape)} and {gy.dtype}")
    gy = np.ascontiguousarray(gy)
    n, c = x.shape[:2]
    if _is_depthwise(x, kernels):
        # dx and dk allocated in their own shapes, not reshaped views of the batch-folded ones:
        # the autograd engine adds a second gradient of x (the routing's) in place only into
        # an array that owns its memory; into a view it allocates a new x-sized array
        xd, kd = _as_depthwise(x, kernels)
        dummy = np.empty((0, 0, 0, 0), dtype=x.dtype)
        dx = np.empty(x.shape, dtype=x.dtype) if need_dx else None
        dk = np.empty(kernels.shape, dtype=x.dtype) if need_dk else None
        if need_dx or need_dk:
            depthwise_backward_kernel(gy.reshape(1, -1, *out_shape[2:]), xd, kd,
                                      *_depthwise_args(x, kernels, stride, padding, dilation), get_num_threads(),
                                      need_dx, need_dk, dummy if dx is None else dx.reshape(xd.shape),
                                      dummy if dk is None else dk.reshape(kd.shape))
        return dx, dk
    c_out, g = out_shape[1], groups
    k, n_pix = kernels[0].size // c_out * g, out_shape[2] * out_shape[3]
    geom = _geometry(x, kernels, out_shape, stride, padding, dilation)
    gy4 = gy.reshape(n, g, c_out // g, n_pix)
    k4 = kernels.reshape(n, g, c_out // g, k // g)
    dx = np.empty(x.shape, dtype=x.dtype) if need_dx else None
    dk = np.empty(kernels.shape, dtype=x.dtype) if need_dk else None
    dk4 = dk.reshape(n, g, c_out // g, k // g) if need_dk else None
    nb = max(1, min(n, BLOCK_BYTES // max(1, k * n_pix * x.itemsize)))
    cols_buf = np.empty(k * nb * n_pix, dtype=x.dtype)
    for n0 in range(0, n, nb):
        b = min(nb, n - n0)
        cols = cols_buf[:k * b * n_pix].reshape(k, b * n_pix)
        cols4 = cols.reshape(g, k // g, b, n_pix).transpose(2, 0, 1, 3)
        if need_dk:
            im2col_blocks(x, geom, n0, cols)
            for gi in range(g):
                gemm(gy4[n0:n0 + b, gi], cols4[:, gi].transpose(0, 2, 1), dk4[n0:n0 + b, gi])
        if need_dx:
            for gi in range(g):
                gemm(k4[n0:n0 + b, gi].transpose(0, 2, 1), gy4[n0:n0 + b, gi], cols4[:, gi])
            col2im_blocks(cols, geom, n0, dx)
    return dx, dk
