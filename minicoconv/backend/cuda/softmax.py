"""softmax and log_softmax along one axis, one thread per row.

The array is read as (outer, L, inner) around the softmax axis of length L, so row
(o, k) holds the elements o*L*inner + j*inner + k, j in [0, L): neighbouring threads
take neighbouring k and read neighbouring memory. Each thread makes three passes over
its row, as the CPU backend does with NumPy:

    m = max_j a_j,   s = sum_j exp(a_j - m)   (float64),
    softmax_j = exp(a_j - m) / s,   log_softmax_j = (a_j - m) - log(s)

Subtracting m keeps exp from overflowing; s >= 1 (the maximum contributes exp(0)).
"""

from __future__ import annotations

import math

from numba import cuda

from . import device as dev
from .layout import normalize_axes, size_of


@cuda.jit
def _softmax_kernel(a, out, length, inner, n_rows, log):
    for row in range(cuda.grid(1), n_rows, cuda.gridsize(1)):
        base = (row // inner) * length * inner + row % inner
        m = a[base]
        for j in range(1, length):
            v = a[base + j * inner]
            if v > m or v != v:
                m = v
        s = 0.0
        for j in range(length):
            s += math.exp(a[base + j * inner] - m)
        if log:
            log_s = math.log(s) if s > 0 else -math.inf
            for j in range(length):
                out[base + j * inner] = (a[base + j * inner] - m) - log_s
        else:
            for j in range(length):
                out[base + j * inner] = math.exp(a[base + j * inner] - m) / s


def _softmax(a, axis: int, log: bool):
    if a.dtype.kind != "f":
        raise TypeError(f"{'log_' if log else ''}softmax: expected a float array, got {a.dtype}")
    axis = normalize_axes("softmax", axis, a.ndim)[0] if a.ndim else 0
    out = dev.empty(a.shape, a.dtype)
    length = a.shape[axis] if a.ndim else 1
    inner = size_of(a.shape[axis + 1:])
    n_rows = a.size // length if length else 0
    dev.launch(_softmax_kernel, n_rows, dev.flat(a), dev.flat(out), length, inner, n_rows, log)
    return out


def softmax(a, axis: int):
    """exp(a) / sum(exp(a)) along `axis` (shape and dtype of a)."""
    return _softmax(a, axis, False)


def log_softmax(a, axis: int):
    """a - logsumexp(a) along `axis` (shape and dtype of a)."""
    return _softmax(a, axis, True)
