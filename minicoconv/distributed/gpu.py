"""One GPU per rank: rank r on a node takes that node's GPU local_rank mod (GPUs it can see).

With SLURM's --gpus-per-task (or CUDA_VISIBLE_DEVICES set per rank) every rank sees one GPU,
index 0. The choice must be made before anything creates a CUDA context, so it runs
before the CUDA backend is first loaded. Not exercised on the 2-core CI machine (no GPU).
"""

from __future__ import annotations


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
