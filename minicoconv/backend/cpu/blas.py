"""GEMMs in Numba's thread pool: NumPy's BLAS called single-threaded from parallel regions.

    gemm(a, b, out, accumulate=False):   out[g] = a[g] @ b[g]   (out[g] += ... with accumulate)
        a (G, M, K) or (M, K), b (G, K, N) or (K, N), out (G, M, N) or (M, N), one float dtype;
        a 2-d operand (or a batch axis of length 1) is shared by every g. a and b may be
        transposed views (either of their last two axes contiguous); out's rows are.
    matmul(a, b) -> np.matmul(a, b), through gemm where the shapes allow it.

Why. Every convolution alternates Numba kernels (im2col, col2im, the output passes) with
GEMMs. Called from Python, NumPy's OpenBLAS runs a GEMM on its own pthread pool, whose
workers then spin for up to 2**28 cycles (OPENBLAS_THREAD_TIMEOUT, which OpenBLAS reads
only when NumPy loads it) on the cores the next Numba kernel needs; PyTorch's OpenMP pool
joins them when it is loaded. Here one pool does all the parallel work: a Numba `prange`
over tasks (matrix g, block of rows or of columns of out[g]), each one single-threaded
cblas_?gemm on its block. OpenBLAS's pool never wakes, so the speed depends neither on
import order nor on the environment.

Single-threaded calls. OpenBLAS has no per-call thread count (its
openblas_set_num_threads_local is process-wide in pthreads builds), so `gemm` sets the
count to 1 and puts the previous one back before it returns. Outside a gemm nothing
changes; a thread of the caller's own that calls NumPy's BLAS during one runs on one thread.

Binding. The cblas functions are looked up on first use (never at import) through NumPy's
own extension module, so they are the BLAS NumPy itself calls, and registered with LLVM
under fixed names (`llvmlite.binding.add_symbol`), which keeps the calling kernel
cacheable. OpenBLAS only (NumPy's wheels ship it, with 64- or 32-bit integers); with
another BLAS (MKL, Accelerate), or under NUMBA_DISABLE_JIT, `gemm` is np.matmul on that
BLAS's own threads (`binding()` says which).
"""

from __future__ import annotations

import ctypes
import math

import numba
import numpy as np
from numba import njit, prange, types

from ...dtypes import FLOAT_DTYPES

ROW_MAJOR, NO_TRANS = 101, 111  # CBLAS enums; CblasTrans = NO_TRANS + 1
# a task's block of rows or columns is a multiple of this many elements (one 64-byte line
# of float32), so the two halves of a split start on a cache line
ALIGN = 16
# below this many multiply-adds per matrix a GEMM is not split (one task per matrix)
SPLIT_MIN_MACS = 1 << 16

# (sgemm, dgemm, set_num_threads, get_num_threads, get_config) in the order tried:
# NumPy >= 2's scipy-openblas64 wheels, scipy-openblas32, then a plain OpenBLAS
_SYMBOL_SETS = (
    ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", "scipy_openblas_set_num_threads64_",
     "scipy_openblas_get_num_threads64_", "scipy_openblas_get_config64_"),
    ("scipy_cblas_sgemm", "scipy_cblas_dgemm", "scipy_openblas_set_num_threads",
     "scipy_openblas_get_num_threads", "scipy_openblas_get_config"),
    ("cblas_sgemm", "cblas_dgemm", "openblas_set_num_threads", "openblas_get_num_threads", "openblas_get_config"),
)

_i32, _i64 = types.int32, types.int64


def _cblas_type(real, index):
    # cblas_?gemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); the
    # pointers are passed as 64-bit integers (the same register class in the C calling convention)
    return types.void(_i32, _i32, _i32, index, index, index, real, _i64, index, _i64, index, real, _i64, index)


