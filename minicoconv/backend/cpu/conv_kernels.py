"""2-d convolution on the CPU: validation, im2col + BLAS GEMM drivers, depthwise dispatch.

All arrays are NumPy arrays in NCHW layout, float32 or float64 (never mixed); outputs
keep the input dtype. No autodiff here: `conv2d_forward` / `conv2d_backward` are the
kernels an autograd op calls.

    x (N, Cin, H, W), w (Cout, Cin/groups, kh, kw), bias (Cout,) or None
    -> y (N, Cout, OH, OW),  OH = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1  (same for OW)

Two paths, chosen by the weight's shape:
- general (im2col.py): the batch is cut into equal blocks of nb samples whose columns
  take at most about `BLOCK_BYTES`; per block one Numba im2col, then one GEMM per group
  W (Cout/g, K/g) @ cols (K/g, nb*L) (blas.gemm), then one Numba pass that
  transposes (Cout, nb*L) into y's (nb, Cout, L) and adds the bias.
  Backward per block: one pass gy -> gy^T (Cout, nb*L) that also sums gy for db;
  im2col again (unless saved); dW += gy^T @ cols^T (one GEMM per group);
  dcols = W^T @ gy^T into a scratch buffer; Numba col2im into dx.
- depthwise (depthwise.py), Cin/groups == 1 with Cin > 1: direct Numba kernels.
- Winograd F(2x2, 3x3) (winograd.py) for 3x3 stride-1 groups-1 convs where it measured
  faster or `winograd.set_conv_algorithm` forces it; `saved` is then its WinogradSaved.
  (Cin == 1 goes to im2col: its backward would otherwise run on one thread.)

`saved`: the columns (K, N*L) when the whole batch fits one block, else None, and then
the backward recomputes them block by block: a whole-batch column matrix streams
through DRAM and a fresh buffer page-faults, while the block-wise recompute stays in
cache (measured: docs/performance.md). So columns are kept only while they fit one block,
which bounds the memory held between forward and backward to BLOCK_BYTES per conv
(recomputing at batch 128 avoids holding ~300 MB per stage-1 conv).

Inputs that are not C-contiguous are copied (np.ascontiguousarray) by the drivers.
Every argument is validated before a kernel runs (Numba does no bounds checks); errors
are ValueError naming the op.

Threads: one pool. The Numba kernels run on Numba's pool, and so do the GEMMs: blas.gemm
splits each into blocks of rows or columns, one single-threaded BLAS call per Numba task,
so OpenBLAS's own pool (whose idle workers spin on the cores the next kernel needs) never
runs. See blas.py.
"""

from typing import NamedTuple

import numpy as np
from numba import get_num_threads

from ...dtypes import FLOAT_DTYPES
from ...geometry import ConvGeometry, conv2d_output_shape  # noqa: F401  (re-exported: callers import them here)
from ...geometry import conv_geometry as _geometry
from ...geometry import is_depthwise as _is_depthwise
from ...geometry import is_int as _is_int
from ...geometry import shape4 as _shape4
from .blas import gemm
from .depthwise import depthwise_backward_kernel, depthwise_forward_kernel
from .im2col import col2im_blocks, fold_grad_kernel, im2col_blocks, unfold_output_kernel
from .winograd import WinogradSaved, use_winograd, winograd_backward, winograd_forward

# Target size of one block of columns (bytes): big enough for efficient GEMMs, small
# enough to stay in cache between im2col, GEMM and col2im (sizes compared: docs/performance.md)
BLOCK_BYTES = 16 << 20
# dW = gy^T @ cols^T is computed as (cols @ gy^T)^T when Cout/groups is at most this: the
# faster GEMM orientation for few output channels (docs/performance.md)
DW_TRANSPOSED_MAX_COUT = 128


# --------------------------------------------------------------------------------------
# Validation (runs before any kernel)
# --------------------------------------------------------------------------------------


def _check_array(op, name, a, ndim, layout):
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{op}: expected {name} to be a numpy.ndarray, got {type(a).__name__}")
    if a.ndim != ndim:
        raise ValueError(f"{op}: expected {name} of shape {layout}, got shape {a.shape}")
    if a.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{op}: expected {name} of dtype float32 or float64, got {a.dtype}")
    return np.ascontiguousarray(a)


