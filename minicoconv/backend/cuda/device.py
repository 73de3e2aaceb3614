"""Device arrays, transfers and kernel launches: everything the CUDA kernels stand on.

Array representation. A CUDA backend array is numba's own device array
(`DeviceNDArray`; `FakeCUDAArray` under the simulator), always C-contiguous. It
already has what the autodiff core reads (`shape`, `ndim`, `dtype`, `size`) and
`copy_to_host()`, so there is no wrapper class. Views that NumPy would make lazily
(transpose, broadcast_to, strided slices) are instead materialised by one strided
copy kernel (`shape.py`); reshapes and contiguous slices stay zero-copy views. Inside
the backend, kernels index flat 1-d views (`flat`) with explicit (shape, strides,
offset) index math, so a strided *operand* costs nothing: the elementwise kernels
read broadcast operands through stride-0 axes, and the GEMM reads transposed matrices
and column buffers through swapped strides (`linalg.Operand`). Only arrays handed
back to the autodiff core are contiguous, which keeps every kernel's input simple.

Launching. A kernel is launched over `work` items with `launch`: every kernel loops

    for i in range(cuda.grid(1), work, cuda.gridsize(1)):   # a grid-stride loop

so any grid size is correct and the grid is capped at `MAX_BLOCKS` blocks of
`THREADS` threads. Kernels that give a whole block to one output (block reductions)
use `items_per_block=1` and loop `for o in range(blockIdx.x, n_out, gridDim.x)`.

The simulator (NUMBA_ENABLE_CUDASIM=1) runs each simulated thread as a Python
thread, so under it the blocks are tiny (8 threads, at most 2 blocks, 4x4 matmul
tiles). The kernels are the same; small tiles even make the tiny test matrices
span several tiles, which exercises the tile-boundary code.
"""

from __future__ import annotations

import sys
from functools import cache

import numpy as np
from numba import config, cuda

SIMULATOR = bool(config.ENABLE_CUDASIM)
#: threads per block of 1-d launches; a power of two (block reductions halve it)
THREADS = 8 if SIMULATOR else 256
#: most blocks along one grid axis (grid-stride loops cover the rest)
MAX_BLOCKS = 2 if SIMULATOR else 65535
#: side of the square shared-memory tiles of the matmul (block = TILE x TILE threads)
TILE = 4 if SIMULATOR else 16


if SIMULATOR:  # put right where the simulator differs from a GPU (see simulator.py)
    from .simulator import patch

    patch()
else:
    # Small tensors get small grids on purpose (one block per BN channel, per output row);
    # numba would warn "Grid size N will likely result in GPU under-utilization" for each.
    import numba.cuda.dispatcher

    numba.cuda.dispatcher.config.CUDA_LOW_OCCUPANCY_WARNINGS = 0


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def launch(kernel, work: int, *args, items_per_block: int = THREADS) -> None:
    """Run `kernel[blocks, THREADS](*args)` with enough blocks for `work` items (none if 0)."""
    if work > 0:
        kernel[min(cdiv(work, items_per_block), MAX_BLOCKS), THREADS](*args)


def launch_tiles(kernel, rows: int, cols: int, batch: int, *args) -> None:
    """Run a 2-d tiled kernel: blocks of TILE x TILE threads over a (batch, rows, cols) output."""
    if rows > 0 and cols > 0 and batch > 0:
        grid = (min(cdiv(cols, TILE), MAX_BLOCKS), min(cdiv(rows, TILE), MAX_BLOCKS), min(batch, MAX_BLOCKS))
        kernel[grid, (TILE, TILE)](*args)


def launch_rows(kernel, work: int, rows: int, *args) -> None:
    """Run `kernel[(x, rows), THREADS](*args)`: grid row y for item y of `rows` (a tensor of a
    list, say), x blocks enough for `work` elements of the largest (none if either is 0)."""
    if work > 0 and rows > 0:
        kernel[(min(cdiv(work, THREADS), MAX_BLOCKS), min(rows, MAX_BLOCKS)), THREADS](*args)


def synchronize() -> None:
    """Wait until every launched kernel has finished (kernels run asynchronously)."""
    cuda.synchronize()


# ---- arrays ----------------------------------------------------------------------------
def is_device_array(obj) -> bool:
    """Whether `obj` is a numba CUDA device array (real, or the simulator's FakeCUDAArray)."""
    return hasattr(obj, "copy_to_host") and hasattr(obj, "is_c_contiguous")


def empty(shape, dtype):
    """An uninitialised C-contiguous device array."""
    return cuda.device_array(tuple(int(n) for n in shape), dtype=np.dtype(dtype))


def to_device(host: np.ndarray):
    """Copy a host array to a new C-contiguous device array (0-d arrays stay 0-d)."""
    host = np.asarray(host)
    if not host.flags.c_contiguous:
        host = host.copy(order="C")
    return cuda.to_device(host)


def to_host(a) -> np.ndarray:
    """A NumPy copy of a device array (NumPy arrays pass through)."""
    return a.copy_to_host() if is_device_array(a) else np.asarray(a)


def contiguous(a):
    """`a` itself when C-contiguous, else a C-contiguous copy.

    Backend arrays are always contiguous; this only catches strided device arrays made
    outside the backend (e.g. a step slice of a DeviceNDArray), through the host.
    """
    return a if a.is_c_contiguous() else to_device(np.ascontiguousarray(a.copy_to_host()))


def flat(a):
    """The 1-d view of a device array that kernels index (0-d arrays give 1 element)."""
    return contiguous(a).reshape(1 if a.ndim == 0 else a.size)


def owns_memory(a) -> bool:
    """Whether `a` is the only array that sees its memory (so a `.grad` may keep it, no copy).

    On a GPU, a's pointer must be a whole allocation (not a slice's view pointer) with one
    owned reference (slices take one each) held by `a` alone (reshapes share a's pointer
    object). Under the simulator, a's NumPy buffer must own its memory, or be the one view of
    an array nothing else holds, and be seen by no view (an array the simulator uploaded is a
    view of a view, and is always copied: safe, if slower).
    Anything else, or anything unexpected, answers False: the caller then copies.
    """
    if SIMULATOR:
        data = getattr(a, "_ary", None)
        if not isinstance(data, np.ndarray) or sys.getrefcount(data) > 3:  # a's attribute, `data`, the argument
            return False
        root = data.base  # a reshape's buffer is its source's: fine when nothing else holds that source
        return root is None or (isinstance(root, np.ndarray) and root.base is None and sys.getrefcount(root) <= 3)
    mem = getattr(a, "gpu_data", None)
    try:
        whole = mem._view is mem._mem and mem._mem.refct == 1
    except (AttributeError, ReferenceError):
        return False
    return whole and sys.getrefcount(mem) <= 3  # a's attribute, `mem`, getrefcount's argument


@cache
def placeholder(dtype):
    """A one-element array passed for an optional argument that a kernel will not touch."""
    return empty((1,), dtype)


def check_device_array(op: str, name: str, a, ndim: int | None = None, layout: str = "",
                       floating: bool = True):
    """Validate a backend array argument; errors say what was expected and what was given."""
    if not is_device_array(a):
        raise ValueError(f"{op}: expected {name} to be a CUDA device array, got {type(a).__name__}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{op}: expected {name} of shape {layout}, got shape {tuple(a.shape)}")
    if floating and a.dtype not in (np.float32, np.float64):
        raise ValueError(f"{op}: expected {name} of dtype float32 or float64, got {a.dtype}")
    return a
