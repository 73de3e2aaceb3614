"""`Module` and `Parameter`: the PyTorch-shaped container of trainable state.

A module's attributes that are `Parameter`s, sub-`Module`s, or registered
buffers (tensors that are state but not trained, like BatchNorm's running
statistics) are recorded in three ordered registries as they are assigned, so
`named_parameters()`, `state_dict()` and `to()` find them in a stable order.
Attributes are ordinary attributes: there is no `__getattr__` indirection.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .. import dtypes
from ..backend import get_backend
from ..tensor import Tensor


class Parameter(Tensor):
    """A tensor that a Module trains: requires_grad=True by default."""

    def __init__(self, data: Any, requires_grad: bool = True):
        if isinstance(data, Tensor):
            Tensor._init(self, data.data, data._backend, requires_grad)
        else:
            super().__init__(data, requires_grad=requires_grad,
                             dtype=getattr(data, "dtype", None) or dtypes.float32)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and models. Subclasses define `forward`."""

    #: the first positional argument of forward must be a Tensor (checked in __call__); a module
    #: whose forward takes something else sets this False
    takes_tensor: bool = True
    #: fewest samples a training-mode forward accepts: 2 for a layer whose batch statistics have
    #: one value per channel per sample (a BatchNorm over pooled features), else 1
    min_training_batch: int = 1

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if isinstance(getattr(type(self), name, None), property):  # e.g. a scalar buffer's float view
            object.__setattr__(self, name, value)
            return
        if isinstance(value, Parameter):
            self._buffers.pop(name, None)
            self._modules.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._parameters.pop(name, None)
            self._buffers.pop(name, None)
            self._modules[name] = value
        elif name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"buffer {name!r} must be a Tensor or None, got {type(value).__name__}")
            self._buffers[name] = value
        else:
            self._parameters.pop(name, None)
            self._modules.pop(name, None)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, tensor: Tensor | None) -> None:
        """Keep `tensor` as non-trained state: saved in state_dict, moved by to()."""
        self._buffers[name] = tensor
        if not isinstance(getattr(type(self), name, None), property):  # a property reads the buffer itself
            object.__setattr__(self, name, tensor)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.takes_tensor and args and not isinstance(args[0], Tensor):
            # one rule for every layer: inputs are Tensors, so that dtype and device are explicit
            # (a NumPy array used to pass some layers and fail deep inside others)
            got = "a NumPy array" if isinstance(args[0], np.ndarray) else f"a {type(args[0]).__name__}"
            raise TypeError(f"{type(self).__name__}: expected a minicoconv Tensor as input, got {got}; "
                            "wrap it with minicoconv.tensor(x)")
        out = self.forward(*args, **kwargs)
        for hook in self.__dict__.get("_forward_hooks", ()):
            hook(self, args, out)
        return out

    def register_forward_hook(self, hook: Callable[[Module, tuple, Any], None]) -> Callable[[], None]:
        """Call hook(module, inputs, output) after every forward; returns a function that removes it."""
        hooks = self.__dict__.setdefault("_forward_hooks", [])
        hooks.append(hook)
        return lambda: hooks.remove(hook)

    # ---- traversal -----------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every descendant, each once, depth first."""
        seen, stack = set(), [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{n}" if name else n, m) for n, m in module._modules.items() if m is not None]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        return (m for _, m in self.named_modules())

    def training_batch_floor(self) -> tuple[int, str | None]:
        """(fewest samples a training batch may hold, the first layer that needs more than 1, or None)."""
        need, who = 1, None
        for name, m in self.named_modules():
            if m.min_training_batch > need:
                need, who = m.min_training_batch, f"{type(m).__name__} ({name or 'the model'})"
        return need, who

    def named_children(self) -> Iterator[tuple[str, Module]]:
        return ((n, m) for n, m in self._modules.items() if m is not None)

    def children(self) -> Iterator[Module]:
        return (m for _, m in self.named_children())

    def _named_tensors(self, kind: str) -> Iterator[tuple[str, Tensor]]:
        seen = set()
        for prefix, module in self.named_modules():
            for name, t in getattr(module, kind).items():
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    yield (f"{prefix}.{name}" if prefix else name), t

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        return self._named_tensors("_parameters")

    def parameters(self) -> Iterator[Parameter]:
        return (p for _, p in self.named_parameters())

    def named_buffers(self) -> Iterator[tuple[str, Tensor]]:
        return self._named_tensors("_buffers")

    def buffers(self) -> Iterator[Tensor]:
        return (b for _, b in self.named_buffers())

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call fn on every module once, children before their parent, in registration order (as PyTorch)."""
        seen: set[int] = set()

        def visit(module: Module) -> None:
            seen.add(id(module))
            for child in module.children():
                if id(child) not in seen:
                    visit(child)
            fn(module)

        visit(self)
        return self

    # ---- modes ---------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    # ---- state ---------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Parameters and buffers by dotted name, as NumPy copies (host memory)."""
        state = OrderedDict()
        for name, t in self.named_parameters():
            state[name] = t.numpy().copy()
        for name, t in self.named_buffers():
            state[name] = t.numpy().copy()
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> tuple[list[str], list[str]]:
        """Copy arrays from `state` into parameters and buffers (keeping their dtype and device).

        With strict=True, any missing, unexpected or mis-shaped key is an error
        that lists all of them. Returns (missing, unexpected).
        """
        own = dict(self.named_parameters())
        own.update(self.named_buffers())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [f"{k}: expected {own[k].shape}, got {tuple(np.shape(state[k]))}"
                      for k in own if k in state and tuple(np.shape(state[k])) != own[k].shape]
        problems = []
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatch(es): " + _first(mismatched, "; "))
        if strict and missing:
            problems.append(f"{len(missing)} missing key(s): " + _first(missing))
        if strict and unexpected:
            problems.append(f"{len(unexpected)} unexpected key(s): " + _first(unexpected))
        if problems:
            raise KeyError(f"load_state_dict({type(self).__name__}): " + " | ".join(problems))
        for k, t in own.items():
            if k in state:
                value = np.asarray(state[k].numpy() if isinstance(state[k], Tensor) else state[k])
                # a copy: the module must never share memory with (and later update) the caller's arrays
                t.data = t._backend.asarray(np.array(value, dtype=t.dtype, order="C", copy=True))
        return missing, unexpected

    def to(self, device: str | None = None, dtype=None) -> Module:
        """Move/convert every parameter and buffer in place (floating dtypes only change).

        Like PyTorch's, `module.to(mc.float64)` is a dtype conversion: a dtype given as
        `device` is taken as `dtype`.
        """
        if device is not None and not isinstance(device, str) and dtype is None:
            device, dtype = None, device
        backend = get_backend(device) if device is not None else None
        dtype = dtypes.resolve(dtype) if dtype is not None else None
        if dtype is not None and not dtypes.is_floating(dtype):
            raise TypeError(f"{type(self).__name__}.to: dtype must be float32 or float64, got {dtype}")
        for t in list(self.parameters()) + list(self.buffers()):
            host = None
            if dtype is not None and dtypes.is_floating(t.dtype) and t.dtype != dtype:
                host = t.numpy().astype(dtype)
            if backend is not None and backend is not t._backend:
                host = t.numpy() if host is None else host
                t._backend = backend
            if host is not None:
                t.data = t._backend.asarray(host)
                t.grad = None
        return self

    def double(self) -> Module:
        return self.to(dtype=dtypes.float64)

    def float(self) -> Module:
        return self.to(dtype=dtypes.float32)

    # ---- printing --------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = list(self.named_children())
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not children:
            return head + ")"
        lines = [head]
        for name, m in children:
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"


def _first(names: list[str], sep: str = ", ", shown: int = 4) -> str:
    """The first `shown` names, and how many more: an error about another model stays a few lines."""
    more = f"{sep}... and {len(names) - shown} more" if len(names) > shown else ""
    return sep.join(names[:shown]) + more
