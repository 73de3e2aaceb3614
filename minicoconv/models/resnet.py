"""ResNet18 for CIFAR (32x32 input).

    stem:   conv3x3 3->64 stride 1 + BN + ReLU          (static)
    stages: 2 BasicBlocks each at 64, 128, 256, 512 channels; the first block of
            stages 2-4 has stride 2
    block:  conv3x3 (dynamic) + BN + ReLU, conv3x3 (dynamic) + BN, + shortcut, ReLU;
            projection shortcut (conv1x1 + BN, static; DGC for conv="dgc") where the shape changes
    head:   4x4 average pool, Linear 512 -> classes
"""

from __future__ import annotations

from ..nn.layers import AvgPool2d, BatchNorm2d, Conv2d, Linear, Sequential
from ..nn.module import Module
from .factory import ConvFactory, conv_factory, reference_init

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride of the first block)
BLOCKS_PER_STAGE = 2


class BasicBlock(Module):
    def __init__(self, cin: int, cout: int, stride: int, conv: ConvFactory):
        super().__init__()
        self.conv1 = conv(cin, cout, 3, stride, 1)
        self.bn1 = BatchNorm2d(cout)
        self.conv2 = conv(cout, cout, 3, 1, 1)
        self.bn2 = BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            if conv.replaces_shortcuts:
                project = conv(cin, cout, 1, stride)
            else:
                project = Conv2d(cin, cout, 1, stride, bias=False)
            self.shortcut = Sequential(project, BatchNorm2d(cout))
        else:
            self.shortcut = None

    def forward(self, x):
        out = self.bn1(self.conv1(x)).relu()
        out = self.bn2(self.conv2(out))
        return (out + (x if self.shortcut is None else self.shortcut(x))).relu()


class ResNet18(Module):
    def __init__(self, conv: ConvFactory, num_classes: int = 100):
        super().__init__()
        self.conv1 = Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = BatchNorm2d(64)
        blocks, cin = [], 64
        for cout, stride in STAGES:
            for i in range(BLOCKS_PER_STAGE):
                blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1, conv))
                cin = cout
        self.layers = Sequential(*blocks)
        self.pool = AvgPool2d(4)
        self.fc = Linear(512, num_classes)

    def forward(self, x):
        out = self.bn1(self.conv1(x)).relu()
        out = self.pool(self.layers(out))
        return self.fc(out.flatten(1))


def resnet18(conv: str = "static", experts: int = 4, num_classes: int = 100, **conv_options) -> ResNet18:
    """ResNet18-CIFAR with both 3x3 convs of every block of type `conv`."""
    return reference_init(ResNet18(conv_factory(conv, experts, **conv_options), num_classes))
