"""Ops that move elements without arithmetic: reshape, transpose, broadcast_to, getitem,
scatter_add, concatenate, pad.

Everything here is one of three kernels:

    copy:    dst[dst_off + strided_offset(i, shape, dst_strides)]
                 = src[src_off + strided_offset(i, shape, src_strides)]
    gather:  out[i] = src[offsets[i]]
    scatter: out[offsets[i]] += values[...]         (atomic add: indices may repeat)

A transpose is a copy whose source strides are permuted; broadcast_to one whose
source strides are 0 along stretched axes; basic indexing (ints, slices, None, ...)
one whose source view `layout.basic_view` computes on the host; concatenate and pad
copy each input into a view of the output. Reshapes, and basic indexes whose view is
contiguous (`x[2:5]` on the first axis), are zero-copy views of the same memory, as
in NumPy. Other results are new contiguous arrays (NumPy would return strided views).

Advanced indexing (integer arrays, boolean masks, lists) takes the index arrays to
the host and lets NumPy compute the flat source position of every output element:
    offsets = arange(a.size).reshape(a.shape)[index]
so every NumPy rule (broadcast index arrays, mixed slices, masks) holds exactly; the
data never leaves the device, only the index does (for cross-entropy, N targets).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from . import device as dev
from .elementwise import fill
from .indexing import strided_offset
from .layout import basic_view, broadcast_strides, c_strides, coalesce, is_basic_index, normalize_axes, size_of

_offset = strided_offset.device


@cuda.jit
def _copy_kernel(src, src_off, src_strides, dst, dst_off, dst_strides, shape, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        dst[dst_off + _offset(i, shape, dst_strides)] = src[src_off + _offset(i, shape, src_strides)]


@cuda.jit
def _gather_kernel(src, offsets, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = src[offsets[i]]


@cuda.jit
def _scatter_add_kernel(values, shape, v_strides, offsets, out):
    for i in range(cuda.grid(1), offsets.size, cuda.gridsize(1)):
        cuda.atomic.add(out, offsets[i], values[_offset(i, shape, v_strides)])


# ---- strided copies ------------------------------------------------------------------------
def gather_view(src, offset: int, shape: tuple, strides: tuple, dtype=None):
    """A new contiguous array holding the view (offset, shape, strides) of `src`."""
    out = dev.empty(shape, src.dtype if dtype is None else dtype)
    n = out.size
    shape, (src_strides, dst_strides) = coalesce(shape, strides, c_strides(shape))
    dev.launch(_copy_kernel, n, dev.flat(src), offset, src_strides, dev.flat(out), 0, dst_strides, shape, n)
    return out


def scatter_view(values, out, offset: int, shape: tuple, strides: tuple) -> None:
    """Write `values`, broadcast to `shape`, into the view (offset, shape, strides) of `out`."""
    n = size_of(shape)
    v_strides = broadcast_strides(tuple(values.shape), shape)
    shape, (v_strides, dst_strides) = coalesce(shape, v_strides, strides)
    dev.launch(_copy_kernel, n, dev.flat(values), 0, v_strides, dev.flat(out), offset, dst_strides, shape, n)


def _is_contiguous_view(shape, strides) -> bool:
    return all(s == c for s, c, n in zip(strides, c_strides(shape), shape) if n != 1)


# ---- public ops ------------------------------------------------------------------------------
def reshape(a, shape):
    """A view with a new shape (-1 infers one axis); the array is contiguous, so never a copy."""
    shape = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
    return dev.contiguous(a).reshape(tuple(int(n) for n in shape))


def transpose(a, axes=None):
    """Axes permuted, y.shape[i] = a.shape[axes[i]]: a strided copy (a view if only size-1 axes move)."""
    axes = tuple(reversed(range(a.ndim))) if axes is None else tuple(int(x) % max(a.ndim, 1) for x in axes)
    if sorted(axes) != list(range(a.ndim)):
        raise ValueError(f"transpose: axes {axes} don't match array of dimension {a.ndim}")
    shape = tuple(a.shape[ax] for ax in axes)
    strides = tuple(c_strides(a.shape)[ax] for ax in axes)
    if _is_contiguous_view(shape, strides):
        return reshape(a, shape)
    return gather_view(a, 0, shape, strides)


def broadcast_to(a, shape):
    """a stretched to `shape` by NumPy's broadcasting rule (a copy; a itself if the shape is unchanged)."""
    shape = tuple(int(n) for n in shape)
    if tuple(np.broadcast_shapes(tuple(a.shape), shape)) != shape:
        raise ValueError(f"broadcast_to: cannot broadcast shape {tuple(a.shape)} to {shape}")
    if tuple(a.shape) == shape:
        return a
    return gather_view(a, 0, shape, broadcast_strides(tuple(a.shape), shape))


