"""Reductions over any axes: sum and max (mean and var are composed in tensor.py).

`axis` is None (all axes) or a tuple of non-negative ints; `keepdims` as NumPy.
"""

from __future__ import annotations

import numbers

from ..autograd import Function


def normalize_axis(axis, ndim: int, op: str) -> tuple[int, ...]:
    """None -> all axes; int or sequence -> sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dims")
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(out))


def _expand_reduced(be, g, in_shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input."""
    if not keepdims:
        g = be.reshape(g, tuple(1 if i in axes else n for i, n in enumerate(in_shape)))
    return g


class Sum(Function):
    """y = sum of a over `axes`;  da = g broadcast back over those axes"""

    @staticmethod
    def forward(ctx, a, axes, keepdims):
        ctx.in_shape, ctx.axes, ctx.keepdims = a.shape, axes, keepdims
        return ctx.backend.sum(a, axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        g = _expand_reduced(be, g, ctx.in_shape, ctx.axes, ctx.keepdims)
        return be.broadcast_to(g, ctx.in_shape), None, None


class Max(Function):
    """y = max of a over `axes`; the gradient is split evenly among tied maxima."""

    @staticmethod
    def forward(ctx, a, axes, keepdims):
        be = ctx.backend
        y = be.max(a, axis=axes, keepdims=True)
        ctx.save_for_backward(a, y)
        ctx.axes, ctx.keepdims = axes, keepdims
        return y if keepdims else be.reshape(y, tuple(n for i, n in enumerate(a.shape) if i not in axes))

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        a, y = ctx.saved
        mask = be.astype(be.equal(a, y), g.dtype)
        count = be.sum(mask, axis=ctx.axes, keepdims=True)
        g = _expand_reduced(be, g, a.shape, ctx.axes, ctx.keepdims)
        return be.multiply(mask, be.divide(g, count)), None, None
