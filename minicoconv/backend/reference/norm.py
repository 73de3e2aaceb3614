"""Batch normalisation over (N, H, W) per channel, forward and backward (PyTorch's BatchNorm2d).

Training:  mean = E[x],  var = E[(x - mean)^2] (biased),  invstd = 1 / sqrt(var + eps),
           alpha = weight * invstd,  y = (x - mean) * alpha + bias.
Backward (M = N*H*W values per channel, xhat = (x - mean) * invstd):
           dbias = sum gy,  dweight = sum gy * xhat,
           dx = alpha / M * (M * gy - dbias - xhat * dweight).
Eval:      y = (x - running_mean) * alpha + bias with invstd = 1 / sqrt(running_var + eps);
           its backward treats the running statistics as constants.
"""

from __future__ import annotations

import numpy as np

from .checks import FLOAT_DTYPES, channel_vector, float_array, same_shape

Grads = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]


def _c(v: np.ndarray) -> np.ndarray:
    """(C,) -> (1, C, 1, 1), to broadcast over (N, C, H, W)."""
    return v.reshape(1, -1, 1, 1)


def _eps(op: str, eps) -> float:
    if not isinstance(eps, float | int | np.floating) or not eps >= 0:
        raise ValueError(f"{op}: expected eps >= 0, got {eps!r}")
    return float(eps)


