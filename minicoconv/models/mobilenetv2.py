"""MobileNetV2 for CIFAR (32x32 input).

    stem:   conv3x3 3->32 stride 1 + BN + ReLU
    blocks: inverted residuals, config (expansion, out, blocks, stride) below; in each
            1x1 expand + BN + ReLU, 3x3 depthwise (the dynamic one) + BN + ReLU,
            1x1 project + BN; residual when stride 1 (1x1 conv + BN shortcut when the
            channel count changes)
    head:   conv1x1 320->1280 + BN + ReLU, 4x4 average pool, Linear 1280->classes
"""

from __future__ import annotations

from ..nn.layers import AvgPool2d, BatchNorm2d, Conv2d, Linear, Sequential
from ..nn.module import Module
from .factory import ConvFactory, conv_factory, reference_init

CONFIG = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
          (6, 320, 1, 1))


class InvertedResidual(Module):
    def __init__(self, cin: int, cout: int, expansion: int, stride: int, conv: ConvFactory):
        super().__init__()
        hidden = expansion * cin
        self.stride = stride
        self.expand = Conv2d(cin, hidden, 1, bias=False)
        self.bn1 = BatchNorm2d(hidden)
        self.depthwise = conv(hidden, hidden, 3, stride, 1, groups=hidden)
        self.bn2 = BatchNorm2d(hidden)
        self.project = Conv2d(hidden, cout, 1, bias=False)
        self.bn3 = BatchNorm2d(cout)
        if stride == 1 and cin != cout:
            self.shortcut = Sequential(Conv2d(cin, cout, 1, bias=False), BatchNorm2d(cout))
        else:
            self.shortcut = None

    def forward(self, x):
        out = self.bn1(self.expand(x)).relu()
        out = self.bn2(self.depthwise(out)).relu()
        out = self.bn3(self.project(out))
        if self.stride != 1:
            return out
        return out + (x if self.shortcut is None else self.shortcut(x))


class MobileNetV2(Module):
    def __init__(self, conv: ConvFactory, num_classes: int = 100):
        super().__init__()
        self.conv1 = Conv2d(3, 32, 3, 1, 1, bias=False)
        self.bn1 = BatchNorm2d(32)
        blocks, cin = [], 32
        for expansion, cout, n, stride in CONFIG:
            for i in range(n):
                blocks.append(InvertedResidual(cin, cout, expansion, stride if i == 0 else 1, conv))
                cin = cout
        self.layers = Sequential(*blocks)
        self.conv2 = Conv2d(320, 1280, 1, bias=False)
        self.bn2 = BatchNorm2d(1280)
        self.pool = AvgPool2d(4)
        self.fc = Linear(1280, num_classes)

    def forward(self, x):
        out = self.bn1(self.conv1(x)).relu()
        out = self.layers(out)
        out = self.bn2(self.conv2(out)).relu()
        return self.fc(self.pool(out).flatten(1))


def mobilenetv2(conv: str = "static", experts: int = 4, num_classes: int = 100, **conv_options) -> MobileNetV2:
    """MobileNetV2-CIFAR with every 3x3 depthwise conv of type `conv`."""
    return reference_init(MobileNetV2(conv_factory(conv, experts, **conv_options), num_classes))
