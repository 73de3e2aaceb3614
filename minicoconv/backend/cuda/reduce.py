"""Reductions over any set of axes: sum, max, argmax (NumPy's `axis`, `keepdims`, dtypes).

The input (C-contiguous) is read as two views: the kept axes pick a row base,

    base(o) = strided_offset(o, kept_shape, kept_strides)       o in [0, n_out)

and the reduced axes walk the row: element r is at base(o) + strided_offset(r, red_shape,
red_strides), r in [0, n_red) in C order of the reduced axes (so for argmax, r is the
NumPy flat index). Each reduction is one `combine((v1, i1), (v2, i2)) -> (v, i)` on
(value, position) pairs: sum adds values; max keeps the larger value, the earlier
position on ties, and a NaN over any number (NumPy). Two kernels share it:

- short rows (n_red < THREADS): one thread per output loops over its row;
- long rows: one *block* per output. Thread t combines r = t, t + T, t + 2T, ...
  (neighbouring threads read neighbouring elements), then the block halves its
  T partial results in shared memory, log2(T) steps, synchronising in between:

      step = T/2, T/4, ..., 1:   part[t] = combine(part[t], part[t + step])   for t < step

`block_sum` is that tree for plain float64 sums; batch norm and the depthwise weight
gradient use it.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import cuda

from . import device as dev
from .elementwise import fill
from .indexing import strided_offset
from .layout import c_strides, coalesce, normalize_axes, size_of

_offset = strided_offset.device
THREADS = dev.THREADS


def _sum_pair(v1, i1, v2, i2):
    return v1 + v2, i1


def _max_pair(v1, i1, v2, i2):
    if v1 != v1 or v2 != v2:  # a NaN is the maximum; the first NaN wins
        if v2 != v2 and (v1 == v1 or i2 < i1):
            return v2, i2
        return v1, i1
    if v2 > v1 or (v2 == v1 and i2 < i1):
        return v2, i2
    return v1, i1


COMBINE = {"sum": _sum_pair, "max": _max_pair}


@cache
def _kernels(kind: str, dtype: np.dtype):
    """(per_thread, per_block) kernels of one reduction, accumulating in `dtype`."""
    t = dtype.type
    combine = cuda.jit(device=True)(COMBINE[kind])

    @cuda.jit
    def per_thread(a, values, positions, n_out, out_shape, out_strides, n_red, red_shape, red_strides):
        for o in range(cuda.grid(1), n_out, cuda.gridsize(1)):
            base = _offset(o, out_shape, out_strides)
            v = t(a[base])
            p = 0
            for r in range(1, n_red):
                v, p = combine(v, p, t(a[base + _offset(r, red_shape, red_strides)]), r)
            values[o] = v
            positions[o] = p

    @cuda.jit
    def per_block(a, values, positions, n_out, out_shape, out_strides, n_red, red_shape, red_strides):
        part_v = cuda.shared.array(THREADS, t)
        part_p = cuda.shared.array(THREADS, np.int64)
        tid = cuda.threadIdx.x
        n_live = min(n_red, THREADS)
        for o in range(cuda.blockIdx.x, n_out, cuda.gridDim.x):
            base = _offset(o, out_shape, out_strides)
            if tid < n_red:
                v = t(a[base + _offset(tid, red_shape, red_strides)])
                p = tid
                for r in range(tid + THREADS, n_red, THREADS):
                    v, p = combine(v, p, t(a[base + _offset(r, red_shape, red_strides)]), r)
                part_v[tid] = v
                part_p[tid] = p
            cuda.syncthreads()
            step = THREADS // 2
            while step > 0:
                if tid < step and tid + step < n_live:
                    v, p = combine(part_v[tid], part_p[tid], part_v[tid + step], part_p[tid + step])
                    part_v[tid] = v
                    part_p[tid] = p
                cuda.syncthreads()
                step //= 2
            if tid == 0:
                values[o] = part_v[0]
                positions[o] = part_p[0]
            cuda.syncthreads()  # part_v is reused by the next output

    return per_thread, per_block


@cuda.jit(device=True)
def block_sum(partial, value):
    """Sum of `value` over the threads of a block; every thread calls it and gets the total.

    partial: a shared float64 array of THREADS entries (reused after the call).
    """
    tid = cuda.threadIdx.x
    partial[tid] = value
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if tid < step:
            partial[tid] += partial[tid + step]
        cuda.syncthreads()
        step //= 2
    total = partial[0]
    cuda.syncthreads()
    return total


def _reduce(kind: str, op: str, a, axis, keepdims: bool, dtype, want_positions: bool):
    """Run one reduction; returns (values, positions or None), shaped by axis/keepdims."""
    axes = normalize_axes(op, axis, a.ndim)
    shape, strides = tuple(a.shape), c_strides(tuple(a.shape))
    kept = [d for d in range(a.ndim) if d not in axes]
    out_shape = tuple(1 if d in axes else n for d, n in enumerate(shape)) if keepdims else tuple(shape[d] for d in kept)
    values = dev.empty(out_shape, dtype)
    positions = dev.empty(out_shape, np.int64) if want_positions else None
    n_out, n_red = size_of(out_shape), size_of(shape[d] for d in axes)
    if n_out == 0:
        return values, positions
    if n_red == 0:
        if kind == "max":
            raise ValueError(f"{op}: zero-size array to reduction operation maximum which has no identity")
        return fill(values, 0), positions
    out_view = coalesce([shape[d] for d in kept], [strides[d] for d in kept])
    red_view = coalesce([shape[d] for d in axes], [strides[d] for d in axes])
    per_thread, per_block = _kernels(kind, np.dtype(dtype))
    args = (dev.flat(a), dev.flat(values), dev.flat(positions) if want_positions else dev.empty((n_out,), np.int64),
            n_out, out_view[0], out_view[1][0], n_red, red_view[0], red_view[1][0])
    if n_red < THREADS:
        dev.launch(per_thread, n_out, *args)
    else:
        dev.launch(per_block, n_out, *args, items_per_block=1)
    return values, positions


def reduce_sum(a, axis=None, keepdims=False):
    """np.sum: bool and int32 sum to int64, floats keep their dtype."""
    dtype = np.sum(np.empty(0, dtype=a.dtype)).dtype
    return _reduce("sum", "sum", a, axis, keepdims, dtype, False)[0]


def reduce_max(a, axis=None, keepdims=False):
    """np.max (NaN propagates); ValueError on an empty reduction."""
    return _reduce("max", "max", a, axis, keepdims, a.dtype, False)[0]


def argmax(a, axis=None, keepdims=False):
    """np.argmax: int64 position of the first maximum (flat index when axis is None)."""
    if axis is not None and not isinstance(axis, int | np.integer):
        raise TypeError(f"argmax: axis must be an int or None, got {axis!r}")
    return _reduce("max", "argmax", a, axis, keepdims, a.dtype, True)[1]
