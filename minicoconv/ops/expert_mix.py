"""Routing weights applied per expert and channel: CoConv's mixing of its stacked experts.

Expert-stacked maps hold G groups of n experts of D channels, channel (g*n + i)*D + d
being expert i's channel g*D + d; routing weights r (N, G, n, D) hold one scalar per
(sample, group, expert, channel), broadcast over H x W.

ExpertWeightedSum:  z (N, G*n*D, H, W), r -> y (N, G*D, H, W)
    y[b, g, d]     = sum_i r[b, g, i, d] * z[b, g, i, d]
    dz[b, g, i, d] = r[b, g, i, d] * dy[b, g, d]
    dr[b, g, i, d] = sum_hw z[b, g, i, d] * dy[b, g, d]

ExpertScale:  x (N, G*D, H, W), r -> xs (N, G*n*D, H, W)
    xs[b, g, i, d] = r[b, g, i, d] * x[b, g, d]
    dx[b, g, d]    = sum_i r[b, g, i, d] * dxs[b, g, i, d]
    dr[b, g, i, d] = sum_hw dxs[b, g, i, d] * x[b, g, d]

Each is one backend call each way (on the CPU one parallel kernel, see
`backend/cpu/expert_kernels.py`), in place of a 6-d broadcast multiply, a sum, and
their generic un-broadcasting backward.
"""

from __future__ import annotations

from ..autograd import Function


class ExpertWeightedSum(Function):
    """y = sum over experts of r * z:  z (N, G*n*D, H, W), r (N, G, n, D) -> (N, G*D, H, W)."""

    @staticmethod
    def forward(ctx, z, r):
        ctx.save_for_backward(z, r)
        return ctx.backend.expert_weighted_sum_forward(z, r)

    @staticmethod
    def backward(ctx, g):
        z, r = ctx.saved
        return ctx.backend.expert_weighted_sum_backward(g, z, r, *ctx.needs_input_grad)


class ExpertScale(Function):
    """One copy of x per expert, scaled by r:  x (N, G*D, H, W), r (N, G, n, D) -> (N, G*n*D, H, W)."""

    @staticmethod
    def forward(ctx, x, r):
        ctx.save_for_backward(x, r)
        return ctx.backend.expert_scale_forward(x, r)

    @staticmethod
    def backward(ctx, g):
        x, r = ctx.saved
        return ctx.backend.expert_scale_backward(g, x, r, *ctx.needs_input_grad)
