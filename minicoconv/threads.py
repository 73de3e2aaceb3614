"""Thread pools: Numba's kernels use every core, NumPy's BLAS one thread.

Every convolution here alternates a parallel Numba kernel (im2col, col2im, batch
norm, ...) with a BLAS GEMM. With both pools at full width, OpenBLAS's workers and
Numba's OpenMP threads hand the cores back and forth at every switch, and any other
process on the machine stalls whichever pool waits for a descheduled worker. Measured
on the 2-core development machine with one other busy process: a ResNet18 training
step took 1368-1530 ms with BLAS on 1 thread and 3204-3398 ms with BLAS on 2 threads
(`OPENBLAS_NUM_THREADS=1|2 minicoconv bench --model resnet18 --conv static`).

So minicoconv runs BLAS single-threaded unless you decide otherwise: a BLAS thread
count you set in the environment (OPENBLAS_NUM_THREADS, MKL_NUM_THREADS,
OMP_NUM_THREADS) is always left alone, and `set_blas_threads(n)` changes it at any
time. The default is applied at import, through the environment when NumPy is not
loaded yet, and through `threadpoolctl` when it is.
"""

from __future__ import annotations

import os
import sys

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")

_limiter = None  # threadpoolctl's limiter, kept alive for the life of the process


def user_chose_blas_threads() -> bool:
    """Whether the environment names a BLAS thread count (then minicoconv leaves BLAS alone)."""
    return any(os.environ.get(v) for v in BLAS_THREAD_VARIABLES)


def set_blas_threads(n: int) -> None:
    """Use `n` threads in NumPy's BLAS from now on (through threadpoolctl)."""
    global _limiter
    if n < 1:
        raise ValueError(f"set_blas_threads: n must be >= 1, got {n}")
    from threadpoolctl import threadpool_limits

    _limiter = threadpool_limits(limits=n, user_api="blas")


def blas_single_threaded_by_default() -> None:
    """Called once at import: BLAS on one thread unless the user chose a count."""
    if user_chose_blas_threads():
        return
    if "numpy" in sys.modules:  # OpenBLAS already read the environment: change it live
        set_blas_threads(1)
    else:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
        os.environ["MKL_NUM_THREADS"] = "1"
