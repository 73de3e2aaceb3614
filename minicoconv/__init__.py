"""minicoconv: a minimal deep-learning engine for dynamic convolutions.

    import minicoconv as mc
    x = mc.randn(4, 3, requires_grad=True)
    (x * x).sum().backward()        # x.grad == 2 x
"""

import os as _os
import sys as _sys

# Numba's OpenMP pool and OpenBLAS's workers otherwise spin after their work and steal the
# cores from each other (measured: a stage-1 conv took 438 ms instead of 67 ms). Both are
# read when the runtimes start, so set them before anything starts a thread pool;
# setdefault leaves a user's own choice alone. OpenBLAS starts when NumPy is imported:
# if that already happened, the setting comes too late (threads.warn_if_blas_spins says so).
_BLAS_STARTED_UNSET = "numpy" in _sys.modules and "OPENBLAS_THREAD_TIMEOUT" not in _os.environ
_os.environ.setdefault("OMP_WAIT_POLICY", "passive")
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from . import nn
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
from .threads import blas_threads, set_blas_threads
from .threads import warn_if_blas_spins as _warn_if_blas_spins

if _BLAS_STARTED_UNSET:
    _warn_if_blas_spins()

__version__ = "0.1.0"

__all__ = [
    "Tensor", "abs", "arange", "blas_threads", "bool_", "cat", "concatenate", "enable_grad", "exp", "float32",
    "float64", "full", "get_rng_state", "int32", "int64", "is_grad_enabled", "log", "log_softmax",
    "manual_seed", "matmul", "maximum", "minimum", "nn", "no_grad", "ones", "ones_like", "pad",
    "rand", "randn", "relu", "set_blas_threads", "set_rng_state", "sigmoid", "softmax", "sqrt", "stack", "tanh",
    "tensor", "where", "zeros", "zeros_like",
]
