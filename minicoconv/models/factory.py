"""Choosing the convolution a model makes dynamic, and the reference initialisation.

`conv_factory(kind, experts, **options)` returns a function
`make(in_ch, out_ch, kernel_size, stride=1, padding=0, groups=1) -> Module` that
every model calls at the positions the papers make dynamic. `kind` is any conv type
in the registry (nn.dynamic.registry: the built-ins and those registered from your
own files, docs/extending.md). The function carries `kind` and
`replaces_shortcuts` (True for DGC, which the DGC paper also uses for ResNet's 1x1
projection shortcuts).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..nn import init
from ..nn.dynamic import CoConv2d, ODConv2d, get_conv_type
from ..nn.layers import BatchNorm2d, Conv2d, Linear
from ..nn.module import Module

ConvFactory = Callable[..., Module]


def conv_factory(kind: str = "static", experts: int = 4, **options: Any) -> ConvFactory:
    """The convolution constructor of the registered conv type `kind` (with `experts` if it takes them)."""
    entry = get_conv_type(kind)
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise ValueError(f"conv type {kind!r} does not take option(s) {', '.join(unknown)} "
                         f"(it takes: {', '.join(entry.options) or 'none'})")
    if entry.experts and (not isinstance(experts, int) or isinstance(experts, bool) or experts < 1):
        raise ValueError(f"experts must be an int >= 1, got {experts!r}")

    def make(cin, cout, kernel_size, stride=1, padding=0, groups=1):
        return entry.make(cin, cout, kernel_size, stride, padding, groups, experts=experts, **options)

    make.kind = kind
    make.replaces_shortcuts = entry.replaces_shortcuts
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
