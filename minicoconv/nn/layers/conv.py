"""Conv2d layer."""

from __future__ import annotations

import math

from ... import creation
from ...geometry import pair
from .. import functional as F
from .. import init
from ..module import Module, Parameter


class Conv2d(Module):
    """2-d convolution (N, C, H, W) -> (N, C', H', W'), as torch.nn.Conv2d.

    weight (C', C/groups, k, k); init as PyTorch: kaiming_uniform(a=sqrt(5)),
    bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True):
        super().__init__()
        check_conv_channels("Conv2d", in_channels, out_channels, groups)
        kh, kw = pair("Conv2d", "kernel_size", kernel_size, 1)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = (kh, kw)
        self.stride = pair("Conv2d", "stride", stride, 1)
        self.padding = pair("Conv2d", "padding", padding, 0)
        self.dilation = pair("Conv2d", "dilation", dilation, 1)
        self.weight = Parameter(creation.zeros(out_channels, in_channels // groups, kh, kw))
        self.bias = Parameter(creation.zeros(out_channels)) if bias else None
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(init.calculate_fans(self.weight)[0])
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


def check_conv_channels(layer: str, in_channels: int, out_channels: int, groups: int) -> None:
    """Refuse channel counts that a grouped convolution cannot split."""
    if min(in_channels, out_channels, groups) < 1:
        raise ValueError(f"{layer}: channels and groups must be >= 1, got in={in_channels}, "
                         f"out={out_channels}, groups={groups}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"{layer}: in_channels ({in_channels}) and out_channels ({out_channels}) must both "
                         f"be divisible by groups ({groups})")
