"""Tensor constructors, PyTorch-shaped: tensor, zeros, ones, full, arange, randn, rand, *_like."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import dtypes
from .backend import get_backend
from .random import default_generator
from .tensor import Tensor, _shape_arg


def tensor(data: Any, requires_grad: bool = False, dtype=None, device: str = "cpu") -> Tensor:
    """A new tensor holding a copy of `data` (Python floats become float32)."""
    if isinstance(data, Tensor):
        data = data.numpy()  # a view for CPU tensors: copied below
    if isinstance(data, np.ndarray):
        data = data.copy()
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)


def _make(array: np.ndarray, requires_grad: bool, device: str) -> Tensor:
    backend = get_backend(device)
    return Tensor._from_array(backend.asarray(array), backend, requires_grad)


def full(shape, value: float, dtype=dtypes.float32, requires_grad: bool = False, device: str = "cpu") -> Tensor:
    return _make(np.full(_shape_arg((shape,)), value, dtype=dtypes.resolve(dtype)), requires_grad, device)


def zeros(*shape, dtype=dtypes.float32, requires_grad: bool = False, device: str = "cpu") -> Tensor:
    return full(_shape_arg(shape), 0, dtype, requires_grad, device)


def ones(*shape, dtype=dtypes.float32, requires_grad: bool = False, device: str = "cpu") -> Tensor:
    return full(_shape_arg(shape), 1, dtype, requires_grad, device)


def zeros_like(t: Tensor, requires_grad: bool = False) -> Tensor:
    return zeros(t.shape, dtype=t.dtype, requires_grad=requires_grad, device=t.device)


def ones_like(t: Tensor, requires_grad: bool = False) -> Tensor:
    return ones(t.shape, dtype=t.dtype, requires_grad=requires_grad, device=t.device)


def arange(start: float, stop: float | None = None, step: float = 1, dtype=None, device: str = "cpu") -> Tensor:
    """Evenly spaced values in [start, stop), as np.arange (integers give int64)."""
    if stop is None:
        start, stop = 0, start
    values = np.arange(start, stop, step)
    if dtype is None:
        dtype = dtypes.float32 if values.dtype.kind == "f" else dtypes.int64
    return _make(values.astype(dtypes.resolve(dtype)), False, device)


def randn(*shape, dtype=dtypes.float32, requires_grad: bool = False, device: str = "cpu") -> Tensor:
    """Standard normal samples from the global generator (`manual_seed`)."""
    values = default_generator().standard_normal(_shape_arg(shape), dtype=dtypes.resolve(dtype))
    return _make(values, requires_grad, device)


def rand(*shape, dtype=dtypes.float32, requires_grad: bool = False, device: str = "cpu") -> Tensor:
    """Uniform samples in [0, 1) from the global generator."""
    values = default_generator().random(_shape_arg(shape), dtype=dtypes.resolve(dtype))
    return _make(values, requires_grad, device)
