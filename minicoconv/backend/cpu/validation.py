"""Checks that run before a Numba kernel.

A Numba kernel does no bounds checks: a wrong shape or dtype would read out of bounds
or silently compute garbage. So every driver refuses bad input here first, with a
ValueError that names the op, the argument, what was expected and what came.
"""

from __future__ import annotations

import numpy as np

from ...dtypes import FLOAT_DTYPES


def check_float_array(op: str, name: str, a, ndims: int | tuple[int, ...], layout: str, dtype=None,
                      like: str = "x") -> np.ndarray:
    """Require a float32/float64 NumPy array with `ndims` dimensions (one count or a tuple of
    allowed counts), of `dtype` if given (the dtype of the argument named `like`); return it
    C-contiguous."""
    ndims = (ndims,) if isinstance(ndims, int) else ndims
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{op}: expected {name} to be a numpy.ndarray, got {type(a).__name__}")
    if a.ndim not in ndims:
        raise ValueError(f"{op}: expected {name} of shape {layout}, got shape {a.shape}")
    if a.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{op}: expected {name} of dtype float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise ValueError(f"{op}: expected {name} of dtype {dtype} (like {like}), got {a.dtype}")
    return np.ascontiguousarray(a)
