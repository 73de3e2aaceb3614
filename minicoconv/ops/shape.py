"""Ops that move elements around without arithmetic.

reshape, permute, expand (broadcast_to), getitem, concatenate and pad; stack,
transpose, flatten and squeeze are composed from these in tensor.py.
"""

from __future__ import annotations

from ..autograd import Function


class Reshape(Function):
    """y = a viewed with a new shape (same number of elements)."""

    @staticmethod
    def forward(ctx, a, shape):
        ctx.in_shape = a.shape
        return ctx.backend.reshape(a, shape)

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.reshape(g, ctx.in_shape), None


class Permute(Function):
    """y = a with axes reordered: y.shape[i] = a.shape[axes[i]]."""

    @staticmethod
    def forward(ctx, a, axes):
        ctx.inverse = tuple(sorted(range(len(axes)), key=lambda i: axes[i]))
        return ctx.backend.transpose(a, axes)

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.transpose(g, ctx.inverse), None


class Expand(Function):
    """y = a broadcast to `shape`; the engine sums the gradient back."""

    @staticmethod
    def forward(ctx, a, shape):
        return ctx.backend.broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, g):
        return g, None


class GetItem(Function):
    """y = a[index] for ints, slices, None, Ellipsis and integer/boolean arrays.

    Backward scatters g into zeros of a's shape; repeated integer indices
    accumulate.
    """

    @staticmethod
    def forward(ctx, a, index):
        ctx.in_shape, ctx.index = a.shape, index
        return ctx.backend.getitem(a, index)

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.scatter_add(ctx.in_shape, ctx.index, g), None


class Concatenate(Function):
    """y = the inputs joined along `axis` (given as the last positional argument)."""

    @staticmethod
    def forward(ctx, *args):
        *arrays, axis = args
        ctx.axis = axis
        ctx.sizes = [a.shape[axis] for a in arrays]
        return ctx.backend.concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        grads, start = [], 0
        for size, needed in zip(ctx.sizes, ctx.needs_input_grad):
            index = (slice(None),) * ctx.axis + (slice(start, start + size),)
            grads.append(ctx.backend.getitem(g, index) if needed else None)
            start += size
        return (*grads, None)


class Pad(Function):
    """y = a padded with a constant: pad_width is ((before, after),) per axis."""

    @staticmethod
    def forward(ctx, a, pad_width, value):
        ctx.index = tuple(slice(b, b + n) for (b, _), n in zip(pad_width, a.shape))
        return ctx.backend.pad(a, pad_width, value)

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.getitem(g, ctx.index), None, None
