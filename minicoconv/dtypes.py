"""The dtypes a tensor may have (NumPy dtype objects, so they print and compare as NumPy's)."""

from __future__ import annotations

import numpy as np

float32 = np.dtype("float32")
float64 = np.dtype("float64")
int64 = np.dtype("int64")
int32 = np.dtype("int32")
bool_ = np.dtype("bool")

FLOAT_DTYPES = (float32, float64)
SUPPORTED = (float32, float64, int64, int32, bool_)


def resolve(dtype) -> np.dtype:
    """Accept a dtype, NumPy type or name ("float32"); refuse what minicoconv lacks."""
    d = np.dtype(dtype)
    if d not in SUPPORTED:
        names = ", ".join(str(s) for s in SUPPORTED)
        raise TypeError(f"unsupported dtype {d}: minicoconv supports {names}")
    return d


def is_floating(dtype) -> bool:
    return np.dtype(dtype) in FLOAT_DTYPES
