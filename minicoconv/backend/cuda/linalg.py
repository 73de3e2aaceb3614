"""Batched matrix multiplication with shared-memory tiling.

    C[z] = A[z] @ B[z]      A[z] (m, k), B[z] (k, n), C[z] (m, n),  z over the batch

Each block of TILE x TILE threads computes one TILE x TILE tile of C; thread (ty, tx)
owns C[row, col] with row = tile_row*TILE + ty, col = tile_col*TILE + tx. The k axis is
walked TILE columns at a time:

    1. every thread loads one element of A's tile and one of B's into shared memory
       (zeros past the matrix edges), then the block synchronises;
    2. every thread adds the TILE products of its row of A's tile and column of B's
       tile to its accumulator (shared memory: fast, and each element loaded from
       global memory is used TILE times instead of once), and the block synchronises
       again before the next tiles overwrite shared memory.

Operands are *strided views* (`Operand`): element (z, i, j) of A is at
a.offset + strided_offset(z, batch_shape, a.batch_strides) + i*a.row_stride +
j*a.col_stride. So a transposed operand is just swapped strides, a broadcast batch
axis has batch stride 0, and the convolutions (conv.py) multiply slices of their
column buffers in place, with no copies.

On a GPU with CuPy installed, `gemm` hands the same operands to cuBLAS instead
(`cublas.py`: a few percent of cuBLAS's speed is all a one-output-per-thread tile
reaches); this kernel stays the readable form, the simulator's path, and the
fallback for layouts cuBLAS cannot take. `set_gemm_engine("tiled")` forces it.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np
from numba import cuda

from . import cublas
from . import device as dev
from .elementwise import astype, fill
from .indexing import strided_offset
from .layout import broadcast_strides, c_strides, coalesce

_offset = strided_offset.device
TILE = dev.TILE


class Operand(NamedTuple):
    """A batch of matrices inside a flat device array."""

    data: object           # flat (1-d) device array
    offset: int
    batch_strides: tuple   # one per axis of the batch shape
    row_stride: int
    col_stride: int


@cache
def _gemm_kernel(dtype: np.dtype):
    t = dtype.type

    @cuda.jit
    def gemm(a, a_off, a_bs, a_rs, a_cs, b, b_off, b_bs, b_rs, b_cs, c, c_off, c_bs, c_rs, c_cs,
             batch_shape, n_batch, m, n, k, accumulate):
        tile_a = cuda.shared.array((TILE, TILE), t)
        tile_b = cuda.shared.array((TILE, TILE), t)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        for z in range(cuda.blockIdx.z, n_batch, cuda.gridDim.z):
            a_z = a_off + _offset(z, batch_shape, a_bs)
            b_z = b_off + _offset(z, batch_shape, b_bs)
            c_z = c_off + _offset(z, batch_shape, c_bs)
            for tile_row in range(cuda.blockIdx.y, (m + TILE - 1) // TILE, cuda.gridDim.y):
                for tile_col in range(cuda.blockIdx.x, (n + TILE - 1) // TILE, cuda.gridDim.x):
                    row, col = tile_row * TILE + ty, tile_col * TILE + tx
                    acc = t(0)
                    for k0 in range(0, k, TILE):
                        if row < m and k0 + tx < k:
                            tile_a[ty, tx] = a[a_z + row * a_rs + (k0 + tx) * a_cs]
                        else:
                            tile_a[ty, tx] = 0
                        if k0 + ty < k and col < n:
                            tile_b[ty, tx] = b[b_z + (k0 + ty) * b_rs + col * b_cs]
                        else:
                            tile_b[ty, tx] = 0
                        cuda.syncthreads()
                        for q in range(TILE):
                            acc += tile_a[ty, q] * tile_b[q, tx]
                        cuda.syncthreads()
                    if row < m and col < n:
                        at = c_z + row * c_rs + col * c_cs
                        c[at] = c[at] + acc if accumulate else acc
    return gemm


ENGINES = ("cublas", "tiled")
_engine = {"name": "cublas"}


def set_gemm_engine(name: str) -> str:
    """Choose the GEMM of the CUDA backend: "cublas" (when available, else tiled) or "tiled"; returns the old one."""
    if name not in ENGINES:
        raise ValueError(f"set_gemm_engine: expected one of {ENGINES}, got {name!r}")
    old, _engine["name"] = _engine["name"], name
    return old


def gemm_engine() -> str:
    """The GEMM that runs now: "cublas" or "tiled"."""
    return "cublas" if _engine["name"] == "cublas" and not dev.SIMULATOR and cublas.available() else "tiled"


def gemm(a: Operand, b: Operand, c: Operand, batch_shape: tuple, m: int, n: int, k: int,
         accumulate: bool = False) -> None:
    """C[z] (+)= A[z] @ B[z] for every z in `batch_shape` (operands must share one dtype)."""
    batch_shape, (a_bs, b_bs, c_bs) = coalesce(tuple(batch_shape), a.batch_strides, b.batch_strides,
                                               c.batch_strides)
    if gemm_engine() == "cublas" and cublas.gemm(a, b, c, batch_shape, (a_bs, b_bs, c_bs), m, n, k, accumulate):
        return
    n_batch = int(np.prod(batch_shape))
    dev.launch_tiles(_gemm_kernel(c.data.dtype), m, n, n_batch,
                     a.data, a.offset, a_bs, a.row_stride, a.col_stride,
                     b.data, b.offset, b_bs, b.row_stride, b.col_stride,
                     c.data, c.offset, c_bs, c.row_stride, c.col_stride,
                     batch_shape, n_batch, m, n, k, accumulate)


def _matrices(x, batch_shape) -> Operand:
    """A contiguous (..., rows, cols) array as an Operand broadcast over `batch_shape`."""
    rows, cols = x.shape[-2:]
    batch = broadcast_strides(tuple(x.shape[:-2]), batch_shape)  # in whole matrices
    return Operand(dev.flat(x), 0, tuple(s * rows * cols for s in batch), cols, 1)


def matmul(a, b):
    """np.matmul: (..., m, k) @ (..., k, n) -> (..., m, n), batch axes broadcast; 1-d operands promoted."""
    a_vec, b_vec = a.ndim == 1, b.ndim == 1
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: input operand does not have enough dimensions")
    a = a.reshape((1, a.shape[0])) if a_vec else a
    b = b.reshape((b.shape[0], 1)) if b_vec else b
    (m, k), (k2, n) = a.shape[-2:], b.shape[-2:]
    if k != k2:
        raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} are not aligned "
                         f"(need (..., m, k) @ (..., k, n))")
    batch_shape = tuple(np.broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2])))
    dtype = np.result_type(a.dtype, b.dtype)
    a, b = astype(a, dtype), astype(b, dtype)
    out = dev.empty(batch_shape + (m, n), dtype)
    if k == 0:
        fill(out, 0)
    elif out.size:
        c = Operand(dev.flat(out), 0, tuple(s * m * n for s in c_strides(batch_shape)), n, 1)
        gemm(_matrices(a, batch_shape), _matrices(b, batch_shape), c, batch_shape, m, n, k)
    shape = batch_shape + ((m,) if not a_vec else ()) + ((n,) if not b_vec else ())
    return out if shape == tuple(out.shape) else out.reshape(shape)  # no needless view: a .grad may keep out
