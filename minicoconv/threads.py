"""Threads: one pool, Numba's, does minicoconv's parallel work.

Every CPU kernel is a Numba `prange` loop, and the GEMMs run inside such loops too, one
single-threaded BLAS call per task (backend/cpu/blas.py). So NumPy's OpenBLAS pool is never
woken by minicoconv, its idle workers (and a loaded PyTorch's) have nothing to spin after,
and the speed does not depend on what the process imported first or on its environment.
Importing minicoconv sets nothing: no environment variable, no thread count, no warning.

    set_num_threads(n)   use n of Numba's threads for minicoconv's kernels from now on
                         (numba.set_num_threads; at most NUMBA_NUM_THREADS, fixed when Numba
                         loads, by default the machine's cores). The CLI calls it.
    get_num_threads()    the count minicoconv's kernels use now
    blas_threads()       NumPy's own BLAS thread count (unchanged by minicoconv; its GEMMs use
                         one thread per task whatever it is)
    set_blas_threads(n)  set NumPy's BLAS thread count for the whole process: only NumPy's own
                         matrix products (and gemm's fallback on a BLAS other than OpenBLAS)
                         are affected

Numba's threading layer is chosen, not left to what happens to be installed or loaded.
Numba's own default is TBB if installed, else OpenMP (libgomp, whose idle threads spin at
every barrier unless OMP_WAIT_POLICY=passive was set before it loaded), else its workqueue.
`use_threading_layer()` picks the workqueue (plain pthreads and condition variables: nothing
spins) when the first CPU tensor is made, not at import, and only if nothing chose before:
not the user (NUMBA_THREADING_LAYER, or numba.config.THREADING_LAYER set in code), and no
parallel Numba kernel has run yet in the process (the layer is fixed from then on). The
README gives the measured difference. One limit of the workqueue: two Python threads may
not run parallel kernels at the same moment (Numba aborts); a program that runs minicoconv
from several threads at once should choose "tbb" (pip install tbb) or "omp" itself first.
"""

from __future__ import annotations

_limiter = None  # threadpoolctl's limiter, kept alive for the life of the process
#: the layer `use_threading_layer` asks Numba for when the process has not chosen one
THREADING_LAYER = "workqueue"


def use_threading_layer() -> str:
    """Ask Numba for THREADING_LAYER unless the process already chose a layer (see the module
    docstring); return the layer now configured. Called by the CPU backend on first use."""
    import numba
    from numba.np.ufunc import parallel

    if numba.config.THREADING_LAYER == "default" and not getattr(parallel, "_is_initialized", True):
        numba.config.THREADING_LAYER = THREADING_LAYER
    return numba.config.THREADING_LAYER


def set_num_threads(n: int) -> int:
    """Run minicoconv's kernels on `n` threads (Numba's pool, capped at NUMBA_NUM_THREADS);
    returns the count now in use. Like numba.set_num_threads, it applies to the calling thread."""
    import numba

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be an int >= 1, got {n!r}")
    use_threading_layer()  # numba.set_num_threads starts Numba's pool, fixing its layer
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return numba.get_num_threads()


def get_num_threads() -> int:
    """The number of threads minicoconv's kernels use now (Numba's)."""
    import numba

    use_threading_layer()  # numba.get_num_threads starts Numba's pool, fixing its layer
    return numba.get_num_threads()


def set_blas_threads(n: int) -> None:
    """Use `n` threads in NumPy's BLAS from now on (through threadpoolctl, so also after NumPy is loaded).

    Process-wide and NumPy's own: minicoconv's GEMMs call OpenBLAS single-threaded from its
    Numba tasks whatever this count is (backend/cpu/blas.py)."""
    global _limiter
    if n < 1:
        raise ValueError(f"set_blas_threads: n must be >= 1, got {n}")
    from threadpoolctl import threadpool_limits

    _limiter = threadpool_limits(limits=n, user_api="blas")


def blas_threads() -> int:
    """NumPy's current BLAS thread count (the largest, if several BLAS libraries are loaded)."""
    from threadpoolctl import threadpool_info

    return max((p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"), default=1)
