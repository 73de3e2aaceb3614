"""Functional forms of the layers: losses, activations, convolution, pooling, normalisation."""

from __future__ import annotations

import numbers

import numpy as np

from .. import dtypes
from ..ops.conv import Conv2d as Conv2dOp
from ..ops.dynamic_conv import DynamicConv2d as DynamicConv2dOp
from ..ops.dynamic_conv import PerSampleConv2d as PerSampleConv2dOp
from ..ops.expert_mix import ExpertScale as ExpertScaleOp
from ..ops.expert_mix import ExpertWeightedSum as ExpertWeightedSumOp
from ..ops.linalg import Linear as LinearOp
from ..ops.norm import BatchNorm2d as BatchNorm2dOp
from ..ops.pool import AdaptiveAvgPool2d as AdaptiveAvgPool2dOp
from ..ops.pool import AvgPool2d as AvgPool2dOp
from ..ops.pool import MaxPool2d as MaxPool2dOp
from ..ops.softmax import CrossEntropy
from ..random import batch_random
from ..tensor import Tensor


def cross_entropy(logits: Tensor, targets) -> Tensor:
    """Mean softmax cross-entropy of logits (N, C) against integer classes (N,).

    loss = mean_i( logsumexp(z_i) - z_i[t_i] ), computed from log_softmax so it
    never overflows; the backward is fused: (softmax(z) - onehot(t)) / N.
    """
    t = targets if isinstance(targets, Tensor) else Tensor(targets, dtype="int64", device=logits.device)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, C), got shape {logits.shape}")
    if t.ndim != 1 or t.shape[0] != logits.shape[0]:
        raise ValueError(f"cross_entropy: targets must be ({logits.shape[0]},) to match logits "
                         f"{logits.shape}, got shape {t.shape}")
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integer class indices, got {t.dtype}")
    if not dtypes.is_floating(logits.dtype):
        raise TypeError(f"cross_entropy: logits must be floating point, got {logits.dtype}")
    host = t.numpy()
    if host.size and (host.min() < 0 or host.max() >= logits.shape[1]):
        raise ValueError(f"cross_entropy: targets must lie in [0, {logits.shape[1]}), "
                         f"got values from {host.min()} to {host.max()}")
    return CrossEntropy.apply(logits, t)


def relu(x: Tensor) -> Tensor:
    return x.relu()


