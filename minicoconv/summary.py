"""Parameters and multiply-accumulates of a model, in training and fused inference form.

MACs are counted per image for the layers that do the arithmetic: convolutions
(static, dynamic and the dynamic layers' routing branches) and linear layers.
A dynamic layer counts its own work: CoConv's training form runs n expert
convolutions (plus the weighted sum); every fused form builds one kernel per
sample from n experts (n * |W| MACs) and runs one convolution. Batch norm,
pooling and activations are not counted (as in the papers' tables).

DGC: its training form (and the original code's inference) convolves every input
channel, the zeroed ones too; its fused form is the sparse one, which convolves only
the kept channels of each sample and head, about `keep` times the MACs. Its saliency
generator (two small matmuls per head) is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .autograd import no_grad
from .creation import zeros
from .nn.dynamic import fuse
from .nn.layers import Conv2d, Linear
from .nn.module import Module


@dataclass
class LayerCount:
    name: str
    kind: str
    out_shape: tuple
    params: int
    macs_train: int
    macs_fused: int


def _own_macs(module: Module, inputs: tuple, out) -> int | None:
    if hasattr(module, "macs"):
        return module.macs(inputs, out)
    if isinstance(module, Conv2d):
        return int(np.prod(out.shape)) * int(np.prod(module.weight.shape[1:]))
    if isinstance(module, Linear):
        return int(np.prod(out.shape)) * module.in_features
    return None


def _trace(model: Module, input_shape: tuple) -> dict[str, tuple[tuple, int]]:
    """Forward one zero image; return {module name: (output shape, MACs)} for counted modules."""
    found, removers = {}, []
    for name, m in model.named_modules():
        def hook(mod, inputs, out, name=name):
            macs = _own_macs(mod, inputs, out)
            if macs is not None:
                found[name] = (tuple(out.shape[1:]), macs)
        removers.append(m.register_forward_hook(hook))
    try:
        with no_grad():
            model(zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        for remove in removers:
            remove()
    return found


def count(model: Module, input_shape: tuple = (3, 32, 32)) -> list[LayerCount]:
    """Per-layer counts for the training form and the fused inference form of `model`."""
    was_training = model.training
    model.eval()
    try:
        train = _trace(model, input_shape)
        fused = _trace(fuse(model), input_shape)
    finally:
        model.train(was_training)
    modules = dict(model.named_modules())
    rows = []
    for name, (shape, macs) in train.items():
        own = sum(p.numel() for p in modules[name]._parameters.values() if p is not None)
        rows.append(LayerCount(name, type(modules[name]).__name__, shape, own, macs, fused.get(name, (shape, 0))[1]))
    return rows


def summary(model: Module, input_shape: tuple = (3, 32, 32), print_fn=print) -> dict[str, int]:
    """Print a per-layer table and totals; return the totals.

    Totals: params (all trainable parameters, BN affine included), macs_train and
    macs_fused (per image).
    """
    rows = count(model, input_shape)
    total = {"params": sum(p.numel() for p in model.parameters()),
             "macs_train": sum(r.macs_train for r in rows), "macs_fused": sum(r.macs_fused for r in rows)}
    width = max([len(r.name) for r in rows] + [5])
    print_fn(f"{'layer':<{width}}  {'type':<18} {'output':<16} {'params':>11} {'MACs train':>14} {'MACs fused':>14}")
    for r in rows:
        print_fn(f"{r.name:<{width}}  {r.kind:<18} {str(r.out_shape):<16} {r.params:>11,} {r.macs_train:>14,} "
                 f"{r.macs_fused:>14,}")
    saving = ""
    if total["macs_fused"] != total["macs_train"] and total["macs_train"]:
        saving = f", {100 * total['macs_fused'] / total['macs_train']:.1f}% of the training form"
    print_fn(f"total: {total['params'] / 1e6:.2f}M parameters, {total['macs_train'] / 1e6:.1f}M MACs (training form), "
             f"{total['macs_fused'] / 1e6:.1f}M MACs (fused inference{saving})")
    return total
