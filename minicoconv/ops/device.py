"""Moving a tensor between devices (differentiable: the gradient moves back)."""

from __future__ import annotations

from ..autograd import Function


class ToDevice(Function):
    """y = a copied to another backend's memory, through host NumPy memory."""

    @staticmethod
    def forward(ctx, a, target):
        ctx.out_backend = target
        return target.asarray(ctx.backend.to_numpy(a))

    @staticmethod
    def backward(ctx, g):
        # g lives on the target device; bring it back to the source device
        return ctx.backend.asarray(ctx.out_backend.to_numpy(g)), None
