"""The SGD update, in place on the device: one thread per parameter element.

PyTorch's rule (dampening 0), as the CPU backend:
    g = grad + weight_decay * param
    buf = g  (first step)   or   buf = momentum * buf + g
    g = g + momentum * buf  if nesterov  else  buf
    param -= lr * g
The hyper-parameters are converted to the parameter's dtype on the host, so float32
parameters are updated in float32 arithmetic, like NumPy's weak-scalar rule does.

`sgd_update_many` updates many parameters in one launch (a model has a hundred; one
launch each was a hundred launches a step): the kernel takes tuples of up to CHUNK flat
arrays, grid row y updates tensor y (a tuple indexed at run time), the x blocks stride
over its elements. Short tuples are padded with a placeholder that no row reaches, so
one compiled kernel serves every chunk of a dtype.
"""

from __future__ import annotations

from numba import cuda

from . import device as dev

#: most tensors per launch of the multi-tensor update (one kernel specialisation per dtype)
CHUNK = 32


@cuda.jit(device=True)
def _sgd_element(param, grad, buf, i, lr, momentum, weight_decay, use_momentum, first, nesterov):
    g = grad[i]
    if weight_decay != 0:
        g = g + weight_decay * param[i]
    if use_momentum:
        b = g if first else momentum * buf[i] + g
        buf[i] = b
        g = g + momentum * b if nesterov else b
    param[i] = param[i] - lr * g


@cuda.jit
def _sgd_many_kernel(params, grads, bufs, n, lr, momentum, weight_decay, use_momentum, first, nesterov):
    for t in range(cuda.blockIdx.y, n, cuda.gridDim.y):
        param, grad, buf = params[t], grads[t], bufs[t]
        start, step = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, cuda.gridDim.x * cuda.blockDim.x
        for i in range(start, param.size, step):
            _sgd_element(param, grad, buf, i, lr, momentum, weight_decay, use_momentum, first, nesterov)


@cuda.jit
def _sgd_kernel(param, grad, buf, lr, momentum, weight_decay, use_momentum, first, nesterov):
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        _sgd_element(param, grad, buf, i, lr, momentum, weight_decay, use_momentum, first, nesterov)


def _check(op, param, grad, buf):
    for name, a in (("param", param), ("grad", grad)) + ((("buf", buf),) if buf is not None else ()):
        dev.check_device_array(op, name, a)
        if tuple(a.shape) != tuple(param.shape) or a.dtype != param.dtype:
            raise ValueError(f"{op}: expected {name} of shape {tuple(param.shape)} and dtype {param.dtype}, "
                             f"got {tuple(a.shape)} and {a.dtype}")


def sgd_update(param, grad, buf, lr, momentum, weight_decay, nesterov):
    """One in-place SGD step of `param`; returns the momentum buffer (None without momentum)."""
    _check("sgd_update", param, grad, buf)
    t = param.dtype.type
    first = bool(momentum) and buf is None
    if first:
        buf = dev.empty(param.shape, param.dtype)
    dev.launch(_sgd_kernel, param.size, dev.flat(param), dev.flat(grad),
               dev.flat(buf) if momentum else dev.placeholder(param.dtype),
               t(lr), t(momentum), t(weight_decay), bool(momentum), first, bool(nesterov))
    return buf


def sgd_update_many(params, grads, bufs, lr, momentum, weight_decay, nesterov) -> list:
    """`sgd_update` of every (param, grad, buf) triple, a launch per CHUNK tensors of one dtype
    (and one first-step state); returns the momentum buffers in order (None without momentum)."""
    params, grads, bufs = list(params), list(grads), list(bufs)
    if not len(params) == len(grads) == len(bufs):
        raise ValueError(f"sgd_update_many: expected as many params, grads and bufs, got {len(params)}, "
                         f"{len(grads)} and {len(bufs)}")
    for p, g, b in zip(params, grads, bufs):
        _check("sgd_update_many", p, g, b)
    out = list(bufs)
    groups: dict = {}
    for k, (p, b) in enumerate(zip(params, bufs)):
        first = bool(momentum) and b is None
        if first:
            out[k] = dev.empty(p.shape, p.dtype)
        groups.setdefault((p.dtype, first), []).append(k)
    for (dtype, first), members in groups.items():
        t, pad = dtype.type, dev.placeholder(dtype)
        members.sort(key=lambda k: -params[k].size)  # tensors of like sizes share a launch: few idle blocks
        for c in range(0, len(members), CHUNK):
            ks = members[c:c + CHUNK]
            fill = (pad,) * (CHUNK - len(ks))
            flat_p = tuple(dev.flat(params[k]) for k in ks) + fill
            flat_g = tuple(dev.flat(grads[k]) for k in ks) + fill
            flat_b = tuple(dev.flat(out[k]) if momentum else pad for k in ks) + fill
            dev.launch_rows(_sgd_many_kernel, max(params[k].size for k in ks), len(ks), flat_p, flat_g, flat_b,
                            len(ks), t(lr), t(momentum), t(weight_decay), bool(momentum), first, bool(nesterov))
    return out