def _check_conv_args(x, w, bias, stride, padding, dilation, groups):
    """Validate everything; return C-contiguous x, w, bias (or an empty bias) and geometry."""
    op = "conv2d"
    x = _check_array(op, "x", x, 4, "(N, Cin, H, W)")
    w = _check_array(op, "w", w, 4, "(Cout, Cin/groups, kh, kw)")
    if w.dtype != x.dtype:
        raise ValueError(f"{op}: expected x and w of the same dtype, got {x.dtype} and {w.dtype}")
    geom = _geometry(op, x.shape, w.shape, stride, padding, dilation, groups)
    if bias is None:
        bias = np.empty(0, dtype=x.dtype)
    else:
        bias = _check_array(op, "bias", bias, 1, f"({w.shape[0]},)")
        if bias.shape != (w.shape[0],) or bias.dtype != x.dtype:
            raise ValueError(f"{op}: expected bias of shape ({w.shape[0]},) and dtype {x.dtype},"
                             f" got shape {bias.shape} and dtype {bias.dtype}")
    return x, w, bias, geom


def _winograd(x, w, geom):
    """3x3 stride-1 groups-1 convs take Winograd where set_conv_algorithm / its measured rule say (winograd.py)."""
    return use_winograd(x.shape, w.shape, geom.stride, geom.padding, geom.dilation, geom.groups)


# --------------------------------------------------------------------------------------
# Public drivers
# --------------------------------------------------------------------------------------


