"""The SGD update as one pass over memory (CPU backend).

PyTorch's rule (dampening 0), element by element, in place:
    g = grad + weight_decay * param
    buf = g  (first step)   or   buf = momentum * buf + g
    g = g + momentum * buf  if nesterov  else  buf
    param -= lr * g

Written with NumPy, the rule costs four to six full passes and two temporaries per
parameter; for AlexNet's 23.6M parameters that was about half of a training step.
The kernel reads grad, param and buf once and writes param and buf once. The
hyper-parameters are cast to the parameter's dtype first, so float32 parameters are
updated in float32 arithmetic, as PyTorch and NumPy's weak-scalar rule do.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: below this many elements the serial kernel wins (no thread start-up)
PARALLEL_MIN_SIZE = 1 << 16


def _sgd_body(param, grad, buf, lr, momentum, weight_decay, use_momentum, first, nesterov, i):
    g = grad[i]
    if weight_decay != 0:
        g = g + weight_decay * param[i]
    if use_momentum:
        b = g if first else momentum * buf[i] + g
        buf[i] = b
        g = g + momentum * b if nesterov else b
    param[i] = param[i] - lr * g


_body = njit(inline="always", cache=True)(_sgd_body)


@njit(cache=True)
def _sgd_serial(param, grad, buf, lr, momentum, weight_decay, use_momentum, first, nesterov):
    for i in range(param.size):
        _body(param, grad, buf, lr, momentum, weight_decay, use_momentum, first, nesterov, i)


@njit(parallel=True, cache=True)
def _sgd_parallel(param, grad, buf, lr, momentum, weight_decay, use_momentum, first, nesterov):
    for i in prange(param.size):
        _body(param, grad, buf, lr, momentum, weight_decay, use_momentum, first, nesterov, i)


def sgd_update(param: np.ndarray, grad: np.ndarray, buf: np.ndarray | None, lr: float, momentum: float,
               weight_decay: float, nesterov: bool) -> np.ndarray | None:
    """One in-place SGD step of `param`; returns the momentum buffer (None without momentum)."""
    arrays = (("param", param), ("grad", grad)) + ((("buf", buf),) if buf is not None else ())
    for name, a in arrays:
        if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
            raise ValueError(f"sgd_update: expected {name} to be a float32/float64 numpy.ndarray, "
                             f"got {type(a).__name__} {getattr(a, 'dtype', '')}")
        if a.shape != param.shape or a.dtype != param.dtype:
            raise ValueError(f"sgd_update: expected {name} of shape {param.shape} and dtype {param.dtype}, "
                             f"got {a.shape} and {a.dtype}")
    t = param.dtype.type
    first = bool(momentum) and buf is None
    if momentum:
        buf = np.empty_like(param, order="C") if first else np.ascontiguousarray(buf)
    # reshape(-1) of a C-contiguous array is a view, so the kernel writes into param itself;
    # a strided parameter is updated through a contiguous copy that is written back.
    work = param if param.flags.c_contiguous else np.ascontiguousarray(param)
    kernel = _sgd_parallel if param.size >= PARALLEL_MIN_SIZE else _sgd_serial
    kernel(work.reshape(-1), np.ascontiguousarray(grad).reshape(-1),
           buf.reshape(-1) if momentum else np.empty(1, dtype=param.dtype),
           t(lr), t(momentum), t(weight_decay), bool(momentum), first, bool(nesterov))
    if work is not param:
        param[...] = work
    return buf if momentum else None
