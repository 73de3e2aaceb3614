"""Device memory from CuPy's memory pool for numba's arrays (an External Memory Manager plugin).

A training step allocates and frees device memory about a thousand times (activations,
gradients, im2col columns, temporaries). numba's own manager calls cuMemAlloc for each
and frees in batches with cuMemFree, and every cuMemFree waits for the whole GPU: the
step stalls on the host a hundred times. A pool keeps freed blocks and hands them out
again with no driver call and no wait; CuPy's is well kept and stream-ordered (a block
freed on the default stream is reused by later work on that stream only after it).

numba supports this through its EMM plugin interface: `memalloc(size)` returns a
`MemoryPointer` whose finalizer runs when numba drops the array; here that finalizer
lets go of CuPy's block, which goes back to the pool. Installed by
`load_cuda_backend()` before numba creates its CUDA context, unless the process already
chose a memory manager (NUMBA_CUDA_MEMORY_MANAGER) or `MINICOCONV_CUDA_POOL=0` is set.
"""

from __future__ import annotations

import ctypes
import os

from numba import cuda
from numba.cuda.cudadrv.driver import GetIpcHandleMixin, HostOnlyCUDAMemoryManager, MemoryInfo, MemoryPointer


class CuPyPoolMemoryManager(GetIpcHandleMixin, HostOnlyCUDAMemoryManager):
    """numba device allocations served by CuPy's default memory pool."""

    def initialize(self) -> None:
        """Nothing to prepare: CuPy creates its pool on first use."""

    def memalloc(self, size: int) -> MemoryPointer:
        import cupy

        block = cupy.cuda.alloc(max(size, 1))  # a pooled cupy.cuda.MemoryPointer; freeing it returns the block

        def release(block=block) -> None:
            del block  # the last reference: CuPy puts the block back in its pool

        return MemoryPointer(self.context, ctypes.c_void_p(int(block.ptr)), size, finalizer=release)

    def get_memory_info(self) -> MemoryInfo:
        import cupy

        free, total = cupy.cuda.runtime.memGetInfo()
        return MemoryInfo(free=free, total=total)

    @property
    def interface_version(self) -> int:
        return 1

    def reset(self) -> None:
        super().reset()
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()


def install_pool() -> bool:
    """Use CuPy's pool for numba's device arrays if possible; True when it is (or already was) installed."""
    from numba.cuda.cudadrv import driver

    try:
        from numba.cuda.core import config  # numba-cuda
    except ImportError:
        from numba import config
    if os.environ.get("MINICOCONV_CUDA_POOL", "1") == "0" or config.CUDA_MEMORY_MANAGER != "default":
        return False
    if driver._memory_manager is CuPyPoolMemoryManager:
        return True
    try:
        import cupy  # noqa: F401
    except Exception:  # no CuPy: numba's own manager
        return False
    if _context_exists():  # contexts keep the manager they were made with: too late to switch
        return False
    driver.set_memory_manager(CuPyPoolMemoryManager)
    return True


def pool_in_use() -> bool:
    """Whether the current numba context allocates from CuPy's pool."""
    ctx = cuda.current_context()
    return isinstance(getattr(ctx, "memory_manager", None), CuPyPoolMemoryManager)


def _context_exists() -> bool:
    from numba.cuda.cudadrv import devices

    return any(getattr(gpu, "primary_context", None) is not None for gpu in devices.gpus)
