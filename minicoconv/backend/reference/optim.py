"""SGD, PyTorch's rule (dampening 0), updating the parameter in place.

    g = grad + weight_decay * param
    buf = g                      on the first step with momentum,
    buf = momentum * buf + g     after it
    g = g + momentum * buf       (Nesterov)  or  g = buf  (plain momentum)
    param -= lr * g
"""

from __future__ import annotations

import numpy as np

from .checks import FLOAT_DTYPES


def sgd_update(param: np.ndarray, grad: np.ndarray, buf: np.ndarray | None, lr: float, momentum: float,
               weight_decay: float, nesterov: bool) -> np.ndarray | None:
    """One in-place SGD step of `param` (any shape); returns the momentum buffer (None without momentum)."""
    arrays = (("param", param), ("grad", grad)) + ((("buf", buf),) if buf is not None else ())
    for name, a in arrays:
        if not isinstance(a, np.ndarray) or a.dtype not in FLOAT_DTYPES:
            raise ValueError(f"sgd_update: expected {name} to be a float32/float64 numpy.ndarray, "
                             f"got {type(a).__name__} {getattr(a, 'dtype', '')}")
        if a.shape != param.shape or a.dtype != param.dtype:
            raise ValueError(f"sgd_update: expected {name} of shape {param.shape} and dtype {param.dtype}, "
                             f"got {a.shape} and {a.dtype}")
    t = param.dtype.type  # scalars in the parameter's dtype, as the kernels compute
    g = grad + t(weight_decay) * param if weight_decay else grad.copy()
    if momentum:
        if buf is None:
            buf = g.copy()
        else:
            buf *= t(momentum)
            buf += g
        g = g + t(momentum) * buf if nesterov else buf
    param -= t(lr) * g
    return buf if momentum else None
