"""Batch normalisation as a differentiable op over the backend's fused kernels."""

from __future__ import annotations

from ..autograd import Function


class BatchNorm2d(Function):
    """y = (x - mu) / sqrt(var + eps) * weight + bias, per channel of x (N, C, H, W).

    Training: mu, var are the batch statistics over (N, H, W) (biased var), and
    the running statistics (raw arrays, updated in place) move towards them
    with `momentum`, using the unbiased var as PyTorch does. Eval: mu, var are
    the running statistics and y is an affine map of x.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
        be = ctx.backend
        ctx.training, ctx.eps = training, eps
        if training:
            y, mean, invstd = be.batch_norm_train_forward(x, weight, bias, eps)
            if running_mean is not None:
                n = x.shape[0] * x.shape[2] * x.shape[3]
                be.batch_norm_update_running(running_mean, running_var, mean, invstd, eps, n, momentum)
            ctx.save_for_backward(x, weight, mean, invstd)
        else:
            y = be.batch_norm_eval_forward(x, running_mean, running_var, weight, bias, eps)
            ctx.save_for_backward(x, weight, running_mean, running_var)
        return y

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        need = ctx.needs_input_grad[:3]
        if ctx.training:
            x, weight, mean, invstd = ctx.saved
            dx, dw, db = be.batch_norm_backward(g, x, weight, mean, invstd, *need)
        else:
            x, weight, running_mean, running_var = ctx.saved
            dx, dw, db = be.batch_norm_eval_backward(g, running_var, weight, ctx.eps, x, running_mean, *need)
        return dx, dw, db, None, None, None, None, None
