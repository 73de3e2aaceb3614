"""What a model is, read off its layers: backbone, conv type, experts and conv options.

`to_torch` and `from_torch` rebuild the same architecture on the other side from this
description, so it reads either side's modules (minicoconv's and interop's PyTorch
classes use the same attribute names). A routing width m = max(C // reduction, 16)
does not say the reduction, so the reduction is the first one that gives every
layer's width (16 when it does): any such value builds the same shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: layer class name (minicoconv's, then PyTorch's) -> conv type
CONV_CLASSES = {"CondConv2d": "condconv", "DyConv2d": "dycnn", "CoConv2d": "coconv", "ODConv2d": "odconv",
                "DGConv2d": "dgc", "TorchCondConv2d": "condconv", "TorchDyConv2d": "dycnn",
                "TorchCoConv2d": "coconv", "TorchODConv2d": "odconv", "TorchDGConv2d": "dgc"}
#: model class names shared by both sides -> minicoconv.models name
MODEL_CLASSES = {"AlexNet": "alexnet", "ResNet18": "resnet18", "MobileNetV2": "mobilenetv2", "SmallCNN": "smallcnn"}


class InteropError(ValueError):
    """A module that cannot be carried to the other side; the message says why."""


@dataclass
class Architecture:
    """Enough to rebuild a model: `models.build(model, conv, experts, num_classes, **options)`.

    `model` is None for a single dynamic layer (then `geometry` holds its
    (in, out, kernel, stride, padding, groups)).
    """

    model: str | None
    conv: str
    experts: int = 4
    num_classes: int = 100
    options: dict[str, Any] = field(default_factory=dict)
    geometry: tuple[int, ...] | None = None


def dynamic_layers(module) -> list:
    """The dynamic convolutions of `module` (itself included), in module order."""
    return [m for m in module.modules() if type(m).__name__ in CONV_CLASSES]


def describe(module) -> Architecture:
    """The Architecture of a CIFAR model or a single dynamic layer, from either side."""
    name = type(module).__name__
    layers = dynamic_layers(module)
    if name in CONV_CLASSES:
        k, s, p = (_square(getattr(module, a), a) for a in ("kernel_size", "stride", "padding"))
        geometry = (module.in_channels, module.out_channels, k, s, p, getattr(module, "groups", 1))
        arch = Architecture(None, CONV_CLASSES[name], geometry=geometry)
    elif name in MODEL_CLASSES:
        head = module.fc if hasattr(module, "fc") else module.classifier[-1]
        conv = CONV_CLASSES[type(layers[0]).__name__] if layers else "static"
        arch = Architecture(MODEL_CLASSES[name], conv, num_classes=head.out_features)
    else:
        raise InteropError(f"cannot convert a {name}: expected AlexNet, ResNet18, MobileNetV2 or SmallCNN "
                           "(minicoconv.models or minicoconv.interop.torch_models) or a single dynamic convolution "
                           f"({', '.join(sorted(set(CONV_CLASSES)))})")
    if layers:
        if len({CONV_CLASSES[type(m).__name__] for m in layers}) > 1:
            raise InteropError(f"{name} mixes conv types; a model is built with one")
        arch.experts, arch.options = _options(arch.conv, layers)
    return arch


def _square(value, what: str) -> int:
    pair = tuple(value) if isinstance(value, tuple | list) else (value, value)
    if pair[0] != pair[1]:
        raise InteropError(f"only square {what} is supported, got {pair}")
    return int(pair[0])


def _options(conv: str, layers: list) -> tuple[int, dict[str, Any]]:
    """(experts, conv options that differ from the defaults) of `layers`, all of type `conv`."""
    first, options = layers[0], {}
    if conv == "dgc":
        heads, keep = first.heads, float(first.keep)
        _same(layers, lambda m: (m.heads, float(m.keep)), "heads and keep")
        return 4, {k: v for k, v in (("heads", heads), ("keep", keep)) if v != {"heads": 4, "keep": 0.5}[k]}
    _same(layers, lambda m: m.experts, "experts")
    if conv in ("condconv", "dycnn", "coconv"):
        _same(layers, _has_bias, "bias")
        if _has_bias(first):
            options["bias"] = True
    if conv == "dycnn":
        options.update(_int_reduction([(m.in_channels, m.fc1.out_features) for m in layers]))
    if conv == "coconv":
        routing = first.routing
        values = {"activation": routing.activation, "attention": first.attention,
                  "multiscale": routing.multiscale, "expert_bn": _has_expert_bn(first)}
        _same(layers, lambda m: (m.routing.activation, m.attention, m.routing.multiscale, _has_expert_bn(m)),
              "activation, attention, multiscale and expert_bn")
        defaults = {"activation": "sigmoid", "attention": "output", "multiscale": True, "expert_bn": True}
        options.update({k: v for k, v in values.items() if v != defaults[k]})
        options.update(_int_reduction([(m.in_channels, m.routing.reduce.out_channels) for m in layers]))
    if conv == "odconv":
        options.update(_odconv_reduction([(m.in_channels, m.fc.out_channels) for m in layers]))
    return first.experts, options


def _has_bias(m) -> bool:
    if type(m).__name__ == "TorchCoConv2d":
        return m.convs[0].bias is not None
    return m.bias is not None


def _has_expert_bn(m) -> bool:
    return (m.bns if type(m).__name__ == "TorchCoConv2d" else m.bn) is not None


def _same(layers: list, value, what: str) -> None:
    if len({value(m) for m in layers}) > 1:
        raise InteropError(f"the dynamic layers differ in {what}; a model is built with one setting")


def _int_reduction(widths: list[tuple[int, int]]) -> dict[str, int]:
    """{'reduction': r} giving every (C, m) with m = max(C // r, 16); {} for the default 16."""
    for r in [16, *range(1, max(c for c, _ in widths) + 1)]:
        if all(max(c // r, 16) == m for c, m in widths):
            return {} if r == 16 else {"reduction": r}
    raise InteropError(f"the routing widths {widths} fit no single reduction")


def _odconv_reduction(widths: list[tuple[int, int]]) -> dict[str, float]:
    """{'reduction': q} giving every (C, A) with A = max(int(C * q), 16); {} for the default 1/16."""
    candidates = sorted({q for c, a in widths for q in (a / c, (a + 0.5) / c) if q <= 1})  # float rounding
    for q in [1 / 16, *candidates]:
        if all(max(int(c * q), 16) == a for c, a in widths):
            return {} if q == 1 / 16 else {"reduction": q}
    raise InteropError(f"the ODConv attention widths {widths} fit no single reduction")
