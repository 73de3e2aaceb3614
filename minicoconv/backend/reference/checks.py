"""Argument checks shared by the reference kernels: the same ValueErrors the CPU backend raises.

Every public function validates before it computes, so a bad shape or dtype fails the
same way on `reference` as on `cpu` (the contract test checks a few of them).
"""

from __future__ import annotations

import numpy as np

from ...dtypes import FLOAT_DTYPES
from ...geometry import pair  # noqa: F401  (the reference kernels import it from here)


def float_array(op: str, name: str, a, ndim: int, layout: str, dtype=None) -> np.ndarray:
    """Require a float32/float64 NumPy array of `ndim` dimensions (and `dtype`, if given)."""
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{op}: expected {name} to be a numpy.ndarray, got {type(a).__name__}")
    if a.ndim != ndim:
        raise ValueError(f"{op}: expected {name} of shape {layout}, got shape {a.shape}")
    if a.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{op}: expected {name} of dtype float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise ValueError(f"{op}: expected {name} of dtype {dtype}, got {a.dtype}")
    return a


def same_shape(op: str, name: str, a: np.ndarray, shape: tuple, dtype) -> np.ndarray:
    """Require `a` to have exactly `shape` and `dtype`."""
    if not isinstance(a, np.ndarray) or tuple(a.shape) != tuple(shape) or a.dtype != dtype:
        raise ValueError(f"{op}: expected {name} of shape {tuple(shape)} and dtype {dtype}, got "
                         f"{getattr(a, 'shape', type(a).__name__)} {getattr(a, 'dtype', '')}")
    return a


def channel_vector(op: str, name: str, v, n_chan: int, dtype, fill=None) -> np.ndarray | None:
    """A (C,) vector of `dtype`; None becomes `fill` broadcast to (C,) (or stays None without one)."""
    if v is None:
        return None if fill is None else np.full(n_chan, fill, dtype=dtype)
    if not isinstance(v, np.ndarray) or v.shape != (n_chan,) or v.dtype != dtype:
        raise ValueError(f"{op}: expected {name} of shape ({n_chan},) and dtype {dtype}, got "
                         f"{getattr(v, 'shape', type(v).__name__)} {getattr(v, 'dtype', '')}")
    return v
