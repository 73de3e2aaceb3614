"""The SGD update, in place on the device: one thread per parameter element.

PyTorch's rule (dampening 0), as the CPU backend:
    g = grad + weight_decay * param
    buf = g  (first step)   or   buf = momentum * buf + g
    g = g + momentum * buf  if nesterov  else  buf
    param -= lr * g
The hyper-parameters are converted to the parameter's dtype on the host, so float32
parameters are updated in float32 arithmetic, like NumPy's weak-scalar rule does.
"""

from __future__ import annotations

from numba import cuda

from . import device as dev


@cuda.jit
def _sgd_kernel(param, grad, buf, lr, momentum, weight_decay, use_momentum, first, nesterov):
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        g = grad[i]
        if weight_decay != 0:
            g = g + weight_decay * param[i]
        if use_momentum:
            b = g if first else momentum * buf[i] + g
            buf[i] = b
            g = g + momentum * b if nesterov else b
        param[i] = param[i] - lr * g


def sgd_update(param, grad, buf, lr, momentum, weight_decay, nesterov):
    """One in-place SGD step of `param`; returns the momentum buffer (None without momentum)."""
    for name, a in (("param", param), ("grad", grad)) + ((("buf", buf),) if buf is not None else ()):
        dev.check_device_array("sgd_update", name, a)
        if tuple(a.shape) != tuple(param.shape) or a.dtype != param.dtype:
            raise ValueError(f"sgd_update: expected {name} of shape {tuple(param.shape)} and dtype {param.dtype}, "
                             f"got {tuple(a.shape)} and {a.dtype}")
    t = param.dtype.type
    first = bool(momentum) and buf is None
    if first:
        buf = dev.empty(param.shape, param.dtype)
    dev.launch(_sgd_kernel, param.size, dev.flat(param), dev.flat(grad),
               dev.flat(buf) if momentum else dev.placeholder(param.dtype),
               t(lr), t(momentum), t(weight_decay), bool(momentum), first, bool(nesterov))
    return buf
