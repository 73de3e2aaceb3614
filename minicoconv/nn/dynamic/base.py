"""What the dynamic convolutions share: a bank of n expert kernels and conv geometry."""

from __future__ import annotations

import math

import numpy as np

from ... import creation
from ...geometry import pair
from .. import functional as F
from .. import init
from ..layers.conv import check_conv_channels
from ..module import Module, Parameter


class ExpertConv2d(Module):
    """Base of CondConv2d, DyConv2d, CoConv2d (and later ODConv2d).

    weight: (n, C', C/g, k, k), one kernel per expert; bias: (n, C') or None.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, bias: bool = False, experts: int = 4):
        super().__init__()
        name = type(self).__name__
        check_conv_channels(name, in_channels, out_channels, groups)
        if not isinstance(experts, int) or experts < 1:
            raise ValueError(f"{name}: experts must be an int >= 1, got {experts!r}")
        k = pair(name, "kernel_size", kernel_size, 1)
        self.in_channels, self.out_channels, self.groups, self.experts = in_channels, out_channels, groups, experts
        self.kernel_size = k
        self.stride = pair(name, "stride", stride, 1)
        self.padding = pair(name, "padding", padding, 0)
        self.weight = Parameter(creation.zeros(experts, out_channels, in_channels // groups, *k))
        self.bias = Parameter(creation.zeros(experts, out_channels)) if bias else None
        self.reset_expert_parameters()

    def reset_expert_parameters(self) -> None:
        """PyTorch's default conv init for each expert: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

        (kaiming_uniform with a = sqrt(5) gives exactly this bound.)
        """
        fan_in = self.weight.shape[2] * self.weight.shape[3] * self.weight.shape[4]
        bound = 1 / math.sqrt(fan_in)
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def check_input(self, x) -> None:
        """Refuse an input the layer cannot take, naming the layer (rather than an op deep inside it)."""
        check_dynamic_input(type(self).__name__, x, self.in_channels)

    def conv_macs(self, out_shape: tuple) -> int:
        """Multiply-accumulates of one k x k convolution producing `out_shape` (N, C', H', W')."""
        fan_in = self.weight.shape[2] * self.weight.shape[3] * self.weight.shape[4]
        return int(np.prod(out_shape)) * fan_in

    def aggregation_macs(self, batch: int) -> int:
        """Multiply-accumulates of building one kernel per sample from n experts."""
        return batch * int(np.prod(self.weight.shape))

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}, experts={self.experts}")
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + (", bias=True" if self.bias is not None else "")


def check_dynamic_input(name: str, x, in_channels: int) -> None:
    """ValueError unless x is (N, in_channels, H, W) with N, H, W >= 1.

    An empty batch is refused: routing and per-sample kernels are defined per image, and
    with N = 0 the aggregation GEMMs fail inside NumPy with a message about internals.
    """
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{name}: expected input of shape (N, {in_channels}, H, W), got {x.shape}")
    if 0 in x.shape:
        raise ValueError(f"{name}: expected a non-empty input (N, H, W >= 1), got shape {x.shape}")


def global_avg_pool(x):
    """(N, C, H, W) -> (N, C): the mean over each channel's map."""
    return F.adaptive_avg_pool2d(x, 1).reshape(x.shape[0], x.shape[1])


class MixtureConv2d(ExpertConv2d):
    """CondConv and DY-CNN: y_b = conv(x_b, sum_i r_bi W_i) + sum_i r_bi bias_i.

    Subclasses define `routing_weights(x) -> r (N, n)`. Training and inference are the
    same computation (one aggregated kernel per sample), so the fused form is the layer.
    """

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
        return self
