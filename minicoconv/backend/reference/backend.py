"""The reference backend: every primitive in plain NumPy, written to be read.

Elementwise, reduction and shape primitives are NumPy itself (as on the CPU backend);
the kernels are the textbook forms in conv.py, mixture.py, pool.py, norm.py, experts.py,
activation.py and optim.py, with the math in each docstring. No Numba: slow, but every line can be
stepped through, and the parity suite compares the fast backends against it.
"""

from __future__ import annotations

import numpy as np

from ..base import Backend
from . import activation, conv, experts, mixture, norm, optim, pool


def _sigmoid(a: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-a)), written as (tanh(a/2) + 1) / 2, which cannot overflow."""
    return 0.5 * (np.tanh(0.5 * a) + 1)


def _softmax(a: np.ndarray, axis: int) -> np.ndarray:
    """exp(a - max) / sum exp(a - max) along `axis`."""
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(a: np.ndarray, axis: int) -> np.ndarray:
    """(a - max) - log sum exp(a - max) along `axis`."""
    shifted = a - a.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _scatter_add(shape: tuple, index, values: np.ndarray) -> np.ndarray:
    """zeros(shape) with `values` added at `index` (repeated indices accumulate)."""
    out = np.zeros(shape, dtype=values.dtype)
    np.add.at(out, index, values)
    return out


def _getitem(a: np.ndarray, index) -> np.ndarray:
    return a[index]


def _astype(a: np.ndarray, dtype) -> np.ndarray:
    return a.astype(dtype, copy=False)


def _asarray(data, dtype=None) -> np.ndarray:
    return np.asarray(data, dtype=dtype)


def _to_numpy(a: np.ndarray) -> np.ndarray:
    return np.asarray(a)


def _pad(a: np.ndarray, pad_width, value) -> np.ndarray:
    return np.pad(a, pad_width, constant_values=value)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.matmul: (..., m, k) @ (..., k, n) -> (..., m, n), batch axes broadcast."""
    return np.matmul(a, b)


def _own(g: np.ndarray) -> np.ndarray:
    """g itself when it owns its C-contiguous, writeable memory, else a copy."""
    owns = g.base is None and g.flags.writeable and g.flags.c_contiguous
    return g if owns else np.array(g)


class ReferenceBackend(Backend):
    """NumPy arrays in host memory, plain-NumPy kernels. See `minicoconv.backend.base` for the contract."""

    name = "reference"

    @staticmethod
    def synchronize() -> None:
        """Wait for queued work (none: NumPy returns when done)."""

    # creation and transfer
    asarray = staticmethod(_asarray)
    to_numpy = staticmethod(_to_numpy)
    zeros = staticmethod(np.zeros)
    full = staticmethod(np.full)
    copy = staticmethod(np.array)
    own = staticmethod(_own)
    astype = staticmethod(_astype)

    # elementwise
    add = staticmethod(np.add)
    subtract = staticmethod(np.subtract)
    multiply = staticmethod(np.multiply)
    divide = staticmethod(np.divide)
    negative = staticmethod(np.negative)
    power = staticmethod(np.power)
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    sqrt = staticmethod(np.sqrt)
    abs = staticmethod(np.abs)
    sign = staticmethod(np.sign)
    tanh = staticmethod(np.tanh)
    sigmoid = staticmethod(_sigmoid)
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    where = staticmethod(np.where)
    greater = staticmethod(np.greater)
    less = staticmethod(np.less)
    equal = staticmethod(np.equal)

    # reductions
    sum = staticmethod(np.sum)
    max = staticmethod(np.max)
    argmax = staticmethod(np.argmax)

    # linear algebra
    matmul = staticmethod(_matmul)

    # shape
    reshape = staticmethod(np.reshape)
    transpose = staticmethod(np.transpose)
    broadcast_to = staticmethod(np.broadcast_to)
    getitem = staticmethod(_getitem)
    scatter_add = staticmethod(_scatter_add)
    concatenate = staticmethod(np.concatenate)
    pad = staticmethod(_pad)

    # fused
    softmax = staticmethod(_softmax)
    log_softmax = staticmethod(_log_softmax)
    relu_forward = staticmethod(activation.relu_forward)
    relu_backward = staticmethod(activation.relu_backward)

    # training
    sgd_update = staticmethod(optim.sgd_update)

    # kernels
    conv2d_forward = staticmethod(conv.conv2d_forward)
    conv2d_backward = staticmethod(conv.conv2d_backward)
    per_sample_conv2d_forward = staticmethod(conv.per_sample_conv2d_forward)
    per_sample_conv2d_backward = staticmethod(conv.per_sample_conv2d_backward)
    gathered_conv2d_forward = staticmethod(conv.gathered_conv2d_forward)
    aggregate_kernels = staticmethod(mixture.aggregate_kernels)
    aggregate_kernels_backward = staticmethod(mixture.aggregate_kernels_backward)
    mixture_conv2d_forward = staticmethod(mixture.mixture_conv2d_forward)
    mixture_conv2d_backward = staticmethod(mixture.mixture_conv2d_backward)
    max_pool2d_forward = staticmethod(pool.max_pool2d_forward)
    max_pool2d_backward = staticmethod(pool.max_pool2d_backward)
    avg_pool2d_forward = staticmethod(pool.avg_pool2d_forward)
    avg_pool2d_backward = staticmethod(pool.avg_pool2d_backward)
    adaptive_avg_pool2d_forward = staticmethod(pool.adaptive_avg_pool2d_forward)
    adaptive_avg_pool2d_backward = staticmethod(pool.adaptive_avg_pool2d_backward)
    batch_norm_train_forward = staticmethod(norm.batch_norm_train_forward)
    batch_norm_eval_forward = staticmethod(norm.batch_norm_eval_forward)
    batch_norm_backward = staticmethod(norm.batch_norm_backward)
    batch_norm_eval_backward = staticmethod(norm.batch_norm_eval_backward)
    batch_norm_update_running = staticmethod(norm.batch_norm_update_running)
    expert_weighted_sum_forward = staticmethod(experts.expert_weighted_sum_forward)
    expert_weighted_sum_backward = staticmethod(experts.expert_weighted_sum_backward)
    expert_scale_forward = staticmethod(experts.expert_scale_forward)
    expert_scale_backward = staticmethod(experts.expert_scale_backward)
