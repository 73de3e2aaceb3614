"""`to_torch(model)` and `from_torch(module)`: the same network on the other side, weights included.

    tmodel = to_torch(model)          # torch.nn.Module: PyTorch layers, dynamic convs in interop/
    model = from_torch(tmodel)        # back: minicoconv.models, ready for nn.fuse, routing, eval

Both rebuild the architecture from `describe` (backbone, conv type, experts, options),
copy every parameter and buffer (interop/weights.py maps CoConv's stacked experts), and
carry the per-layer settings that are not tensors: BatchNorm eps and momentum, Dropout p,
DY-CNN and ODConv temperatures, DGC's number of pruned channels, training/eval mode.
The outputs then agree in eval and in training mode (dropout masks aside: they come
from each side's own random generator).
"""

from __future__ import annotations

import numpy as np

from .describe import Architecture, InteropError, describe
from .weights import minicoconv_state, torch_state

#: plain attributes copied between modules of the same name on both sides
SETTINGS = ("eps", "momentum", "p", "temperature", "pruned")


def _torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError("minicoconv.interop needs PyTorch: pip install torch (or 'minicoconv[reference]')") from e
    return torch


def to_torch(model):
    """A `torch.nn.Module` computing what minicoconv `model` computes (float32/64 as the model, on the CPU).

    model: a CIFAR model of minicoconv.models or a single dynamic convolution.
    """
    torch = _torch()
    arch = describe(model)
    dtype = next(iter(model.parameters())).dtype
    module = _build_torch(arch).to(torch.float64 if dtype == np.float64 else torch.float32)
    state = torch_state(model)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise InteropError(f"the PyTorch {type(module).__name__} does not take this model's weights: {e}") from e
    _copy_settings(dict(model.named_modules()), _torch_names(module))
    return module.train(model.training)


def from_torch(module):
    """A minicoconv model computing what PyTorch `module` computes (a model or layer of minicoconv.interop)."""
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise InteropError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    arch = describe(module)
    model = _build_ours(arch)
    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    dtype = next(module.parameters()).dtype
    if dtype == torch.float64:
        model.double()
    try:
        ours = minicoconv_state(state, model)
        unused = sorted(set(state) - set(torch_state(model)))
        if unused:
            raise KeyError(f"unexpected keys {', '.join(unused[:5])}")
        model.load_state_dict(ours)
    except (KeyError, ValueError) as e:
        detail = e.args[0] if e.args else str(e)
        raise InteropError(f"the {type(module).__name__} does not match the minicoconv model rebuilt from it "
                           f"({detail})") from e
    _copy_settings(_torch_names(module), dict(model.named_modules()))
    return model.train(module.training)


def _build_torch(arch: Architecture):
    from . import torch_layers, torch_models

    if arch.model is None:
        return torch_layers.conv_factory(arch.conv, arch.experts, **arch.options)(*arch.geometry)
    return torch_models.build(arch.model, arch.conv, arch.experts, arch.num_classes, **arch.options)


def _build_ours(arch: Architecture):
    from .. import models

    if arch.model is None:
        return models.conv_factory(arch.conv, arch.experts, **arch.options)(*arch.geometry)
    return models.build(arch.model, arch.conv, arch.experts, arch.num_classes, **arch.options)


def _torch_names(module) -> dict:
    """PyTorch modules by minicoconv's name: TorchCoConv2d's `bns.i` all stand for our stacked `bn`."""
    names = dict(module.named_modules())
    for name, m in list(names.items()):
        if type(m).__name__ == "TorchCoConv2d" and m.bns is not None:
            names[f"{name}.bn" if name else "bn"] = m.bns
    return names


def _copy_settings(source: dict, target: dict) -> None:
    """Copy SETTINGS from source[name] to target[name] (an nn.ModuleList target: to each member)."""
    for name, src in source.items():
        dst = target.get(name)
        if dst is None:
            continue
        if type(src).__name__ == "ModuleList" and len(src):
            src = src[0]
        for member in (dst if type(dst).__name__ == "ModuleList" else [dst]):
            for attr in SETTINGS:
                if hasattr(src, attr) and hasattr(member, attr):
                    _set(member, attr, getattr(src, attr))


def _set(module, attr: str, value) -> None:
    if attr == "momentum" and value is None:
        raise InteropError("a BatchNorm with momentum=None (a cumulative average) has no minicoconv equivalent")
    setattr(module, attr, value)