def _host_index(index: tuple) -> tuple:
    return tuple(dev.to_host(item) if dev.is_device_array(item) else item for item in index)


def _flat_offsets(shape: tuple, index: tuple) -> np.ndarray:
    """Flat positions in a C-contiguous array of `shape` that a[index] reads (NumPy's rules)."""
    positions = np.arange(size_of(shape), dtype=np.int64).reshape(shape)
    return np.ascontiguousarray(positions[_host_index(index)])


def getitem(a, index):
    """a[index] for ints, slices, None, Ellipsis, integer arrays and boolean masks (NumPy's semantics)."""
    index = index if isinstance(index, tuple) else (index,)
    if is_basic_index(index):
        offset, shape, strides = basic_view(index, tuple(a.shape))
        if size_of(shape) == 0:
            return dev.empty(shape, a.dtype)
        if _is_contiguous_view(shape, strides):
            return dev.flat(a)[offset:offset + size_of(shape)].reshape(shape)
        return gather_view(a, offset, shape, strides)
    offsets = _flat_offsets(tuple(a.shape), index)
    out = dev.empty(offsets.shape, a.dtype)
    dev.launch(_gather_kernel, out.size, dev.flat(a), dev.flat(dev.to_device(offsets)), dev.flat(out))
    return out


def scatter_add(shape, index, values):
    """zeros(shape) with `values` added at `index`; repeated indices accumulate (np.add.at)."""
    shape = tuple(int(n) for n in shape)
    index = index if isinstance(index, tuple) else (index,)
    out = fill(dev.empty(shape, values.dtype), 0)
    if is_basic_index(index):  # a basic index never repeats an element: a plain copy
        offset, view_shape, strides = basic_view(index, shape)
        scatter_view(values, out, offset, view_shape, strides)
        return out
    offsets = _flat_offsets(shape, index)
    if tuple(np.broadcast_shapes(tuple(values.shape), offsets.shape)) != offsets.shape:
        raise ValueError(f"scatter_add: values of shape {tuple(values.shape)} do not broadcast to the "
                         f"indexed shape {offsets.shape}")
    v_shape, (v_strides,) = coalesce(offsets.shape, broadcast_strides(tuple(values.shape), offsets.shape))
    dev.launch(_scatter_add_kernel, offsets.size, dev.flat(values), v_shape, v_strides,
               dev.flat(dev.to_device(offsets)), dev.flat(out))
    return out


def concatenate(arrays, axis=0):
    """The arrays joined along `axis` (NumPy's dtype promotion)."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("concatenate: need at least one array to concatenate")
    first = arrays[0]
    axis = normalize_axes("concatenate", axis, first.ndim)[0]
    for a in arrays[1:]:
        if a.ndim != first.ndim or any(x != y for d, (x, y) in enumerate(zip(a.shape, first.shape)) if d != axis):
            raise ValueError(f"concatenate: shapes {tuple(first.shape)} and {tuple(a.shape)} differ "
                             f"outside axis {axis}")
    out_shape = list(first.shape)
    out_shape[axis] = sum(a.shape[axis] for a in arrays)
    out = dev.empty(out_shape, np.result_type(*[a.dtype for a in arrays]))
    strides, start = c_strides(tuple(out_shape)), 0
    for a in arrays:
        scatter_view(a, out, start * strides[axis], tuple(a.shape), strides)
        start += a.shape[axis]
    return out


def pad(a, pad_width, value=0):
    """a surrounded by `value`: pad_width is ((before, after),) per axis, as np.pad's constant mode."""
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (a.ndim, 2))
    if (widths < 0).any():
        raise ValueError(f"pad: index can't contain negative values, got {pad_width}")
    shape = tuple(int(n + b + e) for n, (b, e) in zip(a.shape, widths))
    out = fill(dev.empty(shape, a.dtype), value)
    strides = c_strides(shape)
    offset = sum(int(b) * s for (b, _), s in zip(widths, strides))
    scatter_view(a, out, offset, tuple(a.shape), strides)
    return out
