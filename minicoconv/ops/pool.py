"""Max, average and adaptive-average 2-d pooling as differentiable ops."""

from __future__ import annotations

from ..autograd import Function


class MaxPool2d(Function):
    """y[n,c,i,j] = max over the window; the gradient goes to the window's (first) argmax."""

    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        y, argmax = ctx.backend.max_pool2d_forward(x, kernel, stride, padding)
        ctx.save_for_backward(argmax)
        ctx.x_shape = x.shape
        return y

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.max_pool2d_backward(g, ctx.saved[0], ctx.x_shape), None, None, None


class AvgPool2d(Function):
    """y[n,c,i,j] = mean over the window, zero padding counted (PyTorch's default)."""

    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        ctx.args = (x.shape, kernel, stride, padding)
        return ctx.backend.avg_pool2d_forward(x, kernel, stride, padding)

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.avg_pool2d_backward(g, *ctx.args), None, None, None


class AdaptiveAvgPool2d(Function):
    """Average over bins: bin j of an axis of length L into o bins is [floor(jL/o), ceil((j+1)L/o))."""

    @staticmethod
    def forward(ctx, x, output_size):
        ctx.x_shape = x.shape
        return ctx.backend.adaptive_avg_pool2d_forward(x, output_size)

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.adaptive_avg_pool2d_backward(g, ctx.x_shape), None
