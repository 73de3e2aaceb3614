"""The CPU backend: NumPy arrays, NumPy/BLAS math, Numba kernels where they pay.

Most entries are NumPy functions themselves (matmul is blas.matmul: the GEMMs run in
Numba's pool, see blas.py); the few that NumPy lacks
(a numerically stable sigmoid, softmax, scatter-add into zeros) are written
here in a couple of lines each.
"""

from __future__ import annotations

import numpy as np

from ..base import Backend

# the plain NumPy primitives are the reference backend's own: this backend replaces only the kernels
from ..reference.backend import (
    _asarray,
    _astype,
    _getitem,
    _log_softmax,
    _pad,
    _scatter_add,
    _sigmoid,
    _softmax,
    _to_numpy,
)
from . import (
    activation_kernels,
    adaptive_pool_kernels,
    blas,
    conv_kernels,
    expert_kernels,
    gathered_conv,
    mixture_aggregate,
    mixture_conv,
    norm_kernels,
    optim_kernels,
    per_sample_conv,
    pool_kernels,
)


def _owns_memory(a: np.ndarray) -> bool:
    """C-contiguous, writeable and not a view of another array, so writing to it changes nothing
    else (and a gradient passed on in it keeps the layout the kernels expect)."""
    return isinstance(a, np.ndarray) and a.base is None and a.flags.writeable and a.flags.c_contiguous


def _accumulate(total: np.ndarray, g: np.ndarray) -> np.ndarray:
    # in place: no new array, whose fresh pages the kernel would zero on first touch
    if _owns_memory(total) and g.flags.c_contiguous and total.shape == g.shape and total.dtype == g.dtype:
        return np.add(total, g, out=total)
    return np.add(total, g)


def _own(g: np.ndarray) -> np.ndarray:
    return g if _owns_memory(g) else np.array(g)


class CPUBackend(Backend):
    """NumPy arrays in host memory. See `minicoconv.backend.base` for the contract."""

    name = "cpu"

    def __init__(self):
        # made when the first CPU tensor is (backend.get_backend), so never at import
        from ...threads import use_threading_layer

        use_threading_layer()

    @staticmethod
    def synchronize() -> None:
        """Wait for queued work (nothing to wait for: NumPy and Numba calls return when done)."""

    # creation and transfer
    asarray = staticmethod(_asarray)
    to_numpy = staticmethod(_to_numpy)
    zeros = staticmethod(np.zeros)
    full = staticmethod(np.full)
    copy = staticmethod(np.array)
    accumulate = staticmethod(_accumulate)
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
    matmul = staticmethod(blas.matmul)

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
    relu_forward = staticmethod(activation_kernels.relu_forward)
    relu_backward = staticmethod(activation_kernels.relu_backward)

    # training
    sgd_update = staticmethod(optim_kernels.sgd_update)

    # Numba kernels (validated drivers: see each module)
    conv2d_forward = staticmethod(conv_kernels.conv2d_forward)
    conv2d_backward = staticmethod(conv_kernels.conv2d_backward)
    per_sample_conv2d_forward = staticmethod(per_sample_conv.per_sample_conv2d_forward)
    per_sample_conv2d_backward = staticmethod(per_sample_conv.per_sample_conv2d_backward)
    gathered_conv2d_forward = staticmethod(gathered_conv.gathered_conv2d_forward)
    aggregate_kernels = staticmethod(mixture_aggregate.aggregate_kernels)
    aggregate_kernels_backward = staticmethod(mixture_aggregate.aggregate_kernels_backward)
    mixture_conv2d_forward = staticmethod(mixture_conv.mixture_conv2d_forward)
    mixture_conv2d_backward = staticmethod(mixture_conv.mixture_conv2d_backward)
    max_pool2d_forward = staticmethod(pool_kernels.max_pool2d_forward)
    max_pool2d_backward = staticmethod(pool_kernels.max_pool2d_backward)
    avg_pool2d_forward = staticmethod(pool_kernels.avg_pool2d_forward)
    avg_pool2d_backward = staticmethod(pool_kernels.avg_pool2d_backward)
    adaptive_avg_pool2d_forward = staticmethod(adaptive_pool_kernels.adaptive_avg_pool2d_forward)
    adaptive_avg_pool2d_backward = staticmethod(adaptive_pool_kernels.adaptive_avg_pool2d_backward)
    batch_norm_train_forward = staticmethod(norm_kernels.batch_norm_train_forward)
    batch_norm_eval_forward = staticmethod(norm_kernels.batch_norm_eval_forward)
    batch_norm_backward = staticmethod(norm_kernels.batch_norm_backward)
    batch_norm_eval_backward = staticmethod(norm_kernels.batch_norm_eval_backward)
    batch_norm_update_running = staticmethod(norm_kernels.batch_norm_update_running)
    expert_weighted_sum_forward = staticmethod(expert_kernels.expert_weighted_sum_forward)
    expert_weighted_sum_backward = staticmethod(expert_kernels.expert_weighted_sum_backward)
    expert_scale_forward = staticmethod(expert_kernels.expert_scale_forward)
    expert_scale_backward = staticmethod(expert_kernels.expert_scale_backward)
