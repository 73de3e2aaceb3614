"""The CUDA backend: numba.cuda device arrays and kernels behind the backend interface.

Every attribute of `CPUBackend` exists here with the same semantics (see
`minicoconv.backend.base` and `backend/cpu/backend.py`); the arrays are numba device
arrays (see `device.py` for the representation and how kernels are launched). Extra:
`synchronize()` waits for the GPU (kernels are asynchronous: time with it).
"""

from __future__ import annotations

from functools import partial

from numba import cuda

from ..base import Backend
from . import activation, conv, creation, elementwise, expert_mix, linalg, norm, per_sample, pool, reduce, sgd, shape
from . import softmax as softmax_kernels
from .device import SIMULATOR, synchronize
from .device import owns_memory as dev_owns_memory

_unary = elementwise.unary
_binary = elementwise.binary


class CUDABackend(Backend):
    """numba.cuda device arrays in GPU memory (or the CUDA simulator's, under NUMBA_ENABLE_CUDASIM=1)."""

    name = "cuda"
    simulator = SIMULATOR

    def is_available(self) -> bool:
        return cuda.is_available()

    synchronize = staticmethod(synchronize)

    # creation and transfer
    asarray = staticmethod(creation.asarray)
    to_numpy = staticmethod(creation.to_numpy)
    zeros = staticmethod(creation.zeros)
    full = staticmethod(creation.full)
    copy = staticmethod(creation.copy)

    @staticmethod
    def own(g):
        """g itself when no other array sees its memory, else a copy (the engine asks this for a
        leaf's gradient that nothing else holds: a copy per parameter per step otherwise)."""
        return g if dev_owns_memory(g) else creation.copy(g)
    astype = staticmethod(elementwise.astype)

    # elementwise
    add = staticmethod(partial(_binary, "add"))
    subtract = staticmethod(partial(_binary, "subtract"))
    multiply = staticmethod(partial(_binary, "multiply"))
    divide = staticmethod(partial(_binary, "divide"))
    power = staticmethod(partial(_binary, "power"))
    maximum = staticmethod(partial(_binary, "maximum"))
    minimum = staticmethod(partial(_binary, "minimum"))
    greater = staticmethod(partial(_binary, "greater"))
    less = staticmethod(partial(_binary, "less"))
    equal = staticmethod(partial(_binary, "equal"))
    negative = staticmethod(partial(_unary, "negative"))
    exp = staticmethod(partial(_unary, "exp"))
    log = staticmethod(partial(_unary, "log"))
    sqrt = staticmethod(partial(_unary, "sqrt"))
    abs = staticmethod(partial(_unary, "abs"))
    sign = staticmethod(partial(_unary, "sign"))
    tanh = staticmethod(partial(_unary, "tanh"))
    sigmoid = staticmethod(partial(_unary, "sigmoid"))
    where = staticmethod(elementwise.where)

    # activations (fused)
    relu_forward = staticmethod(activation.relu_forward)
    relu_backward = staticmethod(activation.relu_backward)

    # reductions
    sum = staticmethod(reduce.reduce_sum)
    max = staticmethod(reduce.reduce_max)
    argmax = staticmethod(reduce.argmax)

    # linear algebra
    matmul = staticmethod(linalg.matmul)

    # shape
    reshape = staticmethod(shape.reshape)
    transpose = staticmethod(shape.transpose)
    broadcast_to = staticmethod(shape.broadcast_to)
    getitem = staticmethod(shape.getitem)
    scatter_add = staticmethod(shape.scatter_add)
    concatenate = staticmethod(shape.concatenate)
    pad = staticmethod(shape.pad)

    # fused
    softmax = staticmethod(softmax_kernels.softmax)
    log_softmax = staticmethod(softmax_kernels.log_softmax)

    # training
    sgd_update = staticmethod(sgd.sgd_update)
    sgd_update_many = staticmethod(sgd.sgd_update_many)

    # kernels
    conv2d_forward = staticmethod(conv.conv2d_forward)
    conv2d_backward = staticmethod(conv.conv2d_backward)
    per_sample_conv2d_forward = staticmethod(per_sample.per_sample_conv2d_forward)
    per_sample_conv2d_backward = staticmethod(per_sample.per_sample_conv2d_backward)
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
    expert_weighted_sum_forward = staticmethod(expert_mix.expert_weighted_sum_forward)
    expert_weighted_sum_backward = staticmethod(expert_mix.expert_weighted_sum_backward)
    expert_scale_forward = staticmethod(expert_mix.expert_scale_forward)
    expert_scale_backward = staticmethod(expert_mix.expert_scale_backward)
