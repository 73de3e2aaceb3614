"""ReLU forward and backward as single kernels (one launch each).

    forward:   y = max(a, 0)            (NaN stays NaN, as np.maximum)
    backward:  da = g * [y > 0]         (0 where y <= 0, even where g is NaN, as PyTorch)

The generic forms on `Backend` are a `maximum` (one launch) and, for the backward,
`greater` + `zeros` + `where`: three launches and two temporaries for every ReLU of a
step. One thread per element, grid-stride, on flat views of same-shape arrays.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from . import device as dev
from .elementwise import binary, where

_FLOATS = (np.float32, np.float64)


@cuda.jit
def _relu_kernel(a, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        v = a[i]
        out[i] = v if (v > 0 or v != v) else 0


@cuda.jit
def _relu_backward_kernel(g, y, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = g[i] if y[i] > 0 else 0


def relu_forward(a):
    """max(a, 0), same shape and dtype."""
    dev.check_device_array("relu", "a", a, floating=False)
    if a.dtype not in _FLOATS:  # integer ReLU: the generic form (no test of NaN to make)
        return binary("maximum", a, 0)
    out = dev.empty(a.shape, a.dtype)
    dev.launch(_relu_kernel, a.size, dev.flat(a), dev.flat(out))
    return out


def relu_backward(g, y):
    """g * [y > 0] for the forward output y: same shape and dtype as g."""
    dev.check_device_array("relu_backward", "g", g, floating=False)
    dev.check_device_array("relu_backward", "y", y, floating=False)
    if tuple(g.shape) != tuple(y.shape) or g.dtype != y.dtype or g.dtype not in _FLOATS:
        return where(binary("greater", y, 0), g, g.dtype.type(0))  # broadcasting or mixed dtypes: generic
    out = dev.empty(g.shape, g.dtype)
    dev.launch(_relu_backward_kernel, g.size, dev.flat(g), dev.flat(y), dev.flat(out))
    return out

