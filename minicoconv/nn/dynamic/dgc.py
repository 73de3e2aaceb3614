"""DGC, dynamic group convolution (Su et al., ECCV 2020).

Heads H (dividing C and C'), kept fraction g. With u = ReLU(BN(x)):
    per head h, saliency  q_h = ReLU(W2_h ReLU(W1_h GAP(u)) + b2_h) >= 0      (N, C)
    the m smallest entries of q_h per sample are zeroed (chosen on a detached copy)
    y_h = conv(u * q_h, W_h)                      W_h (C'/H, C, k, k)            (N, C'/H, H', W')
    output channel j*H + h is filter j of head h  (heads interleaved)
    lasso = sum_h mean(q_h)   (`extra_loss`: the trainer adds 1e-5 * the sum over layers to the loss)
W1_h (d x C, no bias), W2_h (C x d, bias initialised to 1), d = C // r, r = 8 if C < 80 else 16.

Training runs the H heads as ONE grouped convolution (H groups) over the H scaled
copies of u. The number pruned, m, follows training progress p in [0, 1]
(`dgc_pruned_channels`, set by the layer's `on_training_progress` hook before every
training step, or on every layer of a model by `set_dgc_progress`; kept in the `pruned`
buffer): 0 until p = 1/12, then round(C (1-g) 1.5 (p - 1/12)) until p = 3/4, then
round(C (1-g)). A new layer starts fully pruned (p = 1), the inference setting.

The original implementation convolves the zeroed channels anyway, so it saves
nothing at inference. `fuse()` returns a form that gathers only the C - m kept
channels of each sample and head and convolves those: the same output for about
g times the multiply-accumulates.
"""

from __future__ import annotations

import math

import numpy as np

from ... import creation, functions
from ...autograd import no_grad
from ...tensor import Tensor
from .. import functional as F
from .. import init
from ..layers.conv import check_conv_channels
from ..layers.norm import BatchNorm2d
from ..module import Module, Parameter
from .base import check_dynamic_input
from .hooks import TrainingProgress, register_scalar, scalar_buffer

#: weight of DGC's lasso term on the channel saliencies (docs/layers.md, DGC)
DGC_LASSO_WEIGHT = 1e-5


def dgc_pruned_channels(channels: int, keep: float, progress: float) -> int:
    """Channels to prune per head at training progress p (the DGC schedule)."""
    if progress < 1 / 12:
        return 0
    target = channels * (1 - keep)
    if progress < 3 / 4:
        return int(round(target * 1.5 * (progress - 1 / 12)))
    return int(round(target))