def conv2d_forward(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """y = conv2d(x, w) + bias; returns (y, saved).

    x (N, Cin, H, W), w (Cout, Cin/groups, kh, kw), bias (Cout,) or None
    -> y (N, Cout, OH, OW) of x's dtype. saved: the im2col columns (Cin*kh*kw, N*OH*OW)
    when they fit one block of BLOCK_BYTES, else None (see the module docstring).
    """
    x, w, bias, geom = _check_conv_args(x, w, bias, stride, padding, dilation, groups)
    y = np.empty(geom.out_shape, dtype=x.dtype)
    if _is_depthwise(x, w):
        depthwise_forward_kernel(x, w, bias, *geom.stride, *geom.padding, *geom.dilation,
                                 get_num_threads(), y)
        return y, None
    if _winograd(x, w, geom):
        return y, winograd_forward(x, w, bias, geom.padding, y)
    return y, _forward_im2col(x, w, bias, geom, y)


def conv2d_backward(gy, x, w, saved=None, stride=1, padding=0, dilation=1, groups=1,
                    need_dx=True, need_dw=True, need_db=True):
    """Gradients of conv2d_forward: gy (N, Cout, OH, OW) -> (dx, dw, db).

    dx like x, dw like w, db (Cout,); each is None when its need_* flag is False.
    saved: what conv2d_forward returned with these x and w (None: recompute the columns).
    """
    x, w, _, geom = _check_conv_args(x, w, None, stride, padding, dilation, groups)
    gy = _check_array("conv2d", "gy", gy, 4, str(geom.out_shape))
    if gy.shape != geom.out_shape or gy.dtype != x.dtype:
        raise ValueError(f"conv2d: expected gy of shape {geom.out_shape} and dtype {x.dtype}, "
                         f"got shape {gy.shape} and dtype {gy.dtype}")
    dx = np.empty(x.shape, dtype=x.dtype) if need_dx else None
    dw = np.empty(w.shape, dtype=w.dtype) if need_dw else None
    db = None
    if _is_depthwise(x, w):
        if need_dx or need_dw:
            dummy = np.empty((0, 0, 0, 0), dtype=x.dtype)
            depthwise_backward_kernel(gy, x, w, *geom.stride, *geom.padding, *geom.dilation,
                                      get_num_threads(), need_dx, need_dw,
                                      dummy if dx is None else dx, dummy if dw is None else dw)
        if need_db:
            db = gy.sum(axis=(0, 2, 3))
    elif (need_dx or need_dw) and _winograd(x, w, geom):
        winograd_backward(gy, x, w, saved if isinstance(saved, WinogradSaved) else None, geom.padding, dx, dw)
        db = gy.sum(axis=(0, 2, 3)) if need_db else None
    elif need_dx or need_dw:
        saved = None if isinstance(saved, WinogradSaved) else saved  # the setting changed since the forward
        row_sums = _backward_im2col(gy, x, w, saved, geom, dx, dw)
        db = row_sums.sum(axis=0) if need_db else None
    elif need_db:
        db = gy.sum(axis=(0, 2, 3))
    return dx, dw, db


# --------------------------------------------------------------------------------------
# General path: blocks of im2col columns + BLAS
# --------------------------------------------------------------------------------------


class _Plan(NamedTuple):
    groups: int
    k: int  # rows of the columns, Cin*kh*kw
    c_out: int
    n_pix: int  # OH*OW
    nb: int  # samples per block
    conv_args: tuple  # (kh, kw, sh, sw, ph, pw, dh, dw, OH, OW) for the kernels


def _plan(x, w, geom):
    """Cut the batch into equal blocks whose columns take at most ~BLOCK_BYTES."""
    n_batch, c_in = x.shape[:2]
    k, n_pix = c_in * geom.kh * geom.kw, geom.out_shape[2] * geom.out_shape[3]
    n_blocks = max(1, -(-n_batch * k * n_pix * x.itemsize // BLOCK_BYTES))
    nb = max(1, -(-n_batch // n_blocks))
    conv_args = (geom.kh, geom.kw, *geom.stride, *geom.padding, *geom.dilation,
                 *geom.out_shape[2:])
    return _Plan(geom.groups, k, w.shape[0], n_pix, nb, conv_args)


def _forward_im2col(x, w, bias, geom, y):
    """Fill y; return the columns when the batch was one block (else None)."""
    n_batch = x.shape[0]
    g, k, c_out, n_pix, nb, conv_args = _plan(x, w, geom)
    w_g = w.reshape(g, c_out // g, k // g)
    y3 = y.reshape(n_batch, c_out, n_pix)
    cols_buf = np.empty(k * nb * n_pix, dtype=x.dtype)
    out_buf = np.empty(c_out * nb * n_pix, dtype=x.dtype)
    for n0 in range(0, n_batch, nb):
        m = min(nb, n_batch - n0) * n_pix
        cols = cols_buf[:k * m].reshape(k, m)
        out = out_buf[:c_out * m].reshape(c_out, m)
        im2col_blocks(x, conv_args, n0, cols)
        gemm(w_g, cols.reshape(g, k // g, m), out.reshape(g, c_out // g, m))
        unfold_output_kernel(out, bias, n0, y3)
    return cols_buf[:k * n_batch * n_pix].reshape(k, n_batch * n_pix) if nb >= n_batch else None


def _backward_im2col(gy, x, w, saved, geom, dx, dw):
    """Fill dx and/or dw (whichever is not None); return per-sample row sums of gy (N, Cout).

    saved: the whole batch's columns (K, N*L) from the forward, or None to recompute them
    block by block.
    """
    n_batch = x.shape[0]
    g, k, c_out, n_pix, nb, conv_args = _plan(x, w, geom)
    if saved is not None:
        if (not isinstance(saved, np.ndarray) or saved.shape != (k, n_batch * n_pix)
                or saved.dtype != x.dtype or not saved.flags.c_contiguous):
            raise ValueError(f"conv2d: expected saved = None or the columns that "
                             f"conv2d_forward returned, of shape {(k, n_batch * n_pix)} and "
                             f"dtype {x.dtype}, got {getattr(saved, 'shape', type(saved))}")
        nb = max(1, n_batch)
    w_g = w.reshape(g, c_out // g, k // g)
    gy3 = gy.reshape(n_batch, c_out, n_pix)
    cols_buf = np.empty(k * nb * n_pix, dtype=x.dtype)
    gyt_buf = np.empty(c_out * nb * n_pix, dtype=x.dtype)
    row_sums = np.empty((n_batch, c_out), dtype=x.dtype)
    if dw is not None:
        dw_g = dw.reshape(g, c_out // g, k // g)
        if n_batch == 0:
            dw_g.fill(0)
        # dW^T = cols @ gy^T is the faster GEMM orientation for few output channels
        transposed = c_out // g <= DW_TRANSPOSED_MAX_COUT
        if transposed:
            dw_part = np.empty((g, k // g, c_out // g), dtype=x.dtype)
    for n0 in range(0, n_batch, nb):
        m = min(nb, n_batch - n0) * n_pix
        scratch = cols_buf[:k * m].reshape(k, m)
        gy_t = gyt_buf[:c_out * m].reshape(g, c_out // g, m)
        fold_grad_kernel(gy3, n0, gy_t.reshape(c_out, m), row_sums[n0:])
        if dw is not None:
            cols = saved
            if cols is None:
                cols = scratch
                im2col_blocks(x, conv_args, n0, cols)
            cols_g = cols.reshape(g, k // g, m)
            if transposed:
                gemm(cols_g, gy_t.transpose(0, 2, 1), dw_part, accumulate=n0 > 0)
            else:
                gemm(gy_t, cols_g.transpose(0, 2, 1), dw_g, accumulate=n0 > 0)
        if dx is not None:  # dcols overwrite the scratch columns, never `saved`
            gemm(w_g.transpose(0, 2, 1), gy_t, scratch.reshape(g, k // g, m))
            col2im_blocks(scratch, conv_args, n0, dx)
    if dw is not None and transposed and n_batch > 0:
        dw_g[...] = dw_part.transpose(0, 2, 1)
    return row_sums


# --------------------------------------------------------------------------------------
# Public im2col / col2im (validated wrappers)
# --------------------------------------------------------------------------------------


def _col_geometry(op, x_shape, kh, kw, stride, padding, dilation):
    if not (_is_int(kh) and _is_int(kw)) or kh < 1 or kw < 1:
        raise ValueError(f"{op}: expected kh, kw as ints >= 1, got {kh!r}, {kw!r}")
    c_in = x_shape[1] if len(x_shape) == 4 else 1
    return _geometry(op, x_shape, (1, c_in, kh, kw), stride, padding, dilation, 1)


def im2col(x, kh, kw, stride=1, padding=0, dilation=1):
    """x (N, C, H, W) -> cols (N, C*kh*kw, OH*OW), row index c*kh*kw + i*kw + j.

    The result is a transposed view of a C-contiguous (C*kh*kw, N, OH*OW) buffer (the
    layout the conv GEMMs use): cols.transpose(1, 0, 2) is contiguous, cols[n] is a
    BLAS-ready matrix with leading dimension N*OH*OW.
    """
    op = "im2col"
    x = _check_array(op, "x", x, 4, "(N, C, H, W)")
    geom = _col_geometry(op, x.shape, kh, kw, stride, padding, dilation)
    n_batch, _, out_h, out_w = geom.out_shape
    k = x.shape[1] * kh * kw
    cols = np.empty((k, n_batch, out_h * out_w), dtype=x.dtype)
    conv_args = (kh, kw, *geom.stride, *geom.padding, *geom.dilation, out_h, out_w)
    im2col_blocks(x, conv_args, 0, cols.reshape(k, n_batch * out_h * out_w))
    return cols.transpose(1, 0, 2)


def col2im(cols, x_shape, kh, kw, stride=1, padding=0, dilation=1):
    """Adjoint of im2col: cols (N, C*kh*kw, OH*OW) -> dx (N, C, H, W), overlaps summed."""
    op = "col2im"
    geom = _col_geometry(op, _shape4(op, "x_shape", x_shape, "(N, C, H, W)"), kh, kw,
                         stride, padding, dilation)
    n_batch, _, out_h, out_w = geom.out_shape
    expected = (n_batch, x_shape[1] * kh * kw, out_h * out_w)
    if not isinstance(cols, np.ndarray) or cols.shape != expected:
        raise ValueError(f"{op}: expected cols of shape {expected}, got "
                         f"{getattr(cols, 'shape', type(cols).__name__)}")
    if cols.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{op}: expected cols of dtype float32 or float64, got {cols.dtype}")
    # a copy in the (K, N*L) layout: the kernel uses its input as scratch
    cols_kn = np.array(cols.transpose(1, 0, 2), order="C").reshape(expected[1], -1)
    dx = np.empty(tuple(x_shape), dtype=cols.dtype)
    conv_args = (kh, kw, *geom.stride, *geom.padding, *geom.dilation, out_h, out_w)
    col2im_blocks(cols_kn, conv_args, 0, dx)
    return dx