# resolved by name when a kernel is linked: `_bind` registers all four, the unused integer
# width at the same address (its branch never runs)
_sgemm64 = types.ExternalFunction("minicoconv_cblas_sgemm_i64", _cblas_type(types.float32, _i64))
_dgemm64 = types.ExternalFunction("minicoconv_cblas_dgemm_i64", _cblas_type(types.float64, _i64))
_sgemm32 = types.ExternalFunction("minicoconv_cblas_sgemm_i32", _cblas_type(types.float32, _i32))
_dgemm32 = types.ExternalFunction("minicoconv_cblas_dgemm_i32", _cblas_type(types.float64, _i32))


class _Binding:
    """The BLAS that gemm calls: thread-count functions and a description; None fields = fallback."""

    def __init__(self, description: str, ilp64: bool = False, set_threads=None, get_threads=None):
        self.description = description
        self.ilp64 = ilp64
        self.set_threads = set_threads
        self.get_threads = get_threads

    @property
    def direct(self) -> bool:
        return self.set_threads is not None


_binding: _Binding | None = None


def _numpy_extension():
    try:
        from numpy._core import _multiarray_umath as ext  # NumPy >= 2
    except ImportError:
        from numpy.core import _multiarray_umath as ext  # NumPy 1.x
    return ext


def _bind() -> _Binding:
    """Find NumPy's cblas_?gemm and OpenBLAS's thread count; register them with LLVM."""
    if numba.config.DISABLE_JIT:
        return _Binding("np.matmul (NUMBA_DISABLE_JIT)")
    # dlsym on the extension's handle searches the libraries it was linked against: NumPy's BLAS
    lib = ctypes.CDLL(_numpy_extension().__file__)
    for sgemm, dgemm, set_name, get_name, config_name in _SYMBOL_SETS:
        try:
            funcs = [getattr(lib, name) for name in (sgemm, dgemm, set_name, get_name, config_name)]
        except AttributeError:
            continue
        s_fn, d_fn, set_fn, get_fn, config_fn = funcs
        config_fn.restype = ctypes.c_char_p
        config = (config_fn() or b"").decode(errors="replace")
        ilp64 = "USE64BITINT" in config
        set_fn.argtypes, set_fn.restype = [ctypes.c_int], None
        get_fn.argtypes, get_fn.restype = [], ctypes.c_int
        import llvmlite.binding as llvm

        s_addr = ctypes.cast(s_fn, ctypes.c_void_p).value
        d_addr = ctypes.cast(d_fn, ctypes.c_void_p).value
        for width in ("i64", "i32"):
            llvm.add_symbol(f"minicoconv_cblas_sgemm_{width}", s_addr)
            llvm.add_symbol(f"minicoconv_cblas_dgemm_{width}", d_addr)
        version = config.split("  ")[0] if config else "OpenBLAS"
        return _Binding(f"{version} ({'64' if ilp64 else '32'}-bit ints), one thread per Numba task",
                        ilp64, set_fn, get_fn)
    return _Binding("np.matmul on the BLAS's own threads (not an OpenBLAS with cblas symbols)")


def binding() -> str:
    """Which BLAS gemm calls and how (binds on first use)."""
    global _binding
    if _binding is None:
        _binding = _bind()
    return _binding.description


@njit(cache=True, inline="always")
def _call(double, ilp64, ta, tb, m, n, k, pa, lda, pb, ldb, beta, pc, ldc):
    if double:
        if ilp64:
            _dgemm64(ROW_MAJOR, NO_TRANS + ta, NO_TRANS + tb, m, n, k, 1.0, pa, lda, pb, ldb, beta, pc, ldc)
        else:
            _dgemm32(ROW_MAJOR, NO_TRANS + ta, NO_TRANS + tb, np.int32(m), np.int32(n), np.int32(k), 1.0, pa,
                     np.int32(lda), pb, np.int32(ldb), beta, pc, np.int32(ldc))
    else:
        one, beta32 = np.float32(1.0), np.float32(beta)
        if ilp64:
            _sgemm64(ROW_MAJOR, NO_TRANS + ta, NO_TRANS + tb, m, n, k, one, pa, lda, pb, ldb, beta32, pc, ldc)
        else:
            _sgemm32(ROW_MAJOR, NO_TRANS + ta, NO_TRANS + tb, np.int32(m), np.int32(n), np.int32(k), one, pa,
                     np.int32(lda), pb, np.int32(ldb), beta32, pc, np.int32(ldc))


