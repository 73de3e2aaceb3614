"""Index math of the kernels, written once and compiled twice.

Each helper is a plain Python function on ints. `compiled(fn)` returns the pair

    host:   numba.njit(fn)               (tested against NumPy on the CPU)
    device: cuda.jit(device=True)(fn)    (called from the kernels)

so the GPU runs exactly the index math the CPU tests check (tests/cuda/test_indexing.py),
and NUMBA_DISABLE_JIT=1 turns both back into plain Python.

Layout: an element (i_0, ..., i_{d-1}) of a view with `shape` and `strides` (in
elements, not bytes) lives at flat position offset + sum_k i_k * strides[k]; a
C-contiguous array has strides[k] = shape[k+1] * ... * shape[d-1]. Transposes permute
the strides, broadcasting sets a stretched axis's stride to 0.
"""

from __future__ import annotations

from typing import NamedTuple

from numba import cuda, njit


class Compiled(NamedTuple):
    host: object
    device: object


def compiled(fn) -> Compiled:
    return Compiled(njit(fn), cuda.jit(device=True)(fn))


def _strided_offset(i, shape, strides):
    """Flat position of the i-th element (C order) of a view with `shape` and `strides`."""
    offset = 0
    for d in range(len(shape) - 1, -1, -1):
        n = shape[d]
        offset += (i % n) * strides[d]
        i //= n
    return offset


def _windows_containing(r, pad, kernel, stride, n_out):
    """Pooling windows [o*stride - pad, o*stride - pad + kernel) that contain position r:
    the outputs o in [lo, hi) (lo <= hi), clipped to [0, n_out)."""
    lo = max(0, (r + pad - kernel + stride) // stride)   # ceil((r + pad - kernel + 1) / stride)
    hi = min(n_out, (r + pad) // stride + 1)
    return lo, max(lo, hi)


def _tap_output(r, pad, tap, dilation, stride, n_out):
    """The output o whose kernel tap `tap` reads input position r (o*stride - pad + tap*dilation == r),
    or -1 when there is none."""
    t = r + pad - tap * dilation
    if t < 0 or t % stride != 0 or t // stride >= n_out:
        return -1
    return t // stride


def _adaptive_bin(i, length, n_bins):
    """Adaptive pooling bin i of an axis of `length` into `n_bins`: [floor(i*L/o), ceil((i+1)*L/o))."""
    return (i * length) // n_bins, ((i + 1) * length + n_bins - 1) // n_bins


def _bins_containing(r, length, n_bins):
    """The adaptive bins [lo, hi) that contain position r (inverse of `_adaptive_bin`)."""
    lo = (r * n_bins) // length
    hi = ((r + 1) * n_bins - 1) // length + 1
    return lo, min(hi, n_bins)


strided_offset = compiled(_strided_offset)
windows_containing = compiled(_windows_containing)
tap_output = compiled(_tap_output)
adaptive_bin = compiled(_adaptive_bin)
bins_containing = compiled(_bins_containing)
