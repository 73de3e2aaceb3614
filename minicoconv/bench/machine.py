"""The machine a benchmark ran on, and one thread count for every thread pool.

Two pools can do work in a benchmark: Numba's (all of minicoconv's kernels, the GEMMs
included: one single-threaded BLAS call per task, see backend/cpu/blas.py) and PyTorch's
(the reference). They take turns, so each may use all the cores but none more:
`set_threads(n)` sets

- minicoconv: `minicoconv.set_num_threads(n)` (Numba's pool, at most NUMBA_NUM_THREADS);
- BLAS: NumPy's own count is left alone unless `blas` is given (`--blas-threads`); it does
  not change minicoconv's GEMMs, only NumPy's own products;
- PyTorch: `torch.set_num_threads(n)`, when PyTorch is in use.

Nothing is set in the environment: the benchmark measures the process a user has, with
NumPy and PyTorch loaded as they load, and `describe` prints what it depends on (CPU,
cores, BLAS and how minicoconv calls it, Numba's threading layer).
"""

from __future__ import annotations

import os
import platform

from ..threads import blas_threads, set_blas_threads, set_num_threads


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def numpy_blas() -> str:
    """The BLAS NumPy was built against, e.g. 'scipy-openblas 0.3.31'."""
    import numpy as np

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # NumPy < 1.25 has no dict form
        return "unknown"


def numba_threading_layer(start: bool = False) -> str:
    """The layer Numba chose (known once a parallel kernel has run), else the configured preference.

    start: run one tiny parallel kernel first, so that Numba chooses its layer now, among the
    libraries loaded so far, as the first kernel of a benchmark would."""
    import numba

    if start:
        from ..backend import get_backend
        from ..backend.cpu.blas import start_pool

        get_backend("cpu")  # minicoconv's choice of layer, as in any process that makes a CPU tensor
        start_pool()
    try:
        return numba.threading_layer()
    except ValueError:
        return f"not chosen yet (config: {numba.config.THREADING_LAYER})"


def set_threads(threads: int, torch=None, blas: int | None = None) -> list[str]:
    """Use `threads` threads in minicoconv (Numba) and (if given) PyTorch, and `blas` in NumPy's BLAS if
    given; return warnings."""
    import numba

    warnings = []
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    ceiling = numba.config.NUMBA_NUM_THREADS
    if threads > ceiling:
        warnings.append(f"Numba can use at most {ceiling} threads (NUMBA_NUM_THREADS): using {ceiling}")
    set_num_threads(threads)
    if blas is not None:
        set_blas_threads(blas)
    if torch is not None:
        torch.set_num_threads(threads)
    return warnings


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(torch=None, device: str = "cpu") -> dict[str, str]:
    """What the numbers depend on: CPU, cores, load, library versions and thread counts."""
    import numba
    import numpy as np

    from ..backend.cpu import blas

    info = {
        "cpu": f"{cpu_model()}, {available_cores()} cores available ({os.cpu_count()} online)",
        "load average": " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?",
        "python": platform.python_version(),
        "numpy": f"{np.__version__}, BLAS {numpy_blas()} ({blas_threads()} threads for NumPy's own calls)",
        "gemm": blas.binding(),
        "numba": f"{numba.__version__}, {numba.get_num_threads()} threads, threading layer "
                 f"{numba_threading_layer(start=True)}",
        "torch": (f"{torch.__version__}, {torch.get_num_threads()} threads" if torch is not None
                  else "not used"),
        "device": device,
    }
    return info