@njit(parallel=True, cache=True)
def _gemm_tasks(double, ilp64, m, n, k, a, a_step, ta, lda, b, b_step, tb, ldb, c, c_step, ldc, beta, groups,
                chunks, chunk, split_n, itemsize):
    """Task t = (g, j): rows (split_n false) or columns (split_n true) [j*chunk, (j+1)*chunk) of out[g].

    Addresses are byte addresses, steps and leading dimensions counted in elements. A block
    of columns of out takes the same columns of b (stored transposed: rows of b's storage);
    a block of rows takes the same rows of a.
    """
    for t in prange(groups * chunks):
        g, j = t // chunks, t % chunks
        lo = j * chunk
        pa, pb, pc = a + g * a_step * itemsize, b + g * b_step * itemsize, c + g * c_step * itemsize
        if split_n:
            size = min(chunk, n - lo)
            pb += (lo * ldb if tb else lo) * itemsize
            pc += lo * itemsize
            _call(double, ilp64, ta, tb, m, size, k, pa, lda, pb, ldb, beta, pc, ldc)
        else:
            size = min(chunk, m - lo)
            pa += (lo if ta else lo * lda) * itemsize
            pc += lo * ldc * itemsize
            _call(double, ilp64, ta, tb, size, n, k, pa, lda, pb, ldb, beta, pc, ldc)


@njit(parallel=True, cache=True)
def _touch(x):
    for i in prange(x.shape[0]):
        x[i] = i


def start_pool() -> None:
    """Start Numba's thread pool (it chooses its threading layer then) with one tiny parallel kernel."""
    _touch(np.empty(numba.get_num_threads(), dtype=np.int64))


def _layout(x: np.ndarray):
    """(x, trans, ld, batch step) for cblas: x's last two axes as a row-major matrix or the
    transpose of one (copied when neither axis is contiguous); steps in elements."""
    item = x.itemsize
    rows, cols = x.shape[-2:]
    s_r, s_c = x.strides[-2:]
    if rows <= 1:
        s_r = max(1, cols) * item  # a one-row matrix: its row stride is never used
    if cols <= 1:
        s_c = item
    if s_c == item and s_r % item == 0 and s_r >= max(1, cols) * item:
        trans, ld = 0, s_r // item
    elif s_r == item and s_c % item == 0 and s_c >= max(1, rows) * item:
        trans, ld = 1, s_c // item
    else:
        x = np.ascontiguousarray(x)
        trans, ld = 0, max(1, cols)
    step = 0
    if x.ndim == 3 and x.shape[0] > 1:
        if x.strides[0] % item or x.strides[0] < 0:
            x = np.ascontiguousarray(x)
            trans, ld = 0, max(1, cols)
        step = x.strides[0] // item
    return x, trans, ld, step


