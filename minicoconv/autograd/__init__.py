"""Reverse-mode automatic differentiation: Function, the engine, grad modes."""

from .engine import backward, topological_order, unbroadcast
from .function import Context, Function
from .grad_mode import enable_grad, is_grad_enabled, no_grad

__all__ = [
    "Context", "Function", "backward", "enable_grad", "is_grad_enabled", "no_grad",
    "topological_order", "unbroadcast",
]
