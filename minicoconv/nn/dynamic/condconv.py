"""CondConv (Yang et al. 2019), as used in the CoConv paper's comparisons.

    r = sigmoid(Linear_{C->n}(GAP(x)))                       (N, n)
    y_b = conv(x_b, sum_i r_bi W_i) + sum_i r_bi bias_i

Training and inference are the same computation: one aggregated kernel per
sample (a GEMM over the experts), convolved with one batched GEMM over the
shared im2col (`F.dynamic_conv2d`, chunked over the batch to bound memory).
"""

from __future__ import annotations

from ..layers.linear import Linear
from .base import MixtureConv2d, global_avg_pool


class CondConv2d(MixtureConv2d):
    """CondConv2d(in, out, kernel_size, stride=1, padding=0, groups=1, bias=False, experts=4)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, bias: bool = False, experts: int = 4):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups, bias, experts)
        self.routing = Linear(in_channels, experts)

    routing_activation = "sigmoid"

    def routing_weights(self, x):
        """Per-sample expert weights r, (N, n), each in (0, 1)."""
        return self.routing(global_avg_pool(x)).sigmoid()

