"""CoConv, context-aware convolution (Nguyen et al. 2021): training form.

Routing (multi-scale, default; all convolutions bias-free), s = max(C // reduction, 16):
    A1 = AdaptiveAvgPool(x, 1), A3 = AdaptiveAvgPool(x, 3)
    h = ReLU(conv1x1_{2C->s}([expand(A1, 3x3), A3]))          (N, s, 3, 3)
    h = ReLU(depthwise conv3x3_{s->s}(h))  (no padding)        (N, s, 1, 1)
    r = sigmoid(conv1x1_{s->n*C'}(h))                          (N, n, C')
    (softmax variant: softmax over the expert axis of 16 * logits)
Single-scale variant: only A1 (C channels), and the depthwise conv is 1x1.

Training output (attention on output channels, default):
    y = sum_i r_i * BN_i(conv(x, W_i))
computed as ONE convolution with the n experts stacked as n*C' output channels
(one im2col, one GEMM), ONE BatchNorm over the n*C' channels (n BNs over C'
channels are exactly that), then a weighted sum over the expert axis
(F.expert_weighted_sum, one kernel each way).
Input-channel attention (paper Table 5): r_i has C entries and scales the
input channels of W_i; x is replicated per expert and scaled (F.expert_scale),
and convolved as one grouped convolution with n*groups groups.

Stacked channel order. A grouped convolution sends output channel block k to
input group k, so with groups g the stacked experts are ordered (g, n, C'/g):
stacked channel grp*(n*C'/g) + i*(C'/g) + j is expert i's output channel
grp*(C'/g) + j. For groups = 1 this is simply expert-major (i, C'). The
expert BatchNorm `bn` uses the same order; `expert_affine()` returns it per expert.
"""

from __future__ import annotations

import numpy as np

from ... import functions
from .. import functional as F
from ..layers.conv import Conv2d
from ..layers.norm import BatchNorm2d
from ..module import Module
from .base import ExpertConv2d


