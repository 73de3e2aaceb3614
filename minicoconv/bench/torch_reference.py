"""PyTorch versions of the layers and models, for timing comparisons only.

Imported only when PyTorch is installed and a comparison is asked for. The
architectures are exactly those of DESIGN.md section 3 (`check_same_params`
verifies the parameter counts equal ours); the dynamic convolutions use the
formulations PyTorch code usually uses:

- CondConv / DY-CNN: aggregate one kernel per sample (r @ W_flat), then ONE
  grouped convolution of the batch folded into channels: x (1, N*C, H, W) with
  N*C' kernels and N*g groups.
- CoConv training form: n convolutions and n BatchNorms, y = sum_i r_i * BN_i(conv_i(x)).
  Fused inference (paper eq. 3, `fused=True` in eval mode): the per-sample
  aggregated kernel sum_i (r_i a_i) W_i, as one grouped convolution like CondConv.
- ODConv and DGC: see torch_beyond.py.
Initialisation is PyTorch's default: it does not change the timings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _per_sample_conv(x, kernels, stride, padding, groups):
    """y_b = conv(x_b, kernels_b): x (N, C, H, W), kernels (N, C', C/g, k, k), as one grouped conv."""
    n, c, h, w = x.shape
    c_out = kernels.shape[1]
    y = F.conv2d(x.reshape(1, n * c, h, w), kernels.reshape(n * c_out, *kernels.shape[2:]), None, stride,
                 padding, 1, n * groups)
    return y.reshape(n, c_out, *y.shape[2:])


class _Experts(nn.Module):
    def __init__(self, cin, cout, k, stride, padding, groups, experts):
        super().__init__()
        self.stride, self.padding, self.groups, self.experts = stride, padding, groups, experts
        self.weight = nn.Parameter(torch.empty(experts, cout, cin // groups, k, k))
        nn.init.kaiming_uniform_(self.weight.view(experts * cout, -1, k, k), a=5 ** 0.5)

    def aggregated_conv(self, x, r):
        """conv(x_b, sum_i r_bi W_i) with r (N, n)."""
        kernels = (r @ self.weight.reshape(self.experts, -1)).reshape(x.shape[0], *self.weight.shape[1:])
        return _per_sample_conv(x, kernels, self.stride, self.padding, self.groups)


class TorchCondConv2d(_Experts):
    """r = sigmoid(Linear(GAP(x))), y_b = conv(x_b, sum_i r_bi W_i)."""

    def __init__(self, cin, cout, k, stride=1, padding=0, groups=1, experts=4):
        super().__init__(cin, cout, k, stride, padding, groups, experts)
        self.routing = nn.Linear(cin, experts)

    def forward(self, x):
        r = torch.sigmoid(self.routing(x.mean((2, 3))))
        return self.aggregated_conv(x, r)


class TorchDyConv2d(_Experts):
    """r = softmax(Linear(ReLU(Linear(GAP(x)))) / T), y_b = conv(x_b, sum_i r_bi W_i)."""

    def __init__(self, cin, cout, k, stride=1, padding=0, groups=1, experts=4, reduction=16, temperature=1.0):
        super().__init__(cin, cout, k, stride, padding, groups, experts)
        hidden = max(cin // reduction, 16)
        self.fc1, self.fc2 = nn.Linear(cin, hidden), nn.Linear(hidden, experts)
        self.temperature = temperature

    def forward(self, x):
        r = torch.softmax(self.fc2(F.relu(self.fc1(x.mean((2, 3))))) / self.temperature, dim=1)
        return self.aggregated_conv(x, r)


class TorchCoConvRouting(nn.Module):
    """Multi-scale routing: [A1 expanded, A3] -> 1x1 conv, ReLU -> depthwise 3x3, ReLU -> 1x1 conv -> sigmoid."""

    def __init__(self, cin, experts, width, reduction=16):
        super().__init__()
        hidden = max(cin // reduction, 16)
        self.experts, self.width = experts, width
        self.reduce = nn.Conv2d(2 * cin, hidden, 1, bias=False)
        self.spatial = nn.Conv2d(hidden, hidden, 3, groups=hidden, bias=False)
        self.expand = nn.Conv2d(hidden, experts * width, 1, bias=False)

    def forward(self, x):
        a1 = F.adaptive_avg_pool2d(x, 1).expand(-1, -1, 3, 3)
        a = torch.cat([a1, F.adaptive_avg_pool2d(x, 3)], dim=1)
        h = F.relu(self.spatial(F.relu(self.reduce(a))))
        return torch.sigmoid(self.expand(h)).reshape(x.shape[0], self.experts, self.width)


class TorchCoConv2d(nn.Module):
    """Training: sum_i r_i * BN_i(conv_i(x)) with n convs and n BNs. Eval with `fused`: paper eq. 3."""

    def __init__(self, cin, cout, k, stride=1, padding=0, groups=1, experts=4, fused=True):
        super().__init__()
        self.stride, self.padding, self.groups, self.experts, self.fused = stride, padding, groups, experts, fused
        self.convs = nn.ModuleList(nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=False)
                                   for _ in range(experts))
        self.bns = nn.ModuleList(nn.BatchNorm2d(cout) for _ in range(experts))
        self.routing = TorchCoConvRouting(cin, experts, cout)

    def forward(self, x):
        r = self.routing(x)  # (N, n, C')
        if self.fused and not self.training:
            return self._fused_forward(x, r)
        y = 0
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            y = y + r[:, i, :, None, None] * bn(conv(x))
        return y

    def _fused_forward(self, x, r):
        a = torch.stack([bn.weight / torch.sqrt(bn.running_var + bn.eps) for bn in self.bns])  # (n, C')
        c = torch.stack([bn.bias for bn in self.bns]) - a * torch.stack([bn.running_mean for bn in self.bns])
        w = torch.stack([conv.weight for conv in self.convs])  # (n, C', C/g, k, k)
        kernels = torch.einsum("bnc,nckij->bckij", r * a, w)
        y = _per_sample_conv(x, kernels, self.stride, self.padding, self.groups)
        return y + (r * c).sum(1)[:, :, None, None]


DYNAMIC = {"condconv": TorchCondConv2d, "dycnn": TorchDyConv2d, "coconv": TorchCoConv2d}


def conv_factory(kind="static", experts=4, **options):
    """make(cin, cout, k, stride=1, padding=0, groups=1), as minicoconv.models.conv_factory.

    ODConv and DGC come from torch_beyond.py (`options`: DGC's heads and keep).
    """
    if kind in ("odconv", "dgc"):
        from . import torch_beyond

        return torch_beyond.odconv_factory(experts) if kind == "odconv" else torch_beyond.dgc_factory(**options)
    if kind == "static":
        return lambda cin, cout, k, stride=1, padding=0, groups=1: nn.Conv2d(
            cin, cout, k, stride, padding, groups=groups, bias=False)
    cls = DYNAMIC[kind]
    return lambda cin, cout, k, stride=1, padding=0, groups=1: cls(cin, cout, k, stride, padding, groups,
                                                                   experts=experts)


# ---- models (DESIGN.md section 3) ------------------------------------------------------
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


MODELS = {"alexnet": AlexNet, "resnet18": ResNet18, "mobilenetv2": MobileNetV2}


def build(name: str, conv: str = "static", experts: int = 4, num_classes: int = 100, **options) -> nn.Module:
    return MODELS[name](conv_factory(conv, experts, **options), num_classes)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_same_params(ours: int, model: nn.Module, label: str) -> None:
    """Refuse to compare against a PyTorch model whose parameter count differs from ours."""
    theirs = count_params(model)
    if theirs != ours:
        raise RuntimeError(f"{label}: the PyTorch reference has {theirs:,} parameters, minicoconv {ours:,}: "
                           "the architectures differ, so the timings would not be comparable")
