"""softmax, log_softmax and the fused softmax cross-entropy loss."""

from __future__ import annotations

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

    Backward (fused): dz = g * (softmax(z) - onehot(t)) / N.
    """

    same_dtype = False

    @staticmethod
    def forward(ctx, logits, targets):
        be = ctx.backend
        n = logits.shape[0]
        logp = be.log_softmax(logits, 1)
        rows = be.asarray(range(n), dtype="int64") if n else targets
        picked = be.getitem(logp, (rows, targets))
        ctx.save_for_backward(logp, rows, targets)
        return be.divide(be.negative(be.sum(picked)), n)

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        logp, rows, targets = ctx.saved
        n = logp.shape[0]
        onehot = be.scatter_add(logp.shape, (rows, targets), be.full((n,), 1, dtype=logp.dtype))
        grad = be.multiply(be.subtract(be.exp(logp), onehot), be.divide(g, n))
        return grad, None
