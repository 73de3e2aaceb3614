"""Batched GEMM through cuBLAS (by way of CuPy), the fast path of `linalg.gemm`.

The tiled kernel in `linalg.py` is the readable form of C[z] = A[z] @ B[z]; this
module hands the same strided operands to cuBLAS's `gemmStridedBatched`, which is
what a GPU's matrix multiplications should run on. CuPy is used only as a well-kept
binding of the cuBLAS library (the `cuda` extra installs it); no CuPy array is made.

Row-major to column-major. cuBLAS reads matrices in column-major order: element
(i, j) of an m x n matrix at i + j*ld. Our operands are (row_stride, col_stride)
views, so a matrix M with col_stride 1 is, to cuBLAS, M^T stored column-major with
ld = row_stride, and one with row_stride 1 is M itself with ld = col_stride. When C
is row-major (col_stride 1) we ask cuBLAS for C^T = B^T @ A^T, which it writes
column-major, that is C row-major; when C is column-major, for C = A @ B directly.
Each factor then goes in as "N" or "T" depending on which of its strides is 1.

Batches. `gemmStridedBatched` takes one batch stride per operand: a one-axis batch
is one call; with two batch axes (sample, group), one call per index of the shorter.
An operand that is neither row- nor column-major (a broadcast inside a matrix), or a
dtype other than float32/float64, returns False and the caller uses the tiled kernel.

Streams. numba launches every kernel on the legacy default stream; the cuBLAS calls
are issued on that stream too, so kernels and GEMMs stay in order without syncs.
TF32 is never enabled: float32 GEMMs are true float32 (cuBLAS's default math mode).
"""

from __future__ import annotations

from functools import cache

import numpy as np

_N, _T = 0, 1  # cublasOperation_t: CUBLAS_OP_N, CUBLAS_OP_T
_ONE = {np.dtype(np.float32): np.ones(1, np.float32), np.dtype(np.float64): np.ones(1, np.float64)}
_ZERO = {np.dtype(np.float32): np.zeros(1, np.float32), np.dtype(np.float64): np.zeros(1, np.float64)}


@cache
def _library():
    """(cublas module, handle), or None when CuPy (or its cuBLAS) cannot be loaded here."""
    try:
        import cupy
        from cupy_backends.cuda.libs import cublas
    except Exception:  # no CuPy, or a CuPy built for another CUDA: the tiled kernel is used
        return None
    try:
        with cupy.cuda.Stream.null:
            handle = cublas.create()
        cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    except Exception:
        return None
    return cublas, handle, cupy


def available() -> bool:
    """Whether cuBLAS can be called here (CuPy installed and working, a real GPU)."""
    return _library() is not None


def _column_major(rows: int, cols: int, rs: int, cs: int):
    """(op, ld) such that op(the column-major matrix at ld) is this rows x cols view, or None."""
    if rs == 1 and (cs >= rows or cols == 1):
        return _N, max(cs, rows, 1)
    if cs == 1 and (rs >= cols or rows == 1):
        return _T, max(rs, cols, 1)
    return None


def _pointer(op, dtype) -> int:
    return op.data.__cuda_array_interface__["data"][0] + op.offset * dtype.itemsize


def gemm(a, b, c, batch_shape: tuple, batch_strides: tuple, m: int, n: int, k: int, accumulate: bool) -> bool:
    """C[z] (+)= A[z] @ B[z] by cuBLAS; False (nothing done) when this call cannot go to cuBLAS.

    `a`, `b`, `c` are `linalg.Operand`s; `batch_shape` and `batch_strides` (one tuple per
    operand) are already coalesced, with at most two axes.
    """
    lib = _library()
    dtype = np.dtype(c.data.dtype)
    if lib is None or dtype not in _ONE or len(batch_shape) > 2:
        return False
    cublas, handle, cupy = lib
    x, y = (b, a) if c.col_stride == 1 else (a, b)  # C^T = B^T A^T (row-major C), or C = A B
    if c.col_stride == 1:  # cuBLAS computes the (n x m) matrix C^T column-major
        rows, cols, inner = n, m, k
        x_view, y_view = (n, k, b.col_stride, b.row_stride), (k, m, a.col_stride, a.row_stride)
        target = _column_major(n, m, c.col_stride, c.row_stride)
    else:
        rows, cols, inner = m, n, k
        x_view, y_view = (m, k, a.row_stride, a.col_stride), (k, n, b.row_stride, b.col_stride)
        target = _column_major(m, n, c.row_stride, c.col_stride)
    op_x, op_y = _column_major(*x_view), _column_major(*y_view)
    if target is None or target[0] != _N or op_x is None or op_y is None:
        return False
    a_bs, b_bs, c_bs = batch_strides
    x_bs, y_bs = (b_bs, a_bs) if x is b else (a_bs, b_bs)
    if len(batch_shape) == 1:
        outer, inner_axis = [()], 0
    else:  # loop over the shorter batch axis, one strided-batched call per index
        inner_axis = 0 if batch_shape[0] >= batch_shape[1] else 1
        outer = [(i, 1 - inner_axis) for i in range(batch_shape[1 - inner_axis])]
    call = cublas.sgemmStridedBatched if dtype == np.float32 else cublas.dgemmStridedBatched
    alpha, beta = _ONE[dtype].ctypes.data, (_ONE if accumulate else _ZERO)[dtype].ctypes.data
    px, py, pc = _pointer(x, dtype), _pointer(y, dtype), _pointer(c, dtype)
    size = dtype.itemsize
    with cupy.cuda.Stream.null:  # numba's kernels run on the legacy default stream: stay in order with them
        for index in outer:
            sx, sy, sc = (s[index[1]] * index[0] * size if index else 0 for s in (x_bs, y_bs, c_bs))
            call(handle, op_x[0], op_y[0], rows, cols, inner,
                 alpha, px + sx, op_x[1], x_bs[inner_axis],
                 py + sy, op_y[1], y_bs[inner_axis],
                 beta, pc + sc, target[1], c_bs[inner_axis], batch_shape[inner_axis])
    return True
