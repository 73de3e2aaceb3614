"""Choosing the convolution a model makes dynamic, and the reference initialisation.

`conv_factory(kind, experts, **options)` returns a function
`make(in_ch, out_ch, kernel_size, stride=1, padding=0, groups=1) -> Module` that
every model calls at the positions the papers make dynamic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..nn import init
from ..nn.dynamic import CoConv2d, CondConv2d, DyConv2d
from ..nn.layers import BatchNorm2d, Conv2d, Linear
from ..nn.module import Module

CONV_TYPES = ("static", "condconv", "dycnn", "coconv")
ConvFactory = Callable[..., Module]


def conv_factory(kind: str = "static", experts: int = 4, **options: Any) -> ConvFactory:
    """The convolution constructor for `kind` in CONV_TYPES (dynamic ones get `experts` and `options`)."""
    classes = {"condconv": CondConv2d, "dycnn": DyConv2d, "coconv": CoConv2d}
    if kind == "static":
        if options:
            raise ValueError(f"conv options {sorted(options)} apply only to dynamic convolutions")

        def make(cin, cout, kernel_size, stride=1, padding=0, groups=1):
            return Conv2d(cin, cout, kernel_size, stride, padding, groups=groups, bias=False)
        return make
    if kind not in classes:
        raise ValueError(f"unknown conv type {kind!r}: expected one of {', '.join(CONV_TYPES)}")
    if not isinstance(experts, int) or experts < 1:
        raise ValueError(f"experts must be an int >= 1, got {experts!r}")
    cls = classes[kind]

    def make(cin, cout, kernel_size, stride=1, padding=0, groups=1):
        return cls(cin, cout, kernel_size, stride, padding, groups=groups, experts=experts, **options)
    return make


def reference_init(model: Module) -> Module:
    """Re-initialise as the reference recipe (DESIGN.md section 2, Initialisation).

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
        elif isinstance(m, CoConv2d):
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
