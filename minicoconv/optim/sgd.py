"""Stochastic gradient descent with PyTorch's update rule.

For each parameter p with gradient g (PyTorch's SGD, dampening 0):
    g = g + weight_decay * p
    buf = g                      (first step)
    buf = momentum * buf + g     (later steps)
    g = g + momentum * buf  if nesterov else  buf
    p = p - lr * g
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..nn.module import Parameter


class SGD:
    """SGD(params, lr, momentum=0, weight_decay=0, nesterov=False).

    `params` is an iterable of parameters or of dicts {"params": [...], **options}
    (parameter groups, as PyTorch).
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
        params = list(params)
        if not params:
            raise ValueError("SGD: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups: list[dict[str, Any]] = []
        for g in groups:
            group = {**defaults, **g, "params": list(g["params"])}
            _check_options(group)
            self.param_groups.append(group)
        self.state: dict[int, Any] = {}  # id(param) -> momentum buffer (backend array)

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient, in place."""
        for group in self.param_groups:
            by_backend: dict[int, list] = {}  # one call per backend: a GPU updates them all in a few launches
            seen: set[int] = set()
            for p in group["params"]:
                if p.grad is not None and id(p) not in seen:  # a parameter listed twice is updated once
                    seen.add(id(p))
                    by_backend.setdefault(id(p._backend), []).append(p)
            for ps in by_backend.values():
                bufs = ps[0]._backend.sgd_update_many(
                    [p.data for p in ps], [p.grad.data for p in ps], [self.state.get(id(p)) for p in ps],
                    group["lr"], group["momentum"], group["weight_decay"], group["nesterov"])
                self.state.update((id(p), b) for p, b in zip(ps, bufs))

    def _params(self) -> list[Parameter]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        """Options per group and momentum buffers by parameter index, as NumPy arrays."""
        params = self._params()
        buffers = {i: p._backend.to_numpy(self.state[id(p)]).copy()
                   for i, p in enumerate(params) if self.state.get(id(p)) is not None}
        groups = [{k: v for k, v in g.items() if k != "params"} | {"n_params": len(g["params"])}
                  for g in self.param_groups]
        return {"param_groups": groups, "momentum_buffers": buffers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`'s output; ValueError if groups, options or buffers do not fit."""
        groups = state["param_groups"]
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups) or \
                [g.get("n_params") for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("SGD.load_state_dict: parameter groups do not match this optimizer's")
        for saved in groups:
            for key in ("lr", "momentum", "weight_decay"):
                value = saved.get(key)
                if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < math.inf:
                    raise ValueError(f"SGD.load_state_dict: {key} must be a number >= 0, got {value!r}")
            if not isinstance(saved.get("nesterov"), bool):
                raise ValueError(f"SGD.load_state_dict: nesterov must be true or false, got {saved.get('nesterov')!r}")
        for group, saved in zip(self.param_groups, groups):
            group.update({k: v for k, v in saved.items() if k not in ("n_params", "params")})
        params = self._params()
        self.state = {}
        for i, buf in state["momentum_buffers"].items():
            p = params[int(i)]
            if tuple(np.shape(buf)) != p.shape:
                raise ValueError(f"SGD.load_state_dict: momentum buffer {i} has shape {np.shape(buf)}, "
                                 f"parameter has {p.shape}")
            self.state[id(p)] = p._backend.asarray(np.array(buf, dtype=p.dtype))


def _check_options(group: dict[str, Any]) -> None:
    if group["lr"] < 0:
        raise ValueError(f"SGD: invalid learning rate {group['lr']} (must be >= 0)")
    if group["momentum"] < 0:
        raise ValueError(f"SGD: invalid momentum {group['momentum']} (must be >= 0)")
    if group["weight_decay"] < 0:
        raise ValueError(f"SGD: invalid weight_decay {group['weight_decay']} (must be >= 0)")
    if group["nesterov"] and group["momentum"] <= 0:
        raise ValueError("SGD: nesterov momentum needs momentum > 0")
