"""A small CNN for quick demonstrations (32x32 input): seconds per epoch instead of minutes.

    stem:     conv3x3 3->32 + BN + ReLU (static), 2x2 max pool          -> 32 x 16 x 16
    features: three conv3x3 (padding 1), all of type `conv`, each + BN + ReLU + 2x2 max pool:
              32->64, 64->128, 128->256                                  -> 256 x 2 x 2
    head:     2x2 average pool, Linear 256 -> classes

Not from any of the papers: it exists so that a run of a few minutes on two CPU
cores shows a network learning (the README's demo). Its dynamic layers are the
same modules the paper models use.
"""

from __future__ import annotations

from ..nn.layers import AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU, Sequential
from ..nn.module import Module
from .factory import conv_factory, reference_init

WIDTHS = (32, 64, 128, 256)  # stem, then the three dynamic convolutions


class SmallCNN(Module):
    def __init__(self, conv, num_classes: int = 100):
        super().__init__()
        layers = [Conv2d(3, WIDTHS[0], 3, 1, 1, bias=False), BatchNorm2d(WIDTHS[0]), ReLU(), MaxPool2d(2)]
        for cin, cout in zip(WIDTHS, WIDTHS[1:]):
            layers += [conv(cin, cout, 3, 1, 1), BatchNorm2d(cout), ReLU(), MaxPool2d(2)]
        self.features = Sequential(*layers)
        self.pool = AvgPool2d(2)
        self.fc = Linear(WIDTHS[-1], num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def smallcnn(conv: str = "static", experts: int = 4, num_classes: int = 100, **conv_options) -> SmallCNN:
    """SmallCNN with its three 3x3 convs after the stem of type `conv`."""
    return reference_init(SmallCNN(conv_factory(conv, experts, **conv_options), num_classes))
