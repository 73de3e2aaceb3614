"""2-d convolution as a differentiable op over the backend's conv kernels.

The CPU kernels (`backend/cpu/conv_kernels.py`) do im2col + one GEMM forward,
and GEMM (dW) + GEMM and col2im (dX) backward; depthwise convolutions use a
direct kernel. This file only connects them to autodiff.
"""

from __future__ import annotations

from ..autograd import Function


class Conv2d(Function):
    """y = conv2d(x, w) + b:  x (N, C, H, W), w (C', C/g, kh, kw), b (C',) -> y (N, C', H', W')

    H' = (H + 2 ph - dh (kh - 1) - 1) // sh + 1, likewise W'.
    """

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups):
        ctx.args = (stride, padding, dilation, groups)
        y, saved = ctx.backend.conv2d_forward(x, w, b, *ctx.args)
        ctx.save_for_backward(x, w, saved)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w, saved = ctx.saved
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        dx, dw, db = ctx.backend.conv2d_backward(g, x, w, saved, *ctx.args, need_dx, need_dw, need_db)
        return dx, dw, db, None, None, None, None
