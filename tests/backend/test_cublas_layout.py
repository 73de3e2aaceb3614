"""The row-major to column-major mapping of the cuBLAS GEMM path, checked without a GPU.

`backend/cuda/cublas.py` turns strided row-major operands into cuBLAS's column-major
(op, ld, batch stride) arguments. On a GPU the real library runs it (tests/cuda); here a
NumPy stand-in for `gemmStridedBatched`, written from cuBLAS's documented semantics,
reads and writes one host buffer through the same pointers, so every layout the
convolutions use is checked on any machine.
"""

from __future__ import annotations

import numpy as np
import pytest

from minicoconv.backend.cuda import cublas
from minicoconv.backend.cuda.linalg import Operand


class _Buffer:
    """A host array posing as a device array: the pointer is all cublas.py reads."""

    def __init__(self, array: np.ndarray):
        self.array, self.dtype = array, array.dtype
        self.__cuda_array_interface__ = {"data": (array.ctypes.data, False)}


class FakeCublas:
    """cuBLAS's gemmStridedBatched on host memory: C_z = alpha op(A_z) op(B_z) + beta C_z, column-major."""

    CUBLAS_POINTER_MODE_HOST = 0

    def __init__(self, buffer: _Buffer):
        self.mem, self.calls = buffer.array, 0

    def _matrix(self, ptr, rows, cols, ld, op):
        start = (ptr - self.mem.ctypes.data) // self.mem.itemsize
        stored = (rows, cols) if op == 0 else (cols, rows)
        assert ld >= max(1, stored[0]), "cuBLAS requires ld >= rows of the stored matrix"
        index = start + np.arange(stored[0])[:, None] + ld * np.arange(stored[1])[None, :]
        return (index if op == 0 else index.T)

    def _gemm(self, handle, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, count):
        self.calls += 1
        al = np.frombuffer((np.ctypeslib.ctypes.c_char * self.mem.itemsize).from_address(alpha), self.mem.dtype)[0]
        be = np.frombuffer((np.ctypeslib.ctypes.c_char * self.mem.itemsize).from_address(beta), self.mem.dtype)[0]
        size = self.mem.itemsize
        for z in range(count):
            ia = self._matrix(a + z * sa * size, m, k, lda, ta)
            ib = self._matrix(b + z * sb * size, k, n, ldb, tb)
            ic = self._matrix(c + z * sc * size, m, n, ldc, 0)
            self.mem[ic] = al * (self.mem[ia] @ self.mem[ib]) + (be * self.mem[ic] if be else 0)

    sgemmStridedBatched = dgemmStridedBatched = _gemm


class _FakeCupy:
    class cuda:  # noqa: N801 (mirrors cupy.cuda.Stream.null)
        class Stream:
            class null:  # noqa: N801
                def __enter__(self): return self

                def __exit__(self, *exc): return False

            null = null()


def _strided(mem, op: Operand, batch: tuple, rows: int, cols: int) -> np.ndarray:
    """The (batch..., rows, cols) values an Operand describes, read from the host buffer."""
    out = np.empty(batch + (rows, cols), mem.dtype)
    for z in np.ndindex(*batch):
        base = op.offset + sum(i * s for i, s in zip(z, op.batch_strides))
        out[z] = mem[base + np.arange(rows)[:, None] * op.row_stride + np.arange(cols)[None, :] * op.col_stride]
    return out


# (m, n, k, batch, how A, B and C sit in memory: "row" = row-major, "col" = transposed view; A/B batch broadcast)
CASES = [
    (5, 7, 3, (1,), "row", "row", "row", False),
    (5, 7, 3, (4,), "col", "row", "row", False),      # conv backward dcols = W^T @ gy
    (6, 4, 9, (3,), "row", "col", "row", False),      # conv backward dW = gy @ cols^T
    (6, 4, 9, (3,), "row", "row", "col", False),      # a column-major C
    (3, 8, 5, (2, 3), "row", "row", "row", True),     # (sample, group) batch, W broadcast over samples
    (1, 8, 5, (2,), "row", "col", "row", False),      # a single row
    (8, 1, 5, (2,), "col", "row", "row", False),      # a single column
    (4, 4, 1, (3, 2), "row", "row", "row", False),    # k = 1
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_cublas_arguments_compute_the_strided_product(monkeypatch, case, accumulate, dtype):
    m, n, k, batch, la, lb, lc, broadcast_a = case
    rng = np.random.default_rng(0)
    nb = int(np.prod(batch))
    mem = rng.standard_normal(4 * nb * (m * k + k * n + m * n) + 64).astype(dtype)
    buf = _Buffer(mem)
    fake = FakeCublas(buf)
    monkeypatch.setattr(cublas, "_library", lambda: (fake, 0, _FakeCupy))

    def operand(offset, rows, cols, layout, broadcast):
        rs, cs = (cols, 1) if layout == "row" else (1, rows)
        strides = tuple(int(np.prod(batch[d + 1:])) * rows * cols for d in range(len(batch)))
        if broadcast:
            strides = (0,) + strides[1:]
        return Operand(buf, offset, strides, rs, cs), offset + nb * rows * cols + 7

    a, at = operand(3, m, k, la, broadcast_a)
    b, at = operand(at, k, n, lb, False)
    c, _ = operand(at, m, n, lc, False)
    expected = _strided(mem, a, batch, m, k) @ _strided(mem, b, batch, k, n)
    if accumulate:
        expected += _strided(mem, c, batch, m, n)
    from minicoconv.backend.cuda.layout import coalesce

    shape, strides = coalesce(batch, a.batch_strides, b.batch_strides, c.batch_strides)
    assert cublas.gemm(a, b, c, shape, tuple(strides), m, n, k, accumulate)
    assert fake.calls >= 1
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(_strided(mem, c, batch, m, n), expected, rtol=tol, atol=tol)


def test_layouts_cublas_cannot_take_fall_back(monkeypatch):
    """A broadcast inside a matrix (stride 0 along a row) is neither row- nor column-major: no call."""
    mem = np.zeros(64, np.float32)
    buf = _Buffer(mem)
    fake = FakeCublas(buf)
    monkeypatch.setattr(cublas, "_library", lambda: (fake, 0, _FakeCupy))
    a = Operand(buf, 0, (0,), 0, 1)  # every row is the same memory
    b = Operand(buf, 0, (0,), 4, 1)
    c = Operand(buf, 32, (0,), 4, 1)
    assert not cublas.gemm(a, b, c, (1,), ((0,), (0,), (0,)), 4, 4, 4, False)
    assert fake.calls == 0
