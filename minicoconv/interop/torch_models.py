"""The CIFAR models of docs/models-and-recipe.md in PyTorch, with any conv type of torch_layers.py.

Module names equal minicoconv's (`features`, `layers.3.conv1`, `fc`, ...), so a state_dict
maps onto ours key for key, except inside CoConv (see interop/weights.py). Used by the
bench (timing against the same architecture, `check_same_params`) and by `to_torch`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .torch_layers import conv_factory


class AlexNet(nn.Module):
    FEATURES = ((3, 64, 2, True), (64, 192, 1, True), (192, 384, 1, False), (384, 256, 1, False),
                (256, 256, 1, True))

    def __init__(self, conv, num_classes=100):
        super().__init__()
        layers = []
        for cin, cout, stride, pool in self.FEATURES:
            layers += [conv(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(1024, 4096), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, conv):
        super().__init__()
        self.conv1, self.bn1 = conv(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = conv(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            project = (conv(cin, cout, 1, stride) if getattr(conv, "replaces_shortcuts", False)  # DGC
                       else nn.Conv2d(cin, cout, 1, stride, bias=False))
            self.shortcut = nn.Sequential(project, nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class ResNet18(nn.Module):
    def __init__(self, conv, num_classes=100):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64)
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            for i in range(2):
                blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1, conv))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AvgPool2d(4)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        out = self.pool(self.layers(F.relu(self.bn1(self.conv1(x)))))
        return self.fc(out.flatten(1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, expansion, stride, conv):
        super().__init__()
        hidden = expansion * cin
        self.stride = stride
        self.expand, self.bn1 = nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden)
        self.depthwise, self.bn2 = conv(hidden, hidden, 3, stride, 1, groups=hidden), nn.BatchNorm2d(hidden)
        self.project, self.bn3 = nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride == 1 and cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.expand(x)))
        out = F.relu(self.bn2(self.depthwise(out)))
        out = self.bn3(self.project(out))
        if self.stride != 1:
            return out
        return out + (x if self.shortcut is None else self.shortcut(x))


class MobileNetV2(nn.Module):
    CONFIG = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
              (6, 320, 1, 1))

    def __init__(self, conv, num_classes=100):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32)
        blocks, cin = [], 32
        for expansion, cout, n, stride in self.CONFIG:
            for i in range(n):
                blocks.append(InvertedResidual(cin, cout, expansion, stride if i == 0 else 1, conv))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.conv2, self.bn2 = nn.Conv2d(320, 1280, 1, bias=False), nn.BatchNorm2d(1280)
        self.pool = nn.AvgPool2d(4)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.fc(self.pool(out).flatten(1))


class SmallCNN(nn.Module):
    WIDTHS = (32, 64, 128, 256)

    def __init__(self, conv, num_classes=100):
        super().__init__()
        w = self.WIDTHS
        layers = [nn.Conv2d(3, w[0], 3, 1, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(), nn.MaxPool2d(2)]
        for cin, cout in zip(w, w[1:]):
            layers += [conv(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(w[-1], num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


MODELS = {"alexnet": AlexNet, "resnet18": ResNet18, "mobilenetv2": MobileNetV2, "smallcnn": SmallCNN}


def build(name: str, conv: str = "static", experts: int = 4, num_classes: int = 100, **options) -> nn.Module:
    """The PyTorch model `name` with `conv` layers (options as minicoconv.models.build)."""
    return MODELS[name](conv_factory(conv, experts, **options), num_classes)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_same_params(ours: int, model: nn.Module, label: str) -> None:
    """Refuse to compare against a PyTorch model whose parameter count differs from ours."""
    theirs = count_params(model)
    if theirs != ours:
        raise RuntimeError(f"{label}: the PyTorch reference has {theirs:,} parameters, minicoconv {ours:,}: "
                           "the architectures differ, so the timings would not be comparable")
