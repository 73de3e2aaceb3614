"""CondConv (Yang et al. 2019), as used in the CoConv paper's comparisons.

    r = sigmoid(Linear_{C->n}(GAP(x)))                       (N, n)
    y_b = conv(x_b, sum_i r_bi W_i) + sum_i r_bi bias_i

Training and inference are the same computation: one aggregated kernel per
sample (a GEMM over the experts), convolved with one batched GEMM over the
shared im2col (`F.dynamic_conv2d`, chunked over the batch to bound memory).
"""

from __future__ import annotations

from .. import functional as F
from ..layers.linear import Linear
from .base import ExpertConv2d, global_avg_pool


class CondConv2d(ExpertConv2d):
    """CondConv2d(in, out, kernel_size, stride=1, padding=0, groups=1, bias=False, experts=4)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, bias: bool = False, experts: int = 4):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups, bias, experts)
        self.routing = Linear(in_channels, experts)

    def routing_weights(self, x):
        """Per-sample expert weights r, (N, n), each in (0, 1)."""
        return self.routing(global_avg_pool(x)).sigmoid()

    def forward(self, x):
        self.check_input(x)
        r = self.routing_weights(x)
        y = F.dynamic_conv2d(x, self.weight, r, self.stride, self.padding, self.groups)
        if self.bias is not None:
            y = y + (r @ self.bias).reshape(x.shape[0], self.out_channels, 1, 1)
        return y

    def macs(self, inputs, out) -> int:
        return self.conv_macs(out.shape) + self.aggregation_macs(out.shape[0])

    def fuse(self):
        """CondConv already computes one aggregated kernel per sample: its fused form is itself."""
        return self
