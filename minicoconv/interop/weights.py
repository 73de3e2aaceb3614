"""State dicts between minicoconv's names and the PyTorch models' names, in NumPy.

Everything maps key for key, except inside CoConv and BatchNorm:
- minicoconv's CoConv2d holds its n experts stacked: `weight` (n, C', C/g, k, k), `bias`
  (n, C') and ONE BatchNorm `bn` over n*C' channels in stacked order (coconv.py: stacked
  channel s holds expert i's channel c, natural index i*C' + c = order[s], with
  order = arange(n*C').reshape(n, g, C'/g).transpose(1, 0, 2).flatten(), g the groups for
  output attention and 1 for input attention). PyTorch's TorchCoConv2d holds n convs
  `convs.i.weight` (C', C/g, k, k), `convs.i.bias` (C',) and n BNs `bns.i.*` over C'.
- PyTorch's BatchNorm2d also keeps `num_batches_tracked` (used only with momentum=None,
  which neither side uses): written as 0, dropped on the way back.
No PyTorch needed here, so `minicoconv export` works without it.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def expert_order(experts: int, channels: int, groups: int) -> np.ndarray:
    """order[s] = natural index (i*C' + c) of stacked channel s (see the module docstring)."""
    return np.arange(experts * channels).reshape(experts, groups, channels // groups).transpose(1, 0, 2).reshape(-1)


def _coconv_layers(model) -> dict[str, object]:
    """{prefix with trailing dot: layer} of every minicoconv CoConv2d in `model`."""
    from ..nn.dynamic import CoConv2d

    return {(name + "." if name else ""): m for name, m in model.named_modules() if isinstance(m, CoConv2d)}


def _batchnorm_prefixes(model) -> list[str]:
    from ..nn.layers import BatchNorm2d

    return [(name + "." if name else "") for name, m in model.named_modules() if isinstance(m, BatchNorm2d)]


def _order(layer) -> np.ndarray:
    groups = layer.groups if layer.attention == "output" else 1
    return expert_order(layer.experts, layer.out_channels, groups)


def setting_keys(model) -> set[str]:
    """State keys of scalar settings kept as buffers (a temperature, DGC's pruned count): PyTorch's
    layers hold them as plain attributes, so they travel as settings (convert.py), not as weights."""
    return {f"{prefix}.{name}" if prefix else name for prefix, m in model.named_modules() for name in m._buffers
            if isinstance(getattr(type(m), name, None), property)}


def torch_state(model) -> OrderedDict[str, np.ndarray]:
    """minicoconv `model`'s state under the PyTorch model's keys (see the module docstring)."""
    ours, coconvs, settings = model.state_dict(), _coconv_layers(model), setting_keys(model)
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for key, value in ours.items():
        if key in settings:
            continue
        prefix = next((p for p in coconvs if key.startswith(p) and not key.startswith(p + "routing.")), None)
        if prefix is None:
            out[key] = value
            continue
        layer, rest = coconvs[prefix], key[len(prefix):]
        if rest in ("weight", "bias"):
            for i in range(layer.experts):
                out[f"{prefix}convs.{i}.{rest}"] = np.ascontiguousarray(value[i])
        else:  # bn.<name>: stacked (n*C',) -> natural order, one slice per expert
            natural = np.empty_like(value)
            natural[_order(layer)] = value
            for i, part in enumerate(natural.reshape(layer.experts, -1)):
                out[f"{prefix}bns.{i}.{rest[len('bn.'):]}"] = part.copy()
    for prefix in _batchnorm_prefixes(model):
        parent = prefix[:-len("bn.")]
        if prefix.endswith("bn.") and parent in coconvs:  # CoConv's stacked expert BN: one per expert there
            for i in range(coconvs[parent].experts):
                out[f"{parent}bns.{i}.num_batches_tracked"] = np.array(0, dtype=np.int64)
        else:
            out[prefix + "num_batches_tracked"] = np.array(0, dtype=np.int64)
    return out


def minicoconv_state(state: dict[str, np.ndarray], model) -> OrderedDict[str, np.ndarray]:
    """A PyTorch-keyed `state` under minicoconv `model`'s keys (the inverse of `torch_state`).

    KeyError names any key of `model` that `state` does not provide.
    """
    coconvs, settings, own = _coconv_layers(model), setting_keys(model), model.state_dict()
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for key in own:
        if key in settings:  # copied afterwards as a setting
            out[key] = own[key]
            continue
        prefix = next((p for p in coconvs if key.startswith(p) and not key.startswith(p + "routing.")), None)
        if prefix is None:
            out[key] = _get(state, key)
            continue
        layer, rest = coconvs[prefix], key[len(prefix):]
        if rest in ("weight", "bias"):
            out[key] = np.stack([_get(state, f"{prefix}convs.{i}.{rest}") for i in range(layer.experts)])
        else:
            natural = np.concatenate([_get(state, f"{prefix}bns.{i}.{rest[len('bn.'):]}")
                                      for i in range(layer.experts)])
            out[key] = natural[_order(layer)]
    return out


def _get(state: dict, key: str) -> np.ndarray:
    if key not in state:
        raise KeyError(f"the PyTorch state has no {key!r}")
    return np.asarray(state[key])
