"""Functional forms of the layers: losses, activations, convolution, pooling, normalisation."""

from __future__ import annotations

from .. import dtypes
from ..ops.softmax import CrossEntropy
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
