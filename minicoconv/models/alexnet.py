"""AlexNet for CIFAR (32x32 input).

    features:   five conv3x3 (padding 1), all dynamic, each + BN + ReLU:
                3->64 stride 2, 64->192, 192->384, 384->256, 256->256;
                2x2 max pool after the 1st, 2nd and 5th  -> 256 x 2 x 2
    classifier: Dropout, Linear 1024->4096, ReLU, Dropout, Linear 4096->4096, ReLU,
                Linear 4096->classes
"""

from __future__ import annotations

from ..nn.layers import BatchNorm2d, Dropout, Linear, MaxPool2d, ReLU, Sequential
from ..nn.module import Module
from .factory import conv_factory, reference_init

# (in, out, stride, max pool after)
FEATURES = ((3, 64, 2, True), (64, 192, 1, True), (192, 384, 1, False), (384, 256, 1, False),
            (256, 256, 1, True))


class AlexNet(Module):
    def __init__(self, conv, num_classes: int = 100):
        super().__init__()
        layers = []
        for cin, cout, stride, pool in FEATURES:
            layers += [conv(cin, cout, 3, stride, 1), BatchNorm2d(cout), ReLU()]
            if pool:
                layers.append(MaxPool2d(2))
        self.features = Sequential(*layers)
        self.classifier = Sequential(Dropout(), Linear(256 * 2 * 2, 4096), ReLU(), Dropout(), Linear(4096, 4096),
                                     ReLU(), Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def alexnet(conv: str = "static", experts: int = 4, num_classes: int = 100, **conv_options) -> AlexNet:
    """AlexNet-CIFAR with all five convs of type `conv`."""
    return reference_init(AlexNet(conv_factory(conv, experts, **conv_options), num_classes))
