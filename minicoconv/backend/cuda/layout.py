"""Host-side shape and stride arithmetic for the CUDA kernels (plain Python, no device work).

A *view* of a C-contiguous array is described by (offset, shape, strides) in elements;
the kernels turn a flat output index into a position with `indexing.strided_offset`.
This file computes those descriptions: C strides, broadcast strides, axis lists, the
view that basic indexing (ints, slices, None, Ellipsis) selects, and `coalesce`, which
merges neighbouring axes so the kernels do as few divisions per element as possible.
"""

from __future__ import annotations

import operator

import numpy as np


def c_strides(shape) -> tuple[int, ...]:
    """Strides (in elements) of a C-contiguous array of `shape`."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def size_of(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def broadcast_strides(shape, out_shape) -> tuple[int, ...]:
    """Strides that read a C-contiguous array of `shape` as if broadcast to `out_shape` (0 where stretched)."""
    lead = len(out_shape) - len(shape)
    own = c_strides(shape)
    return tuple(0 if d < lead or shape[d - lead] == 1 else own[d - lead] for d in range(len(out_shape)))


def coalesce(shape, *strides_list):
    """Drop size-1 axes and merge axes that every operand walks contiguously.

    Axes d and d+1 merge when strides[d] == strides[d+1] * shape[d+1] for every operand
    (C order is preserved, so a flat index still enumerates the same elements).
    Returns (shape, [strides, ...]) with at least one axis (kernels get no empty tuples).
    """
    keep = [d for d, n in enumerate(shape) if n != 1]
    out_shape = [shape[d] for d in keep]
    out_strides = [[s[d] for d in keep] for s in strides_list]
    d = len(out_shape) - 2
    while d >= 0:
        if all(s[d] == s[d + 1] * out_shape[d + 1] for s in out_strides):
            out_shape[d] *= out_shape[d + 1]
            for s in out_strides:
                s[d] = s[d + 1]
                del s[d + 1]
            del out_shape[d + 1]
        d -= 1
    if not out_shape:
        return (1,), [(0,) for _ in strides_list]
    return tuple(out_shape), [tuple(s) for s in out_strides]


def normalize_axes(op: str, axis, ndim: int) -> tuple[int, ...]:
    """None -> all axes; an int or a sequence -> sorted non-negative axes (NumPy's errors)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1) or (ndim == 0 and a not in (0, -1)):
            raise np.exceptions.AxisError(f"{op}: axis {a} is out of bounds for array of dimension {ndim}")
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: duplicate value in 'axis': {axis}")
    return tuple(sorted(a for a in out if a < ndim))


def is_basic_index(index: tuple) -> bool:
    """Whether an index tuple holds only ints, slices, None and Ellipsis (no arrays, lists, bools)."""
    return all(item is None or item is Ellipsis or isinstance(item, slice)
               or (isinstance(item, int | np.integer) and not isinstance(item, bool | np.bool_))
               for item in index)


def basic_view(index: tuple, shape: tuple):
    """The view a[index] of a C-contiguous array: (offset, shape, strides). NumPy's IndexErrors."""
    n_real = sum(1 for item in index if item is not None and item is not Ellipsis)
    if n_real > len(shape):
        raise IndexError(f"too many indices for array: array is {len(shape)}-dimensional, "
                         f"but {n_real} were indexed")
    if sum(1 for item in index if item is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    fill = (slice(None),) * (len(shape) - n_real)
    at = next((i for i, item in enumerate(index) if item is Ellipsis), None)
    index = index + fill if at is None else index[:at] + fill + index[at + 1:]
    strides = c_strides(shape)
    offset, out_shape, out_strides, d = 0, [], [], 0
    for item in index:
        if item is None:
            out_shape.append(1)
            out_strides.append(0)
            continue
        n = shape[d]
        if isinstance(item, slice):
            start, stop, step = item.indices(n)
            length = len(range(start, stop, step))
            offset += start * strides[d] if length else 0
            out_shape.append(length)
            out_strides.append(step * strides[d])
        else:
            i = operator.index(item)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for axis {d} with size {n}")
            offset += (i % n) * strides[d]
        d += 1
    return offset, tuple(out_shape), tuple(out_strides)
