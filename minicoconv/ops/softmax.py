"""softmax, log_softmax and the fused softmax cross-entropy loss."""

from __future__ import annotations

from functools import cache

import numpy as np

from ..autograd import Function


class Softmax(Function):
    """y = exp(a) / sum(exp(a)) along `axis`;  da = y * (g - sum(g * y))"""

    @staticmethod
    def forward(ctx, a, axis):
        y = ctx.backend.softmax(a, axis)
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        (y,) = ctx.saved
        dot = be.sum(be.multiply(g, y), axis=ctx.axis, keepdims=True)
        return be.multiply(y, be.subtract(g, dot)), None


class LogSoftmax(Function):
    """y = a - logsumexp(a) along `axis`;  da = g - exp(y) * sum(g)"""

    @staticmethod
    def forward(ctx, a, axis):
        y = ctx.backend.log_softmax(a, axis)
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        (y,) = ctx.saved
        total = be.sum(g, axis=ctx.axis, keepdims=True)
        return be.subtract(g, be.multiply(be.exp(y), total)), None


class CrossEntropy(Function):
    """loss = mean_i( logsumexp(z_i) - z_i[t_i] ) for logits z (N, C), targets t (N,).

    The target entries are picked with the mask onehot[i, c] = [t_i == c], one broadcast
    compare against the class ids 0..C-1, rather than by indexing z with t: indexing with
    an array of positions made a GPU backend bring the targets back to the host (twice a
    step); the compare needs nothing but elementwise kernels on any backend.
    Backward (fused): dz = g * (softmax(z) - onehot(t)) / N.
    """

    same_dtype = False

    @staticmethod
    def forward(ctx, logits, targets):
        be = ctx.backend
        n, n_classes = logits.shape
        logp = be.log_softmax(logits, 1)
        onehot = be.equal(be.reshape(targets, (n, 1)), _class_ids(be, n_classes))  # (N, C) bool
        picked = be.where(onehot, logp, 0)  # where, not a product: -inf * 0 would be NaN
        ctx.save_for_backward(logp, onehot)
        return be.divide(be.negative(be.sum(picked)), n)

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        logp, onehot = ctx.saved
        n = logp.shape[0]
        grad = be.multiply(be.subtract(be.exp(logp), be.astype(onehot, logp.dtype)), be.divide(g, n))
        return grad, None


@cache
def _class_ids(backend, n_classes: int):
    """0..C-1 as int64 on `backend`: uploaded once per backend and C, not once per step."""
    return backend.asarray(np.arange(n_classes, dtype=np.int64))
