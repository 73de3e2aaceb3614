"""Thread pools: Numba's kernels and NumPy's BLAS both use every core by default.

Every convolution here alternates a parallel Numba kernel (im2col, col2im, batch
norm, ...) with a BLAS GEMM; the two pools never run at the same time, so each may use
all the cores. How many BLAS threads pay depends on whether the machine is otherwise
idle. Measured on the 2-core development machine, ResNet18 training step at batch 32
(`minicoconv bench --model resnet18 --conv static --blas-threads 1|2`):

    idle machine:                     BLAS 2 threads  835-864 ms,   1 thread  1239 ms
    one other busy process running:   BLAS 2 threads  3204-3398 ms, 1 thread  1368-1530 ms

On a busy machine the two pools hand the cores back and forth and wait for
descheduled workers, so there one BLAS thread is up to 2x faster:
`set_blas_threads(1)` (or OPENBLAS_NUM_THREADS=1 before starting Python). NumPy's
default is kept otherwise, and a count set in the environment is never overridden.
"""

from __future__ import annotations

_limiter = None  # threadpoolctl's limiter, kept alive for the life of the process


def set_blas_threads(n: int) -> None:
    """Use `n` threads in NumPy's BLAS from now on (through threadpoolctl, so also after NumPy is loaded)."""
    global _limiter
    if n < 1:
        raise ValueError(f"set_blas_threads: n must be >= 1, got {n}")
    from threadpoolctl import threadpool_limits

    _limiter = threadpool_limits(limits=n, user_api="blas")


def blas_threads() -> int:
    """NumPy's current BLAS thread count (the largest, if several BLAS libraries are loaded)."""
    from threadpoolctl import threadpool_info

    return max((p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"), default=1)
