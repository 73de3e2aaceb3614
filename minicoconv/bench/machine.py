"""The machine a benchmark ran on, and one thread count for every thread pool.

Three pools can run at once in this process: Numba's (the parallel kernels),
NumPy's BLAS (the GEMMs) and PyTorch's (the reference). They never run
concurrently here (a Numba kernel never calls BLAS), so each may use all the
cores, but none may use more: `set_threads(n)` sets

- Numba: `numba.set_num_threads(n)` (at most NUMBA_NUM_THREADS, fixed at import);
- BLAS: NumPy's default (all cores) or the count set in the environment, or `blas`
  threads when given (`--blas-threads`; 1 is faster on a busy machine, see
  `minicoconv/threads.py`);
- PyTorch: `torch.set_num_threads(n)`, when PyTorch is in use.

Idle OpenMP threads. Numba's default threading layer here is OpenMP (libgomp),
as is PyTorch's pool, and libgomp lets a thread that has finished its share
spin before it sleeps. On a machine whose cores are busy with other processes
the spinning threads use up their time slices and every parallel region then
waits for the scheduler: a 5 us Numba launch was measured at 5-25 ms this way,
a tiny PyTorch conv at ~90 ms. `prefer_passive_openmp()` sets
OMP_WAIT_POLICY=passive (unless the user set it) before either library starts
its OpenMP runtime, for both alike; on an idle machine it costs a few
microseconds per parallel region. OpenBLAS's own worker threads spin too
(OPENBLAS_THREAD_TIMEOUT) and compete with Numba's pool between a kernel and
its GEMM: on a busy machine, `--blas-threads 1` can be much faster.
"""

from __future__ import annotations

import os
import platform

from ..threads import blas_threads, set_blas_threads


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


def prefer_passive_openmp() -> str:
    """OMP_WAIT_POLICY=passive unless already set; call before Numba's first parallel kernel and `import torch`."""
    return os.environ.setdefault("OMP_WAIT_POLICY", "passive")


def numba_threading_layer() -> str:
    """The layer Numba chose (known once a parallel kernel has run), else the configured preference."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return f"not chosen yet (config: {numba.config.THREADING_LAYER})"


def set_threads(threads: int, torch=None, blas: int | None = None) -> list[str]:
    """Use `threads` threads in Numba and (if given) PyTorch, and `blas` in BLAS if given; return warnings."""
    import numba

    warnings = []
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    ceiling = numba.config.NUMBA_NUM_THREADS
    if threads > ceiling:
        warnings.append(f"Numba can use at most {ceiling} threads (NUMBA_NUM_THREADS): using {ceiling}")
    numba.set_num_threads(min(threads, ceiling))
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

    info = {
        "cpu": f"{cpu_model()}, {available_cores()} cores available ({os.cpu_count()} online)",
        "load average": " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?",
        "python": platform.python_version(),
        "numpy": f"{np.__version__}, BLAS {numpy_blas()}, BLAS threads {blas_threads()}, "
                 f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT', '(unset)')}",
        "numba": f"{numba.__version__}, {numba.get_num_threads()} threads, threading layer "
                 f"{numba_threading_layer()}",
        "openmp": f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}",
        "torch": (f"{torch.__version__}, {torch.get_num_threads()} threads" if torch is not None
                  else "not used"),
        "device": device,
    }
    return info
