"""Convolution with a different kernel for every sample (what dynamic convolutions reduce to).

    y_b = conv2d(x_b, K_b)   x (N, C, H, W), K (N, C', C/g, kh, kw) -> y (N, C', H', W')

General case, per chunk of samples: the columns in layout (nb, K, L), then ONE batched
GEMM over (sample, group), K_b[grp] (C'/g, K/g) @ cols_b[grp] (K/g, L), written
straight into y. Backward: dK_b = gy_b @ cols_b^T and dcols_b = K_b^T @ gy_b (batched
GEMMs, the transposes are swapped strides), then col2im.
Depthwise case (C/g == 1): the batch folds into the channels, an ordinary depthwise
convolution of a (1, N*C, H, W) input with N*C' kernels, as on the CPU.
"""

from __future__ import annotations

from ...geometry import is_depthwise as _is_depthwise
from . import device as dev
from .conv import check_conv, chunk, conv2d_backward, conv2d_forward
from .im2col import col2im, im2col
from .linalg import Operand, gemm


def _check(op, x, kernels, stride, padding, dilation, groups):
    dev.check_device_array(op, "x", x, 4, "(N, C, H, W)")
    dev.check_device_array(op, "kernels", kernels, 5, "(N, C', C/groups, kh, kw)")
    if x.shape[0] != kernels.shape[0]:
        raise ValueError(f"{op}: x must be (N, C, H, W) with N == kernels.shape[0] ({kernels.shape[0]}), "
                         f"got shape {tuple(x.shape)}")
    return check_conv(op, x, kernels.shape[1:], kernels.dtype, stride, padding, dilation, groups)


def _as_depthwise(x, kernels):
    n, c, h, w = x.shape
    return x.reshape((1, n * c, h, w)), kernels.reshape((-1, 1, *kernels.shape[3:]))


def _operands(x, kernels, geom, groups, n0, cols):
    """GEMM operands for the samples from n0, each a (sample, group) batch of matrices:
    kernels (C'/g, K/g), columns (K/g, L), output (C'/g, L); and the sizes (K, K/g, C'/g, L)."""
    c_out, n_pix = kernels.shape[1], geom.out_h * geom.out_w
    k = x.shape[1] * geom.kh * geom.kw
    kg, cg = k // groups, c_out // groups
    kern = Operand(dev.flat(kernels), n0 * c_out * kg, (c_out * kg, cg * kg), kg, 1)
    cols_op = Operand(cols, 0, (k * n_pix, kg * n_pix), n_pix, 1)
    out = Operand(None, n0 * c_out * n_pix, (c_out * n_pix, cg * n_pix), n_pix, 1)
    return kern, cols_op, out, (k, kg, cg, n_pix)


def _columns_buffer(x, kernels, geom):
    k, n_pix = x.shape[1] * geom.kh * geom.kw, geom.out_h * geom.out_w
    nb = chunk(x.shape[0], k * n_pix * x.dtype.itemsize)
    return nb, dev.empty((nb * k * n_pix,), x.dtype)


def per_sample_conv2d_forward(x, kernels, stride, padding, dilation, groups):
    """y_b = conv2d(x_b, kernels_b); returns (y, None) (columns are recomputed in backward)."""
    geom = _check("per_sample_conv2d", x, kernels, stride, padding, dilation, groups)
    n, c_out = x.shape[0], kernels.shape[1]
    if _is_depthwise(x, kernels):
        y, _ = conv2d_forward(*_as_depthwise(x, kernels), None, stride, padding, dilation, n * x.shape[1])
        return y.reshape((n, c_out, geom.out_h, geom.out_w)), None
    y = dev.empty((n, c_out, geom.out_h, geom.out_w), x.dtype)
    nb, cols = _columns_buffer(x, kernels, geom)
    for n0 in range(0, n, nb):
        b = min(nb, n - n0)
        kern, cols_op, out, (k, kg, cg, n_pix) = _operands(x, kernels, geom, groups, n0, cols)
        im2col(x, n0, b, geom, cols, k * n_pix, n_pix)
        gemm(kern, cols_op, out._replace(data=dev.flat(y)), (b, groups), cg, n_pix, kg)
    return y, None


def per_sample_conv2d_backward(gy, x, kernels, saved, stride, padding, dilation, groups, need_dx=True,
                               need_dk=True):
    """Gradients of per_sample_conv2d_forward: (dx, dkernels), None where not needed."""
    geom = _check("per_sample_conv2d", x, kernels, stride, padding, dilation, groups)
    n, c_out = x.shape[0], kernels.shape[1]
    expected = (n, c_out, geom.out_h, geom.out_w)
    dev.check_device_array("per_sample_conv2d", "gy", gy, 4, str(expected))
    if tuple(gy.shape) != expected or gy.dtype != x.dtype:
        raise ValueError(f"per_sample_conv2d: expected gy of shape {expected} and dtype {x.dtype}, "
                         f"got {tuple(gy.shape)} and {gy.dtype}")
    if _is_depthwise(x, kernels):
        xd, kd = _as_depthwise(x, kernels)
        dx, dk, _ = conv2d_backward(gy.reshape((1, -1, *expected[2:])), xd, kd, None, stride, padding, dilation,
                                    n * x.shape[1], need_dx, need_dk, False)
        return (dx.reshape(x.shape) if need_dx else None), (dk.reshape(kernels.shape) if need_dk else None)
    dx = dev.empty(x.shape, x.dtype) if need_dx else None
    dk = dev.empty(kernels.shape, x.dtype) if need_dk else None
    nb, cols = _columns_buffer(x, kernels, geom)
    for n0 in range(0, n, nb):
        b = min(nb, n - n0)
        kern, cols_op, out, (k, kg, cg, n_pix) = _operands(x, kernels, geom, groups, n0, cols)
        grad = out._replace(data=dev.flat(gy))
        if need_dk:  # dK_b = gy_b @ cols_b^T
            im2col(x, n0, b, geom, cols, k * n_pix, n_pix)
            gemm(grad, cols_op._replace(row_stride=1, col_stride=n_pix), kern._replace(data=dev.flat(dk)),
                 (b, groups), cg, kg, n_pix)
        if need_dx:  # dcols_b = K_b^T @ gy_b, then col2im
            gemm(kern._replace(row_stride=1, col_stride=kg), grad, cols_op, (b, groups), kg, n_pix, cg)
            col2im(cols, n0, b, geom, k * n_pix, n_pix, dx)
    return dx, dk
