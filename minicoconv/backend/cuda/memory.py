"""Device memory from CuPy's memory pool for numba's arrays (an External Memory Manager plugin).

A training step allocates and frees device memory about a thousand times (activations,
gradients, im2col columns, temporaries). numba's own manager calls cuMemAlloc for each
and frees in batches with cuMemFree, and every cuMemFree waits for the whole GPU: the
step stalls on the host a hundred times. A pool keeps freed blocks and hands them out
again with no driver call and no wait; CuPy's is well kept and stream-ordered (a block
freed on the default stream is reused by later work on that stream only after it).

numba supports this through its EMM plugin interface: `memalloc(size)` returns an owned,
reference-counted pointer; when the array and every view of it are gone, its finalizer
lets go of CuPy's block, which goes back to the pool. The pointer is reference-counted
the way numba's own manager counts its pointers (an AutoFreePointer held in
`allocations` until the last owned reference goes). Installed by
`load_cuda_backend()` before numba creates its CUDA context, unless the process already
chose a memory manager (NUMBA_CUDA_MEMORY_MANAGER) or `MINICOCONV_CUDA_POOL=0` is set.
"""

from __future__ import annotations

import ctypes
import os
import weakref

from numba import cuda
from numba.cuda.cudadrv.driver import AutoFreePointer, GetIpcHandleMixin, HostOnlyCUDAMemoryManager, MemoryInfo


class CuPyPoolMemoryManager(GetIpcHandleMixin, HostOnlyCUDAMemoryManager):
    """numba device allocations served by CuPy's default memory pool."""

    def initialize(self) -> None:
        """Nothing to prepare: CuPy creates its pool on first use."""

    def memalloc(self, size: int):  # -> an OwnedPointer
        """A pooled block as numba expects it: an owned reference counted by every view of the array.

        As numba's own manager does, the MemoryPointer is held in `self.allocations` until the
        last owned reference (the array and every slice view of it) is gone: views keep only a
        weak proxy to it, so the array alone must not decide when the block goes back.
        """
        import cupy

        block = cupy.cuda.alloc(max(size, 1))  # a pooled cupy.cuda.MemoryPointer; dropping it returns the block
        key = int(block.ptr)
        allocations = self.allocations

        def release() -> None:  # runs when the last owned reference goes; then `block` is dropped
            allocations.pop(key, None)

        context = weakref.proxy(self.context) if self.context is not None else None
        mem = AutoFreePointer(context, ctypes.c_void_p(key), size, finalizer=release)
        mem._pool_block = block  # the pooled block lives exactly as long as this pointer
        allocations[key] = mem
        return mem.own()

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
