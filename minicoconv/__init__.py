"""minicoconv: a minimal deep-learning engine for dynamic convolutions.

    import minicoconv as mc
    x = mc.randn(4, 3, requires_grad=True)
    (x * x).sum().backward()        # x.grad == 2 x
"""

from . import nn, optim
from .autograd import enable_grad, is_grad_enabled, no_grad
from .creation import arange, full, ones, ones_like, rand, randn, tensor, zeros, zeros_like
from .dtypes import bool_, float32, float64, int32, int64
from .functions import (
                        abs,
                        cat,
                        concatenate,
                        exp,
                        log,
                        log_softmax,
                        matmul,
                        maximum,
                        minimum,
                        pad,
                        relu,
                        sigmoid,
                        softmax,
                        sqrt,
                        stack,
                        tanh,
                        where,
)
from .random import get_rng_state, manual_seed, set_rng_state
from .tensor import Tensor
from .threads import blas_threads, get_num_threads, set_blas_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "Tensor", "abs", "arange", "blas_threads", "bool_", "cat", "concatenate", "enable_grad", "exp", "float32",
    "float64", "full", "get_num_threads", "get_rng_state", "int32", "int64", "is_grad_enabled", "log",
    "log_softmax", "manual_seed", "matmul", "maximum", "minimum", "nn", "no_grad", "optim", "ones", "ones_like", "pad",
    "rand", "randn", "relu", "set_blas_threads", "set_num_threads", "set_rng_state", "sigmoid", "softmax", "sqrt",
    "stack", "tanh", "tensor", "where", "zeros", "zeros_like",
]
