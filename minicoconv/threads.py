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

Idle workers. After a call, OpenBLAS's workers spin for up to 2**28 cycles (a tenth of a
second) before they sleep, and the Numba kernel that follows shares the cores with them.
`import minicoconv` therefore sets OPENBLAS_THREAD_TIMEOUT=4 (sleep at once) unless the
environment sets it, but OpenBLAS reads it only when NumPy loads it. Measured on the 2-core
machine, forward + backward at batch 32 with the default against 4 (min of 5, two rounds):
ResNet18 974 against 802-836 ms, MobileNetV2-DY-CNN 757 against 536-588 ms; the fused
CoConv at 4x4 (routing, whose 1x1 convs are BLAS calls, then the Numba mixture kernel)
took 48-55 against 29-37 ms. Hence `warn_if_blas_spins` when NumPy came first.
"""

from __future__ import annotations

import warnings

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


def warn_if_blas_spins() -> None:
    """Warn that OpenBLAS runs with its spinning idle workers (called by `import minicoconv`
    when NumPy was imported before it and the environment does not set OPENBLAS_THREAD_TIMEOUT)."""
    from threadpoolctl import threadpool_info

    if any(p.get("internal_api") == "openblas" and p.get("threading_layer") == "pthreads" and p["num_threads"] > 1
           for p in threadpool_info()):
        warnings.warn("NumPy was imported before minicoconv, so OpenBLAS started without OPENBLAS_THREAD_TIMEOUT=4: "
                      "its idle threads spin after every BLAS call and slow the Numba kernels that follow "
                      "(on 2 cores a ResNet18 training step by about 20%, MobileNetV2-DY-CNN by 30-40%). Import "
                      "minicoconv before NumPy, or set OPENBLAS_THREAD_TIMEOUT=4 in the environment.",
                      RuntimeWarning, stacklevel=3)
