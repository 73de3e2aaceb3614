"""Make numba's CUDA simulator behave like a GPU for this backend (imported only under it).

NUMBA_ENABLE_CUDASIM=1 runs every GPU thread as a Python thread. Four things differ
from a GPU in ways that matter here, and are put right when the backend loads:

1. Speed: `cuda.syncthreads()` is a barrier between Python threads, and with Python's
   default 5 ms GIL switch interval every barrier costs milliseconds (a small tiled
   matmul: seconds). A 10 us interval makes the simulated kernels ~15x faster.
2. Shared memory: each `cuda.shared.array(...)` call looks its array up in a dict and
   creates it if missing, without a lock; two threads can both miss and end up with
   *different* "shared" arrays, which silently breaks block reductions. Add the lock.
3. Device functions from another module swap that module's `cuda` global for the
   simulated API on every call, without a lock; concurrent calls can restore the real
   module under a running thread. Reference-count the swap, as numba-cuda did upstream
   (NVIDIA/numba-cuda PR #690; only patched where the installed simulator lacks it).
4. A device array's host-side `.shape` is a plain tuple on a GPU; the simulator's
   refuses negative indices (mimicking shapes inside kernels), which breaks host code
   such as `a.shape[-1]`. Return the plain tuple.
"""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from contextlib import contextmanager

import numpy as np
from numba.cuda.simulator import kernel, kernelapi
from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

_shared_lock = threading.Lock()
_original_shared_array = kernelapi.FakeCUDAShared.array


def _shared_array(self, shape, dtype, *args, **kwargs):
    """FakeCUDAShared.array, with the lookup-or-create under a lock (same key: the caller's line)."""
    if shape == 0:  # dynamic shared memory: one buffer, nothing to look up
        return _original_shared_array(self, shape, dtype, *args, **kwargs)
    if isinstance(dtype, kernelapi.types.Type):  # (the simulator's own imports: they vary by version)
        dtype = kernelapi.numpy_support.as_dtype(dtype)
    caller = sys._getframe(1)
    key = (caller.f_code.co_filename, caller.f_lineno)
    with _shared_lock:
        array = self._allocations.get(key)
        if array is None:
            array = self._allocations[key] = np.empty(shape, dtype)
    return array


_swap_lock = threading.Lock()
_swap_count: dict[int, int] = defaultdict(int)
_swap_orig: dict[int, dict] = {}


@contextmanager
def _counted_swap(fn, fake_cuda_module):
    """swapped_cuda_module with a reference count per module: the last thread out restores `cuda`."""
    from numba import cuda

    namespace = fn.__globals__
    key = id(namespace)
    with _swap_lock:
        if _swap_count[key] == 0:
            _swap_orig[key] = {k: v for k, v in namespace.items() if v is cuda}
            namespace.update(dict.fromkeys(_swap_orig[key], fake_cuda_module))
        _swap_count[key] += 1
    try:
        yield
    finally:
        with _swap_lock:
            _swap_count[key] -= 1
            if _swap_count[key] == 0:
                namespace.update(_swap_orig.pop(key))


def patch() -> None:
    """Apply the four fixes above (idempotent)."""
    sys.setswitchinterval(min(sys.getswitchinterval(), 1e-5))
    kernelapi.FakeCUDAShared.array = _shared_array
    if not hasattr(kernelapi, "_swap_refcount"):  # upstream fix missing
        kernelapi.swapped_cuda_module = kernel.swapped_cuda_module = _counted_swap
    FakeCUDAArray.shape = property(lambda self: self._ary.shape)
