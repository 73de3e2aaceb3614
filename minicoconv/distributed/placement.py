"""Where a rank runs: its share of the node's cores, and its GPU.

Cores: K ranks on a node of C cores each use C // K threads (at least 1) in Numba's pool
and in BLAS, instead of K pools of C threads fighting over C cores. A rank that the
launcher bound to fewer cores uses those; a count set in the environment
(NUMBA_NUM_THREADS, OPENBLAS_NUM_THREADS, OMP_NUM_THREADS) is never overridden.

GPU: rank r on a node takes that node's GPU local_rank mod (GPUs it can see). With SLURM's
--gpus-per-task (or CUDA_VISIBLE_DEVICES set per rank) every rank sees one GPU, index 0.
The choice must be made before anything creates a CUDA context, so it runs before the
CUDA backend is first loaded. Tested with two ranks under numba's CUDA simulator (one simulated
GPU, shared); not yet on a machine with several GPUs.
"""

from __future__ import annotations

import os


def threads_per_rank(node_cores: int, allowed_cores: int, ranks_on_node: int) -> int:
    """Threads for one rank: its bound cores if the launcher bound it, else node_cores // ranks_on_node."""
    if allowed_cores < node_cores:  # bound by the launcher to a subset: use all of it
        return max(1, allowed_cores)
    return max(1, node_cores // max(1, ranks_on_node))


def share_cores(ranks_on_node: int) -> int:
    """Set Numba's and BLAS's thread counts for this rank (unless set in the environment); returns the count."""
    node = os.cpu_count() or 1
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else node
    threads = threads_per_rank(node, allowed, ranks_on_node)
    if "NUMBA_NUM_THREADS" not in os.environ:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if not any(v in os.environ for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        from ..threads import set_blas_threads

        set_blas_threads(threads)
    return threads


def local_gpu_index(local_rank: int, visible_gpus: int) -> int:
    """Which of the node's visible GPUs rank `local_rank` uses: local_rank mod visible_gpus."""
    if visible_gpus < 1:
        raise RuntimeError("--device cuda: this rank sees no GPU (check CUDA_VISIBLE_DEVICES and the driver)")
    if local_rank < 0:
        raise ValueError(f"local_rank must be >= 0, got {local_rank}")
    return local_rank % visible_gpus


def select_local_gpu(local_rank: int) -> int:
    """Make this rank's GPU current for numba.cuda (and CuPy, when installed); returns its index."""
    try:
        from numba import cuda
    except ImportError:
        return 0  # the CUDA backend's own check then says what is missing
    if not cuda.is_available():
        return 0
    from ..backend.cuda.device import SIMULATOR

    if not SIMULATOR:  # the simulator has no memory managers
        from ..backend.cuda.memory import install_pool

        install_pool()  # before the first context: contexts keep the memory manager they start with
    index = local_gpu_index(local_rank, len(cuda.gpus))
    cuda.select_device(index)
    try:
        import cupy
    except ImportError:
        return index
    cupy.cuda.Device(index).use()
    return index