class DGConv2d(Module):
    """DGConv2d(in, out, kernel_size, stride=1, padding=0, heads=4, keep=0.5)."""

    pruned = scalar_buffer("pruned", int)
    extra_loss_weight = DGC_LASSO_WEIGHT

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 heads: int = 4, keep: float = 0.5):
        super().__init__()
        check_conv_channels("DGConv2d", in_channels, out_channels, 1)
        if not isinstance(heads, int) or heads < 1 or in_channels % heads or out_channels % heads:
            raise ValueError(f"DGConv2d: heads ({heads!r}) must be an int >= 1 dividing in_channels ({in_channels}) "
                             f"and out_channels ({out_channels})")
        if not 0 < keep <= 1:
            raise ValueError(f"DGConv2d: keep must be in (0, 1], got {keep}")
        k = F._pair(kernel_size, "kernel_size", "DGConv2d", 1)
        self.in_channels, self.out_channels, self.heads, self.keep = in_channels, out_channels, heads, keep
        self.kernel_size = k
        self.stride = F._pair(stride, "stride", "DGConv2d", 1)
        self.padding = F._pair(padding, "padding", "DGConv2d", 0)
        hidden = max(in_channels // (8 if in_channels < 80 else 16), 1)
        self.bn = BatchNorm2d(in_channels)
        self.weight = Parameter(creation.zeros(heads, out_channels // heads, in_channels, *k))
        self.gate1 = Parameter(creation.zeros(heads, hidden, in_channels))
        self.gate2 = Parameter(creation.zeros(heads, in_channels, hidden))
        self.gate2_bias = Parameter(creation.ones(heads, in_channels))
        init.normal_(self.weight, 0.0, math.sqrt(2.0 / (out_channels // heads * k[0] * k[1])))  # kaiming fan_out
        init.normal_(self.gate1, 0.0, math.sqrt(2.0 / in_channels))  # kaiming fan_in
        init.normal_(self.gate2, 0.0, math.sqrt(2.0 / hidden))
        register_scalar(self, "pruned", dgc_pruned_channels(in_channels, keep, 1.0), np.int64)
        self.lasso: Tensor | None = None

    def saliency(self, u):
        """q (H, N, C) >= 0 from the pooled pre-activated input u."""
        pooled = F.adaptive_avg_pool2d(u, 1).reshape(1, u.shape[0], self.in_channels)
        h = pooled.matmul(self.gate1.permute(0, 2, 1)).relu()
        return (h.matmul(self.gate2.permute(0, 2, 1)) + self.gate2_bias.reshape(self.heads, 1, -1)).relu()

    def keep_mask(self, q) -> np.ndarray:
        """(H, N, C) boolean: False for the `pruned` smallest saliencies of each head and sample."""
        mask = np.ones(q.shape, dtype=bool)
        if self.pruned > 0:
            order = np.argsort(q.numpy(), axis=2, kind="stable")[..., :self.pruned]
            np.put_along_axis(mask, order, False, axis=2)
        return mask

    def forward(self, x):
        check_dynamic_input(type(self).__name__, x, self.in_channels)
        u = self.bn(x).relu()
        q = self.saliency(u)
        self.lasso = q.mean(axis=(1, 2)).sum()
        q = q * Tensor(self.keep_mask(q).astype(x.dtype), device=x.device)
        n, c, h, w = u.shape
        scaled = u.reshape(n, 1, c, h, w) * q.permute(1, 0, 2).reshape(n, self.heads, c, 1, 1)
        y = F.conv2d(scaled.reshape(n, self.heads * c, h, w), self.weight.reshape(-1, c, *self.kernel_size),
                     None, self.stride, self.padding, groups=self.heads)
        return self._interleave(y)

    def on_training_progress(self, progress: TrainingProgress) -> None:
        """Prune as many channels as the schedule says at the run's progress fraction."""
        self.pruned = dgc_pruned_channels(self.in_channels, self.keep, progress.fraction)

    def extra_loss(self) -> Tensor | None:
        """The lasso term of the last forward (weighted by `extra_loss_weight` in nn.extra_loss)."""
        return self.lasso

    def _interleave(self, y):
        """Head-major channels (h, j) -> output channel j*H + h."""
        n, _, h, w = y.shape
        return y.reshape(n, self.heads, -1, h, w).permute(0, 2, 1, 3, 4).reshape(n, self.out_channels, h, w)

    def conv_macs(self, out_shape: tuple, channels: int) -> int:
        return int(np.prod(out_shape)) * channels * self.kernel_size[0] * self.kernel_size[1]

    def macs(self, inputs, out) -> int:
        return self.conv_macs(out.shape, self.in_channels)

    def fuse(self):
        return SparseDGConv2d(self)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, heads={self.heads}, keep={self.keep}, pruned={self.pruned}")


class SparseDGConv2d(Module):
    """Eval-only DGC that convolves only the kept channels of each sample and head.

    Per head h and sample b, the kept channels idx[h, b] (in increasing order, from the
    training form's own mask) and their saliencies q[h, b, idx] go to the backend's
    `gathered_conv2d_forward`: y_h[b] = sum_j q[h, b, idx_j] * conv(u[b, idx_j], W_h[:, idx_j]),
    (C - m) / C of the dense form's multiply-accumulates. On the CPU that is a Numba kernel
    reading the shared weight at the kept channels (no per-sample kernels are built); other
    backends run its generic form (gathered kernels + per-sample convolution).
    """

    def __init__(self, layer: DGConv2d):
        super().__init__()
        object.__setattr__(self, "_layer", layer)
        self.bn = layer.bn
        for name in ("weight", "gate1", "gate2", "gate2_bias"):
            setattr(self, name, getattr(layer, name))
        self.training = False

    def forward(self, x):
        layer = self._layer
        if self.training:
            raise RuntimeError("SparseDGConv2d is inference-only: keep it in eval mode (train the DGConv2d)")
        check_dynamic_input(type(self).__name__, x, layer.in_channels)
        with no_grad():
            u = layer.bn(x).relu()
            q = layer.saliency(u)                                                    # (H, N, C)
            kept = layer.in_channels - layer.pruned
            # per head and sample, the kept channel indices in increasing order: (H, N, kept);
            # taken from the same mask as training, so ties are broken the same way
            idx = np.argsort(~layer.keep_mask(q), axis=2, kind="stable")[..., :kept]
            heads, samples = np.arange(layer.heads)[:, None, None], np.arange(x.shape[0])[None, :, None]
            scale = q[heads, samples, idx]                                           # (H, N, kept)
            backend = u._backend
            y = backend.gathered_conv2d_forward(u.data, layer.weight.data, idx, scale.data, layer.stride,
                                                layer.padding)                       # (N, C', H', W') head-major
            return layer._interleave(Tensor._from_array(y, backend))

    def macs(self, inputs, out) -> int:
        layer = self._layer
        return layer.conv_macs(out.shape, layer.in_channels - layer.pruned)

    def extra_repr(self) -> str:
        return "sparse " + self._layer.extra_repr()


def set_dgc_progress(model: Module, progress: float) -> None:
    """Set every DGConv2d's pruned-channel count for training progress p in [0, 1]."""
    for m in model.modules():
        if isinstance(m, DGConv2d):
            m.pruned = dgc_pruned_channels(m.in_channels, m.keep, progress)


def dgc_lasso(model: Module):
    """Sum of the lasso terms of the last forward of every DGConv2d (None if there are none)."""
    terms = [m.lasso for m in model.modules() if isinstance(m, DGConv2d) and m.lasso is not None]
    return functions.stack(terms).sum() if terms else None


def build_dgc(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
              groups: int = 1, **options) -> Module:
    """The "dgc" conv type's builder: DGConv2d where `heads` divides both channel counts, else a static conv.

    AlexNet's 3-channel first conv stays static; grouped/depthwise positions (MobileNetV2) are refused.
    """
    from ..layers.conv import Conv2d

    if groups != 1:
        raise ValueError("conv='dgc' applies to dense convolutions; this model's dynamic convolutions are "
                         "grouped/depthwise (use it with resnet18 or alexnet)")
    heads = options.get("heads", 4)
    if in_channels % heads or out_channels % heads:
        return Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
    return DGConv2d(in_channels, out_channels, kernel_size, stride, padding, **options)