def sigmoid(x: Tensor) -> Tensor:
    return x.sigmoid()


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    return x.softmax(dim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    return x.log_softmax(dim)


# ---- convolution, pooling, normalisation ---------------------------------------

def _pair(value, name: str, op: str, minimum: int) -> tuple[int, int]:
    if not isinstance(value, int | np.integer | tuple | list):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    pair = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int | np.integer) for v in pair):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_4d(op: str, x: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-d (N, C, H, W), got shape {x.shape}")
    if not dtypes.is_floating(x.dtype):
        raise TypeError(f"{op}: input must be float32 or float64, got {x.dtype}")


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """2-d cross-correlation, as torch.nn.functional.conv2d.

    x (N, C, H, W), weight (C', C/groups, kh, kw), bias (C',) -> (N, C', H', W').
    """
    _check_4d("conv2d", x)
    args = (_pair(stride, "stride", "conv2d", 1), _pair(padding, "padding", "conv2d", 0),
            _pair(dilation, "dilation", "conv2d", 1))
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    return Conv2dOp.apply(x, weight, bias, *args, groups)


def per_sample_conv2d(x: Tensor, kernels: Tensor, stride=1, padding=0, groups: int = 1, dilation=1) -> Tensor:
    """A different kernel per sample: y_b = conv2d(x_b, kernels_b).

    x (N, C, H, W), kernels (N, C', C/groups, kh, kw) -> (N, C', H', W').
    """
    _check_4d("per_sample_conv2d", x)
    args = (_pair(stride, "stride", "per_sample_conv2d", 1), _pair(padding, "padding", "per_sample_conv2d", 0),
            _pair(dilation, "dilation", "per_sample_conv2d", 1))
    return PerSampleConv2dOp.apply(x, kernels, *args, groups)


def dynamic_conv2d(x: Tensor, bank: Tensor, routing: Tensor, stride=1, padding=0, groups: int = 1,
                   dilation=1, spatial: Tensor | None = None) -> Tensor:
    """Convolution with per-sample mixtures of expert kernels: y_b = conv2d(x_b, s_b * sum_i r_bi W_i).

    x (N, C, H, W), bank W (n, C', C/groups, kh, kw), routing r (N, n) -> (N, C', H', W'); r may also be
    (N, n, C'), one weight per expert and output channel (r_bi a vector over C').
    `spatial` s (N, kh*kw), optional, scales each kernel position per sample (ODConv).
    Aggregates and convolves in batch chunks (ops.dynamic_conv.KERNEL_BUDGET_BYTES).
    """
    _check_4d("dynamic_conv2d", x)
    if bank.ndim != 5:
        raise ValueError(f"dynamic_conv2d: bank must be (n, C', C/groups, kh, kw), got shape {bank.shape}")
    if routing.shape not in ((x.shape[0], bank.shape[0]), (x.shape[0], bank.shape[0], bank.shape[1])):
        raise ValueError(f"dynamic_conv2d: routing must be (N, n) = {(x.shape[0], bank.shape[0])}, got "
                         f"{routing.shape} (or (N, n, C') = {(x.shape[0], *bank.shape[:2])})")
    kk = bank.shape[3] * bank.shape[4]
    if spatial is not None and spatial.shape != (x.shape[0], kk):
        raise ValueError(f"dynamic_conv2d: spatial must be (N, kh*kw) = {(x.shape[0], kk)}, got {spatial.shape}")
    args = (_pair(stride, "stride", "dynamic_conv2d", 1), _pair(padding, "padding", "dynamic_conv2d", 0),
            _pair(dilation, "dilation", "dynamic_conv2d", 1))
    return DynamicConv2dOp.apply(x, bank, routing, spatial, *args, groups)


def _check_routing(op: str, r: Tensor, n_batch: int) -> None:
    if r.ndim != 4 or r.shape[0] != n_batch or r.shape[2] < 1:
        raise ValueError(f"{op}: routing weights r must be (N, G, n, D) with N = {n_batch} and n >= 1, "
                         f"got shape {r.shape}")


def expert_weighted_sum(z: Tensor, r: Tensor) -> Tensor:
    """Mix expert-stacked maps with per-channel routing weights (CoConv's output attention).

    z (N, G*n*D, H, W), channel (g*n + i)*D + d holding expert i's channel g*D + d;
    r (N, G, n, D) -> y (N, G*D, H, W),  y[b, g*D + d] = sum_i r[b, g, i, d] * z[b, (g*n + i)*D + d].
    """
    _check_4d("expert_weighted_sum", z)
    _check_routing("expert_weighted_sum", r, z.shape[0])
    stacked = r.shape[1] * r.shape[2] * r.shape[3]
    if z.shape[1] != stacked:
        raise ValueError(f"expert_weighted_sum: z must have G*n*D = {stacked} channels for r of shape {r.shape} "
                         f"= (N, G, n, D), got z of shape {z.shape}")
    return ExpertWeightedSumOp.apply(z, r)


def expert_scale(x: Tensor, r: Tensor) -> Tensor:
    """One copy of x per expert, each scaled per channel (CoConv's input attention).

    x (N, G*D, H, W); r (N, G, n, D) -> xs (N, G*n*D, H, W),
    xs[b, (g*n + i)*D + d] = r[b, g, i, d] * x[b, g*D + d].
    """
    _check_4d("expert_scale", x)
    _check_routing("expert_scale", r, x.shape[0])
    if x.shape[1] != r.shape[1] * r.shape[3]:
        raise ValueError(f"expert_scale: x must have G*D = {r.shape[1] * r.shape[3]} channels for r of shape "
                         f"{r.shape} = (N, G, n, D), got x of shape {x.shape}")
    return ExpertScaleOp.apply(x, r)


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    """Max over k x k windows (stride defaults to the kernel size); -inf padding."""
    _check_4d("max_pool2d", x)
    k = _pair(kernel_size, "kernel_size", "max_pool2d", 1)
    s = k if stride is None else _pair(stride, "stride", "max_pool2d", 1)
    return MaxPool2dOp.apply(x, k, s, _pair(padding, "padding", "max_pool2d", 0))


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    """Mean over k x k windows, zero padding counted in the mean (PyTorch's default)."""
    _check_4d("avg_pool2d", x)
    k = _pair(kernel_size, "kernel_size", "avg_pool2d", 1)
    s = k if stride is None else _pair(stride, "stride", "avg_pool2d", 1)
    return AvgPool2dOp.apply(x, k, s, _pair(padding, "padding", "avg_pool2d", 0))


def adaptive_avg_pool2d(x: Tensor, output_size) -> Tensor:
    """Average pooling to a fixed (oh, ow), PyTorch's bin rule (also for inputs smaller than the output)."""
    _check_4d("adaptive_avg_pool2d", x)
    return AdaptiveAvgPool2dOp.apply(x, _pair(output_size, "output_size", "adaptive_avg_pool2d", 1))


def batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None = None,
               bias: Tensor | None = None, training: bool = False, momentum: float = 0.1,
               eps: float = 1e-5) -> Tensor:
    """Batch normalisation over (N, H, W) per channel, as torch.nn.functional.batch_norm.

    training=True uses batch statistics and updates running_mean/var in place;
    training=False uses the running statistics.
    """
    _check_4d("batch_norm", x)
    c = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and t.shape != (c,):
            raise ValueError(f"batch_norm: {name} must have shape ({c},) for input {x.shape}, got {t.shape}")
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and t.dtype != x.dtype:  # raw arrays below: Function.apply cannot check them
            raise TypeError(f"batch_norm: {name} is {t.dtype} but the input is {x.dtype}; "
                            "convert one with .to(dtype)")
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: pass both running_mean and running_var, or neither")
    if training and running_mean is not None and not (isinstance(momentum, numbers.Real) and 0 <= momentum <= 1):
        raise ValueError(f"batch_norm: momentum must be a number in [0, 1], got {momentum!r}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: eval mode needs running_mean and running_var")
    if training and x.shape[0] * x.shape[2] * x.shape[3] < 2:
        raise ValueError(f"batch_norm: training needs more than one value per channel, got input {x.shape}")
    rm = None if running_mean is None else running_mean.data
    rv = None if running_var is None else running_var.data
    return BatchNorm2dOp.apply(x, weight, bias, rm, rv, training, momentum, eps)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x @ weight^T + bias:  x (..., in), weight (out, in), bias (out,) -> (..., out)."""
    if x.shape[-1:] != weight.shape[-1:]:
        raise ValueError(f"linear: input features {x.shape} do not match weight {weight.shape}")
    if weight.ndim != 2 or (bias is not None and bias.shape != weight.shape[:1]):
        raise ValueError(f"linear: expected weight (out, in) and bias (out,), got {weight.shape} and "
                         f"{None if bias is None else bias.shape}")
    lead = x.shape[:-1]
    y = LinearOp.apply(x.reshape(-1, x.shape[-1]), weight, bias)
    return y.reshape(*lead, weight.shape[0])


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (inverted dropout).

    The mask comes from the global generator (`minicoconv.manual_seed`), through
    `random.batch_random` so that data-parallel ranks draw their rows of one batch's mask.
    """
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not dtypes.is_floating(x.dtype):
        raise TypeError(f"dropout: input must be float32 or float64, got {x.dtype}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    keep = batch_random(x.shape) >= p
    mask = Tensor(keep.astype(x.dtype) / x.dtype.type(1 - p), dtype=x.dtype, device=x.device)
    return x * mask


def flatten(x: Tensor, start_dim: int = 1) -> Tensor:
    return x.flatten(start_dim)
