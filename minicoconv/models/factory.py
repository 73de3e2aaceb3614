"""Choosing the convolution a model makes dynamic, and the reference initialisation.

`conv_factory(kind, experts, **options)` returns a function
`make(in_ch, out_ch, kernel_size, stride=1, padding=0, groups=1) -> Module` that
every model calls at the positions the papers make dynamic. The function carries
`kind` and `replaces_shortcuts` (True for DGC, which the DGC paper also uses for
ResNet's 1x1 projection shortcuts).

DGC ("dgc", options heads=4, keep=0.5) needs `heads` to divide both channel counts
and works on dense convolutions only: a conv whose channels the heads do not
divide stays static (AlexNet's 3-channel first conv), and depthwise positions
(MobileNetV2) are refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..nn import init
from ..nn.dynamic import CoConv2d, CondConv2d, DGConv2d, DyConv2d, ODConv2d
from ..nn.layers import BatchNorm2d, Conv2d, Linear
from ..nn.module import Module

CONV_TYPES = ("static", "condconv", "dycnn", "coconv", "odconv", "dgc")
ConvFactory = Callable[..., Module]


def conv_factory(kind: str = "static", experts: int = 4, **options: Any) -> ConvFactory:
    """The convolution constructor for `kind` in CONV_TYPES (dynamic ones get `experts` and `options`)."""
    classes = {"condconv": CondConv2d, "dycnn": DyConv2d, "coconv": CoConv2d, "odconv": ODConv2d}
    if kind not in CONV_TYPES:
        raise ValueError(f"unknown conv type {kind!r}: expected one of {', '.join(CONV_TYPES)}")
    if kind == "static" and options:
        raise ValueError(f"conv options {sorted(options)} apply only to dynamic convolutions")
    if kind in classes and (not isinstance(experts, int) or experts < 1):
        raise ValueError(f"experts must be an int >= 1, got {experts!r}")

    def static(cin, cout, kernel_size, stride=1, padding=0, groups=1):
        return Conv2d(cin, cout, kernel_size, stride, padding, groups=groups, bias=False)

    def dgc(cin, cout, kernel_size, stride=1, padding=0, groups=1):
        if groups != 1:
            raise ValueError("conv='dgc' applies to dense convolutions; this model's dynamic convolutions are "
                             "grouped/depthwise (use it with resnet18 or alexnet)")
        heads = options.get("heads", 4)
        if cin % heads or cout % heads:
            return static(cin, cout, kernel_size, stride, padding)
        return DGConv2d(cin, cout, kernel_size, stride, padding, **options)

    def dynamic(cin, cout, kernel_size, stride=1, padding=0, groups=1):
        return classes[kind](cin, cout, kernel_size, stride, padding, groups=groups, experts=experts, **options)

    make = {"static": static, "dgc": dgc}.get(kind, dynamic)
    make.kind = kind
    make.replaces_shortcuts = kind == "dgc"
    return make


def reference_init(model: Module) -> Module:
    """Re-initialise as the reference recipe (docs/layers.md, Initialisation).

    Plain convolutions (static convs, CoConv experts and routing convs): kaiming-normal,
    mode fan_out, zero bias. BatchNorm: gamma 1, beta 0. Linear (classifier and routing
    layers): normal(0, 0.001), zero bias. CondConv/DY-CNN expert banks keep PyTorch's
    default conv init (kaiming-uniform, a = sqrt(5)).
    """
    for m in model.modules():
        if isinstance(m, Conv2d):
            init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                init.zeros_(m.bias)
        elif isinstance(m, CoConv2d | ODConv2d):
            n, cout, _, kh, kw = m.weight.shape
            init.normal_(m.weight, 0.0, math.sqrt(2.0 / (cout * kh * kw)))  # kaiming fan_out per expert
            if m.bias is not None:
                init.zeros_(m.bias)
        elif isinstance(m, BatchNorm2d) and m.weight is not None:
            init.ones_(m.weight)
            init.zeros_(m.bias)
        elif isinstance(m, Linear):
            init.normal_(m.weight, 0.0, 0.001)
            if m.bias is not None:
                init.zeros_(m.bias)
    return model