def _check(a, b, out):
    for name, arr in (("a", a), ("b", b), ("out", out)):
        if not isinstance(arr, np.ndarray) or arr.ndim not in (2, 3):
            raise ValueError(f"gemm: expected {name} as a 2-d or 3-d numpy.ndarray, "
                             f"got {getattr(arr, 'shape', type(arr).__name__)}")
    if a.dtype not in FLOAT_DTYPES or not (a.dtype == b.dtype == out.dtype):
        raise ValueError(f"gemm: expected a, b and out of one dtype, float32 or float64, "
                         f"got {a.dtype}, {b.dtype}, {out.dtype}")
    m, k = a.shape[-2:]
    k2, n = b.shape[-2:]
    groups = out.shape[0] if out.ndim == 3 else 1
    batch = [x.shape[0] for x in (a, b) if x.ndim == 3]
    if (k != k2 or out.shape[-2:] != (m, n) or any(g not in (1, groups) for g in batch)
            or (out.ndim == 2 and any(g != 1 for g in batch))):
        raise ValueError(f"gemm: expected a (G, M, K), b (G, K, N) -> out (G, M, N) (G may be absent or 1 on "
                         f"a and b), got a {a.shape}, b {b.shape}, out {out.shape}")
    if out.size and (out.strides[-1] != out.itemsize or (m > 1 and out.strides[-2] < n * out.itemsize)
                     or (out.ndim == 3 and groups > 1 and out.strides[0] < 0)):
        raise ValueError(f"gemm: expected out with contiguous rows, got strides {out.strides}")
    if np.may_share_memory(out, a) or np.may_share_memory(out, b):
        raise ValueError("gemm: out must not overlap a or b")
    return m, n, k, groups


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool = False) -> np.ndarray:
    """out[g] = a[g] @ b[g] (out[g] += a[g] @ b[g] when `accumulate`); returns out.

    a (G, M, K) | (M, K), b (G, K, N) | (K, N), out (G, M, N) | (M, N); G*ceil-split tasks
    run in Numba's pool, each one single-threaded BLAS call (see the module docstring).
    """
    m, n, k, groups = _check(a, b, out)
    if out.size == 0:
        return out
    if k == 0:
        if not accumulate:
            out.fill(0)
        return out
    if _binding is None:
        binding()
    if not _binding.direct:
        if accumulate:
            out += np.matmul(a, b)
        else:
            np.matmul(a, b, out=out)
        return out
    a, ta, lda, a_step = _layout(a)
    b, tb, ldb, b_step = _layout(b)
    ldc = out.strides[-2] // out.itemsize if m > 1 else n
    c_step = out.strides[0] // out.itemsize if out.ndim == 3 else 0
    threads = numba.get_num_threads()
    split_n = n >= m
    dim = n if split_n else m
    # chunks per matrix such that groups * chunks is a multiple of the thread count
    per = threads // math.gcd(groups, threads) if m * n * k >= SPLIT_MIN_MACS else 1
    chunk = -(-dim // per)
    chunk = min(dim, -(-chunk // ALIGN) * ALIGN)
    chunks = -(-dim // chunk)
    previous = _binding.get_threads()
    if previous != 1:
        _binding.set_threads(1)
    try:
        _gemm_tasks(a.dtype == np.float64, _binding.ilp64, m, n, k, a.ctypes.data, a_step, ta, lda,
                    b.ctypes.data, b_step, tb, ldb, out.ctypes.data, c_step, ldc, 1.0 if accumulate else 0.0,
                    groups, chunks, chunk, split_n, out.itemsize)
    finally:
        if previous != 1:
            _binding.set_threads(previous)
    return out


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.matmul(a, b) for (..., m, k) @ (..., k, n) -> (..., m, n), batch axes broadcast.

    Float operands of one dtype go through gemm: an operand whose batch axes are all 1 is
    one shared matrix, the other's batch axes are flattened into G. Vectors (1-d) and other
    dtypes go to np.matmul.
    """
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
            and a.dtype in FLOAT_DTYPES and a.ndim >= 2 and b.ndim >= 2 and a.shape[-1] == b.shape[-2]):
        return np.matmul(a, b)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    groups = math.prod(batch)

    def as_3d(x):
        if math.prod(x.shape[:-2]) == 1:
            return x.reshape(x.shape[-2:])
        return np.broadcast_to(x, batch + x.shape[-2:]).reshape(groups, *x.shape[-2:])

    m, n = a.shape[-2], b.shape[-1]
    out = np.empty((groups, m, n) if batch else (m, n), dtype=a.dtype)
    gemm(as_3d(a), as_3d(b), out)
    return out.reshape(batch + (m, n))