def batch_norm_train_forward(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                             eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (N, C, H, W), weight/bias (C,) or None (1 and 0) -> (y like x, mean (C,), invstd (C,)), x's dtype."""
    op = "batch_norm"
    float_array(op, "x", x, 4, "(N, C, H, W)")
    n_chan = x.shape[1]
    weight = channel_vector(op, "weight", weight, n_chan, x.dtype, fill=1)
    bias = channel_vector(op, "bias", bias, n_chan, x.dtype, fill=0)
    eps = _eps(op, eps)
    if x.shape[0] * x.shape[2] * x.shape[3] < 2:
        raise ValueError(f"{op}: training needs more than 1 value per channel (N*H*W >= 2), got input of "
                         f"shape {x.shape}")
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
    var = np.square(x - _c(mean)).mean(axis=(0, 2, 3))
    invstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    mean = mean.astype(x.dtype)
    y = (x - _c(mean)) * _c(weight * invstd) + _c(bias)
    return y.astype(x.dtype, copy=False), mean, invstd


def batch_norm_eval_forward(x: np.ndarray, running_mean: np.ndarray, running_var: np.ndarray,
                            weight: np.ndarray | None, bias: np.ndarray | None, eps: float) -> np.ndarray:
    """y = (x - running_mean) * weight / sqrt(running_var + eps) + bias:  (N, C, H, W) -> same."""
    op = "batch_norm_eval"
    float_array(op, "x", x, 4, "(N, C, H, W)")
    n_chan = x.shape[1]
    eps = _eps(op, eps)
    running_mean = _required(op, "running_mean", running_mean, n_chan, x.dtype)
    alpha = _alpha(op, running_var, weight, eps, n_chan, x.dtype)[1]
    bias = channel_vector(op, "bias", bias, n_chan, x.dtype, fill=0)
    return (x - _c(running_mean)) * _c(alpha) + _c(bias)


def _required(op, name, v, n_chan, dtype):
    v = channel_vector(op, name, v, n_chan, dtype)
    if v is None:
        raise ValueError(f"{op}: expected {name} of shape ({n_chan},), got None")
    return v


def _alpha(op, running_var, weight, eps, n_chan, dtype):
    """(invstd, alpha) = (1 / sqrt(running_var + eps), weight * invstd), each (C,) of dtype."""
    running_var = _required(op, "running_var", running_var, n_chan, dtype)
    weight = channel_vector(op, "weight", weight, n_chan, dtype, fill=1)
    invstd = (1.0 / np.sqrt(running_var.astype(np.float64) + eps)).astype(dtype)
    return invstd, weight * invstd


def batch_norm_backward(gy: np.ndarray, x: np.ndarray, weight: np.ndarray | None, mean: np.ndarray,
                        invstd: np.ndarray, need_dx: bool = True, need_dweight: bool = True,
                        need_dbias: bool = True) -> Grads:
    """(dx, dweight, dbias) of batch_norm_train_forward through the batch statistics, None where not asked."""
    op = "batch_norm_backward"
    float_array(op, "x", x, 4, "(N, C, H, W)")
    same_shape(op, "gy", gy, x.shape, x.dtype)
    n_chan = x.shape[1]
    weight = channel_vector(op, "weight", weight, n_chan, x.dtype, fill=1)
    mean = _required(op, "mean", mean, n_chan, x.dtype)
    invstd = _required(op, "invstd", invstd, n_chan, x.dtype)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    xhat = (x - _c(mean)) * _c(invstd)
    dbias = gy.sum(axis=(0, 2, 3))
    dweight = (gy * xhat).sum(axis=(0, 2, 3))
    dx = None
    if need_dx:
        dx = _c(weight * invstd / m) * (m * gy - _c(dbias) - xhat * _c(dweight))
    return dx, (dweight if need_dweight else None), (dbias if need_dbias else None)


def batch_norm_eval_backward(gy: np.ndarray, running_var: np.ndarray, weight: np.ndarray | None, eps: float,
                             x: np.ndarray | None = None, running_mean: np.ndarray | None = None,
                             need_dx: bool = True, need_dweight: bool = False, need_dbias: bool = False) -> Grads:
    """dx = gy * alpha,  dweight = sum gy * (x - running_mean) * invstd (needs x, running_mean),  dbias = sum gy."""
    op = "batch_norm_eval_backward"
    float_array(op, "gy", gy, 4, "(N, C, H, W)")
    n_chan = gy.shape[1]
    eps = _eps(op, eps)
    if need_dweight and (x is None or running_mean is None):
        raise ValueError(f"{op}: need_dweight needs x and running_mean")
    invstd, alpha = _alpha(op, running_var, weight, eps, n_chan, gy.dtype)
    dx = gy * _c(alpha) if need_dx else None
    dweight = None
    if need_dweight:
        same_shape(op, "x", x, gy.shape, gy.dtype)
        running_mean = _required(op, "running_mean", running_mean, n_chan, gy.dtype)
        dweight = (gy * (x - _c(running_mean)) * _c(invstd)).sum(axis=(0, 2, 3))
    return dx, dweight, (gy.sum(axis=(0, 2, 3)) if need_dbias else None)


def batch_norm_update_running(running_mean: np.ndarray, running_var: np.ndarray, mean: np.ndarray,
                              invstd: np.ndarray, eps: float, n: int, momentum: float) -> None:
    """In place, as PyTorch: var = 1/invstd^2 - eps (biased), running = momentum * batch + (1 - momentum) * running,
    with the unbiased var * n / (n - 1) for running_var; n = N*H*W >= 2."""
    op = "batch_norm_update_running"
    if not isinstance(running_mean, np.ndarray) or running_mean.ndim != 1 or running_mean.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{op}: expected running_mean as a (C,) float32/float64 numpy.ndarray, got "
                         f"{getattr(running_mean, 'shape', type(running_mean).__name__)}")
    n_chan, dtype = running_mean.shape[0], running_mean.dtype
    for name, a in (("running_var", running_var), ("mean", mean), ("invstd", invstd)):
        _required(op, name, a, n_chan, dtype)
    if not (running_mean.flags.writeable and running_var.flags.writeable):
        raise ValueError(f"{op}: expected writeable running_mean and running_var")
    if not isinstance(n, int | np.integer) or n < 2:
        raise ValueError(f"{op}: expected n = N*H*W >= 2 values per channel, got {n!r}")
    if not isinstance(momentum, float | int | np.floating) or not 0 <= momentum <= 1:
        raise ValueError(f"{op}: expected momentum in [0, 1], got {momentum!r}")
    eps = _eps(op, eps)
    var = np.maximum(1.0 / np.square(invstd.astype(np.float64)) - eps, 0.0)
    running_mean[...] = momentum * mean.astype(np.float64) + (1 - momentum) * running_mean
    running_var[...] = momentum * var * (n / (n - 1)) + (1 - momentum) * running_var
