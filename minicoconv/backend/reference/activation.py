"""ReLU, forward and backward: y = max(a, 0), da = g * [y > 0]."""

from __future__ import annotations

import numpy as np


def relu_forward(a: np.ndarray) -> np.ndarray:
    """max(a, 0), same shape and dtype (NaN stays NaN)."""
    return np.maximum(a, a.dtype.type(0))


def relu_backward(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    """g * [y > 0] for the forward output y: 0 where y <= 0 (even where g is NaN), g elsewhere."""
    return np.where(y > 0, g, g.dtype.type(0)).astype(g.dtype, copy=False)