class CoConvRouting(Module):
    """The CoConv routing branch: x (N, C, H, W) -> r (N, n, width)."""

    def __init__(self, in_channels: int, experts: int, width: int, multiscale: bool = True, reduction: int = 16,
                 activation: str = "sigmoid", temperature: float = 16.0):
        super().__init__()
        if activation not in ("sigmoid", "softmax"):
            raise ValueError(f"CoConv2d: activation must be 'sigmoid' or 'softmax', got {activation!r}")
        if reduction < 1:
            raise ValueError(f"CoConv2d: reduction must be >= 1, got {reduction}")
        hidden = max(in_channels // reduction, 16)
        self.experts, self.width, self.multiscale = experts, width, multiscale
        self.activation, self.temperature = activation, temperature
        self.reduce = Conv2d(2 * in_channels if multiscale else in_channels, hidden, 1, bias=False)
        self.spatial = Conv2d(hidden, hidden, 3 if multiscale else 1, groups=hidden, bias=False)
        self.expand = Conv2d(hidden, experts * width, 1, bias=False)

    def forward(self, x):
        n, c = x.shape[:2]
        a1 = F.adaptive_avg_pool2d(x, 1)
        if self.multiscale:
            a3 = F.adaptive_avg_pool2d(x, 3)
            a1 = functions.cat([a1.expand(n, c, 3, 3), a3], axis=1)
        h = self.spatial(self.reduce(a1).relu()).relu()
        logits = self.expand(h).reshape(n, self.experts, self.width)
        if self.activation == "sigmoid":
            return logits.sigmoid()
        return (logits * self.temperature).softmax(axis=1)

    def extra_repr(self) -> str:
        return f"experts={self.experts}, width={self.width}, multiscale={self.multiscale}, {self.activation}"


class CoConv2d(ExpertConv2d):
    """CoConv2d(in, out, kernel_size, stride=1, padding=0, groups=1, bias=False, experts=4,
    activation="sigmoid", attention="output", multiscale=True, expert_bn=True, reduction=16)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, bias: bool = False, experts: int = 4, activation: str = "sigmoid",
                 attention: str = "output", multiscale: bool = True, expert_bn: bool = True, reduction: int = 16):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups, bias, experts)
        if attention not in ("output", "input"):
            raise ValueError(f"CoConv2d: attention must be 'output' or 'input', got {attention!r}")
        self.attention = attention
        width = out_channels if attention == "output" else in_channels
        self.routing = CoConvRouting(in_channels, experts, width, multiscale, reduction, activation)
        self.bn = BatchNorm2d(experts * out_channels) if expert_bn else None

    # -- stacked layout ----------------------------------------------------------
    def _stacked_groups(self) -> int:
        """Groups g whose (g, n, C'/g) order the stacked channels follow (1 for input attention)."""
        return self.groups if self.attention == "output" else 1

    def stacked_weight(self):
        """Expert kernels as one conv weight (n*C', C/g, k, k) in stacked channel order."""
        n, co, ci, kh, kw = self.weight.shape
        g = self._stacked_groups()
        w = self.weight.reshape(n, g, co // g, ci, kh, kw)
        if g > 1:
            w = w.permute(1, 0, 2, 3, 4, 5)
        return w.reshape(n * co, ci, kh, kw)

    def _to_stacked(self, r):
        """(N, n, C') per-expert values -> (N, g, n, C'/g) matching the stacked channels."""
        n_batch, n, co = r.shape
        g = self._stacked_groups()
        if g == 1:
            return r.reshape(n_batch, 1, n, co)
        return r.reshape(n_batch, n, g, co // g).permute(0, 2, 1, 3)

    def expert_affine(self):
        """Eval-mode BN_i(z) = a_i * z + c_i (conv bias folded into c_i): NumPy (a, c), each (n, C')."""
        n, co = self.experts, self.out_channels
        a = np.ones((n, co), dtype=self.weight.dtype)
        c = np.zeros((n, co), dtype=self.weight.dtype)
        if self.bn is not None:
            g = self._stacked_groups()
            order = np.arange(n * co).reshape(n, g, co // g).transpose(1, 0, 2).reshape(-1)
            a_st, c_st = self.bn.affine_params()
            a.reshape(-1)[order] = a_st  # stacked position s holds natural index order[s]
            c.reshape(-1)[order] = c_st
        if self.bias is not None:
            c = c + a * self.bias.numpy()
        return a, c

    # -- forward -----------------------------------------------------------------------
    def routing_weights(self, x):
        """r: (N, n, C') for output attention, (N, n, C) for input attention."""
        return self.routing(x)

    @property
    def routing_activation(self) -> str:
        """"sigmoid" or "softmax": how the gates are normalised (what `minicoconv inspect` reports)."""
        return self.routing.activation

    def forward(self, x):
        self.check_input(x)
        r = self.routing(x)
        n_batch, n = x.shape[0], self.experts
        if self.attention == "output":
            z = F.conv2d(x, self.stacked_weight(), self._stacked_bias(), self.stride, self.padding,
                         groups=self.groups)
            if self.bn is not None:
                z = self.bn(z)
            return F.expert_weighted_sum(z, self._to_stacked(r))  # (N, C', H', W')
        xs = F.expert_scale(x, r.reshape(n_batch, 1, n, x.shape[1]))  # (N, n*C, H, W)
        z = F.conv2d(xs, self.stacked_weight(), self._stacked_bias(), self.stride, self.padding,
                     groups=n * self.groups)
        if self.bn is not None:
            z = self.bn(z)
        return z.reshape(n_batch, n, self.out_channels, *z.shape[2:]).sum(axis=1)

    def _stacked_bias(self):
        if self.bias is None:
            return None
        return self._to_stacked(self.bias.reshape(1, self.experts, self.out_channels)).reshape(-1)

    def macs(self, inputs, out) -> int:
        return self.experts * self.conv_macs(out.shape) + self.experts * int(np.prod(out.shape))

    def fuse(self):
        """The exact inference form (paper eq. 3): one aggregated kernel per sample."""
        from .fused import FusedCoConv2d

        return FusedCoConv2d(self)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", attention={self.attention}, expert_bn={self.bn is not None}"
