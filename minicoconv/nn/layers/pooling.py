"""Pooling layers."""

from __future__ import annotations

from ...geometry import pair
from .. import functional as F
from ..module import Module


class MaxPool2d(Module):
    """MaxPool2d(kernel_size, stride=kernel_size, padding=0): (N, C, H, W) -> (N, C, H', W')."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = type(self).__name__  # checked here too, so that a bad option fails where it was written
        pair(name, "kernel_size", kernel_size, 1)
        if stride is not None:
            pair(name, "stride", stride, 1)
        pair(name, "padding", padding, 0)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}"


class AvgPool2d(MaxPool2d):
    """AvgPool2d(kernel_size, stride=kernel_size, padding=0): (N, C, H, W) -> (N, C, H', W')."""

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
