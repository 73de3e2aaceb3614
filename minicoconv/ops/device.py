"""Moving a tensor between devices (differentiable: the gradient moves back)."""

from __future__ import annotations

from ..autograd import Function


class ToDevice(Function):
    """y = a copied to another backend's memory, through host NumPy memory."""

    @staticmethod
    def forward(ctx, a, target):
        ctx.source = ctx.backend
        return target.asarray(ctx.backend.to_numpy(a))

    @staticmethod
    def backward(ctx, g):
        # g lives on the target device; bring it back to the source device
        import numpy as np

        return ctx.source.asarray(np.asarray(_host(g))), None


def _host(array):
    return array.copy_to_host() if hasattr(array, "copy_to_host") else array
