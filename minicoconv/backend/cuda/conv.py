"""2-d convolution on the GPU: validation, im2col + tiled GEMM drivers, depthwise dispatch.

Same contract as the CPU backend (`backend/cpu/conv_kernels.py`):

    x (N, Cin, H, W), w (Cout, Cin/g, kh, kw), bias (Cout,) or None -> y (N, Cout, OH, OW)

General path, per chunk of nb samples (columns capped at COLS_BUDGET_BYTES); with
K = Cin*kh*kw, L = OH*OW, g groups, Kg = K/g, Cg = Cout/g:
- forward: cols in layout (nb, K, L), then one batched GEMM over (sample, group)
      y[b, grp] (Cg, L) = W[grp] (Cg, Kg) @ cols[b, grp] (Kg, L)
  written straight into y's (N, Cout, L) memory (W's batch stride over samples is 0).
- backward: gy's chunk is transposed once to gy_t (Cout, nb*L) and the columns are
  made in layout (K, nb*L), samples side by side; per group
      dW[grp] (Cg, Kg)      += gy_t[grp] (Cg, nb*L) @ cols[grp]^T (nb*L, Kg)
      dcols[grp] (Kg, nb*L)  = W[grp]^T (Kg, Cg) @ gy_t[grp] (Cg, nb*L)
  (transposes are swapped strides of the GEMM operands), then col2im into dx.
  db = sum of gy over (N, OH, OW).
Depthwise (Cin/g == 1, Cin > 1): the direct kernels of depthwise.py.
`saved` is None: the backward recomputes the columns, as on the CPU.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ...geometry import is_depthwise as _is_depthwise
from ..cpu.conv_kernels import conv2d_output_shape
from . import device as dev
from .depthwise import depthwise_backward, depthwise_forward
from .elementwise import fill
from .im2col import ConvGeometry, col2im, im2col
from .linalg import Operand, gemm
from .reduce import reduce_sum
from .shape import gather_view

#: most bytes of im2col columns held at once (the batch is processed in chunks)
COLS_BUDGET_BYTES = 256 << 20


def pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int | np.integer) else (int(value[0]), int(value[1]))


def check_conv(op, x, w_shape, dtype, stride, padding, dilation, groups) -> ConvGeometry:
    """Validate x and the conv arguments (the CPU backend's shape rules); return the geometry."""
    dev.check_device_array(op, "x", x, 4, "(N, Cin, H, W)")
    if x.dtype != dtype:
        raise ValueError(f"{op}: expected x and w of the same dtype, got {x.dtype} and {dtype}")
    out_shape = conv2d_output_shape(tuple(x.shape), tuple(w_shape), stride, padding, dilation, groups)
    return ConvGeometry(*w_shape[2:], *pair(stride), *pair(padding), *pair(dilation), *out_shape[2:])


def chunk(n_batch: int, bytes_per_sample: int) -> int:
    return max(1, min(n_batch, COLS_BUDGET_BYTES // max(1, bytes_per_sample)))


@cuda.jit
def _add_bias_kernel(y, bias, n_pix):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] += bias[(i // n_pix) % bias.size]


def conv2d_forward(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """y = conv2d(x, w) + bias; returns (y, None)."""
    dev.check_device_array("conv2d", "w", w, 4, "(Cout, Cin/groups, kh, kw)")
    geom = check_conv("conv2d", x, w.shape, w.dtype, stride, padding, dilation, groups)
    n_batch, c_out = x.shape[0], w.shape[0]
    if bias is not None:
        dev.check_device_array("conv2d", "bias", bias, 1, f"({c_out},)")
        if tuple(bias.shape) != (c_out,) or bias.dtype != x.dtype:
            raise ValueError(f"conv2d: expected bias of shape ({c_out},) and dtype {x.dtype}, got shape "
                             f"{tuple(bias.shape)} and dtype {bias.dtype}")
    y = dev.empty((n_batch, c_out, geom.out_h, geom.out_w), x.dtype)
    if _is_depthwise(x, w):
        depthwise_forward(x, w, bias, geom, y)
        return y, None
    n_pix, k = geom.out_h * geom.out_w, x.shape[1] * geom.kh * geom.kw
    kg, cg = k // groups, c_out // groups
    nb = chunk(n_batch, k * n_pix * x.dtype.itemsize)
    cols = dev.empty((nb * k * n_pix,), x.dtype)
    for n0 in range(0, n_batch, nb):
        b = min(nb, n_batch - n0)
        im2col(x, n0, b, geom, cols, k * n_pix, n_pix)
        gemm(Operand(dev.flat(w), 0, (0, cg * kg), kg, 1), Operand(cols, 0, (k * n_pix, kg * n_pix), n_pix, 1),
             Operand(dev.flat(y), n0 * c_out * n_pix, (c_out * n_pix, cg * n_pix), n_pix, 1), (b, groups),
             cg, n_pix, kg)
    if bias is not None:
        dev.launch(_add_bias_kernel, y.size, dev.flat(y), bias, n_pix)
    return y, None


def conv2d_backward(gy, x, w, saved=None, stride=1, padding=0, dilation=1, groups=1,
                    need_dx=True, need_dw=True, need_db=True):
    """Gradients of conv2d_forward: gy (N, Cout, OH, OW) -> (dx, dw, db), None where not needed."""
    dev.check_device_array("conv2d", "w", w, 4, "(Cout, Cin/groups, kh, kw)")
    geom = check_conv("conv2d", x, w.shape, w.dtype, stride, padding, dilation, groups)
    expected = (x.shape[0], w.shape[0], geom.out_h, geom.out_w)
    dev.check_device_array("conv2d", "gy", gy, 4, str(expected))
    if tuple(gy.shape) != expected or gy.dtype != x.dtype:
        raise ValueError(f"conv2d: expected gy of shape {expected} and dtype {x.dtype}, "
                         f"got shape {tuple(gy.shape)} and dtype {gy.dtype}")
    dx = dev.empty(x.shape, x.dtype) if need_dx else None
    dw = dev.empty(w.shape, w.dtype) if need_dw else None
    db = reduce_sum(gy, axis=(0, 2, 3)) if need_db else None
    if _is_depthwise(x, w):
        depthwise_backward(gy, x, w, geom, dx, dw)
    elif need_dx or need_dw:
        _backward_im2col(gy, x, w, geom, groups, dx, dw)
    return dx, dw, db


def _backward_im2col(gy, x, w, geom, groups, dx, dw) -> None:
    n_batch, c_out = x.shape[0], w.shape[0]
    n_pix, k = geom.out_h * geom.out_w, x.shape[1] * geom.kh * geom.kw
    kg, cg = k // groups, c_out // groups
    nb = chunk(n_batch, (k + c_out) * n_pix * x.dtype.itemsize)
    cols = dev.empty((nb * k * n_pix,), x.dtype)
    if dw is not None and n_batch == 0:
        fill(dw, 0)
    for n0 in range(0, n_batch, nb):
        b = min(nb, n_batch - n0)
        m = b * n_pix  # columns of this chunk
        gy_t = dev.flat(gather_view(gy, n0 * c_out * n_pix, (c_out, b, n_pix), (n_pix, c_out * n_pix, 1)))
        gy_op = Operand(gy_t, 0, (cg * m,), m, 1)
        if dw is not None:
            im2col(x, n0, b, geom, cols, n_pix, m)
            gemm(gy_op, Operand(cols, 0, (kg * m,), 1, m), Operand(dev.flat(dw), 0, (cg * kg,), kg, 1), (groups,),
                 cg, kg, m, accumulate=n0 > 0)
        if dx is not None:
            gemm(Operand(dev.flat(w), 0, (cg * kg,), 1, kg), gy_op, Operand(cols, 0, (kg * m,), m, 1), (groups,),
                 kg, m, cg)
            col2im(cols, n0, b, geom, n_pix, m, dx)
