"""ODConv and DGC (docs/layers.md) written out in PyTorch: the bench's reference and `to_torch`'s target.

Imported by `torch_layers.conv_factory` when PyTorch is installed. Attribute names equal
minicoconv's, so a minicoconv `state_dict()` loads into them key for key.

- ODConv: the attention branch as 1x1 convs; the per-sample kernel
  alpha_s * (alpha_w @ W_flat) (one matmul: the spatial attention commutes with the
  sum over kernels), applied to alpha_c * x as ONE grouped convolution of the batch
  folded into channels (like CondConv's reference), output scaled by alpha_f. Its
  inference is the same forward in eval mode.
- DGC: the original implementation's dense form: pre-activation BN + ReLU, per-head
  saliency, the smallest `pruned` saliencies zeroed (topk on a detached copy), the H
  heads as one grouped convolution over H scaled copies of the input, heads
  interleaved. It convolves the zeroed channels too (at inference as well).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .torch_layers import _per_sample_conv


class TorchODConv2d(nn.Module):
    """y_b = alpha_f[b] * conv(alpha_c[b] * x_b, alpha_s[b] * sum_i alpha_w[b, i] W_i)."""

    def __init__(self, cin, cout, k, stride=1, padding=0, groups=1, experts=4, reduction=1 / 16, temperature=1.0):
        super().__init__()
        width = max(int(cin * reduction), 16)
        self.in_channels, self.out_channels, self.kernel_size = cin, cout, k
        self.stride, self.padding, self.groups, self.experts = stride, padding, groups, experts
        self.k, self.temperature = k, temperature
        self.weight = nn.Parameter(torch.empty(experts, cout, cin // groups, k, k))
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / (cout * k * k)))
        self.fc = nn.Conv2d(cin, width, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.channel_head = nn.Conv2d(width, cin, 1)
        self.filter_head = None if cin == groups == cout else nn.Conv2d(width, cout, 1)
        self.spatial_head = None if k == 1 else nn.Conv2d(width, k * k, 1)
        self.kernel_head = None if experts == 1 else nn.Conv2d(width, experts, 1)

    def forward(self, x):
        n = x.shape[0]
        h = F.relu(self.bn(self.fc(F.adaptive_avg_pool2d(x, 1))))

        def head(conv):
            return (conv(h) / self.temperature).reshape(n, -1)

        w = self.weight
        if self.kernel_head is None:
            kernels = w.expand(n, *w.shape[1:])
        else:
            alpha_w = torch.softmax(head(self.kernel_head), dim=1)
            kernels = (alpha_w @ w.reshape(self.experts, -1)).reshape(n, *w.shape[1:])
        if self.spatial_head is not None:
            kernels = kernels * torch.sigmoid(head(self.spatial_head)).reshape(n, 1, 1, self.k, self.k)
        alpha_c = torch.sigmoid(head(self.channel_head))
        y = _per_sample_conv(x * alpha_c[:, :, None, None], kernels, self.stride, self.padding, self.groups)
        if self.filter_head is not None:
            y = y * torch.sigmoid(head(self.filter_head))[:, :, None, None]
        return y


class TorchDGConv2d(nn.Module):
    """DGC's dense form: H heads, each convolving ReLU(BN(x)) scaled by its pruned saliencies."""

    def __init__(self, cin, cout, k, stride=1, padding=0, groups=1, heads=4, keep=0.5):
        super().__init__()
        if groups != 1:
            raise ValueError("TorchDGConv2d: dense convolutions only")
        hidden = max(cin // (8 if cin < 80 else 16), 1)
        self.in_channels, self.out_channels, self.kernel_size = cin, cout, k
        self.stride, self.padding, self.heads, self.cout, self.keep = stride, padding, heads, cout, keep
        self.pruned = int(round(cin * (1 - keep)))
        self.bn = nn.BatchNorm2d(cin)
        self.weight = nn.Parameter(torch.empty(heads, cout // heads, cin, k, k))
        self.gate1 = nn.Parameter(torch.empty(heads, hidden, cin))
        self.gate2 = nn.Parameter(torch.empty(heads, cin, hidden))
        self.gate2_bias = nn.Parameter(torch.ones(heads, cin))
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / (cout // heads * k * k)))
        nn.init.normal_(self.gate1, 0.0, math.sqrt(2.0 / cin))
        nn.init.normal_(self.gate2, 0.0, math.sqrt(2.0 / hidden))
        self.lasso = None

    def forward(self, x):
        u = F.relu(self.bn(x))
        n, c, h, w = u.shape
        pooled = u.mean((2, 3))                                                    # (N, C)
        g = F.relu(torch.einsum("nc,hdc->hnd", pooled, self.gate1))
        q = F.relu(torch.einsum("hnd,hcd->hnc", g, self.gate2) + self.gate2_bias[:, None])  # (H, N, C)
        self.lasso = q.mean((1, 2)).sum()
        if self.pruned > 0:
            smallest = q.detach().topk(self.pruned, dim=2, largest=False).indices
            q = q * torch.ones_like(q).scatter_(2, smallest, 0.0)
        scaled = u[:, None] * q.permute(1, 0, 2)[..., None, None]                  # (N, H, C, h, w)
        y = F.conv2d(scaled.reshape(n, self.heads * c, h, w), self.weight.reshape(-1, c, *self.weight.shape[3:]),
                     None, self.stride, self.padding, 1, self.heads)
        return y.reshape(n, self.heads, -1, *y.shape[2:]).transpose(1, 2).reshape(n, self.cout, *y.shape[2:])


def odconv_factory(experts=4, **options):
    """make(cin, cout, k, stride=1, padding=0, groups=1) -> TorchODConv2d (options: reduction, temperature)."""
    return lambda cin, cout, k, stride=1, padding=0, groups=1: TorchODConv2d(cin, cout, k, stride, padding, groups,
                                                                             experts=experts, **options)


def dgc_factory(heads=4, keep=0.5):
    """As minicoconv's: a static conv where the heads do not divide the channels; replaces ResNet shortcuts."""
    def make(cin, cout, k, stride=1, padding=0, groups=1):
        if groups != 1:
            raise ValueError("conv='dgc' applies to dense convolutions only")
        if cin % heads or cout % heads:
            return nn.Conv2d(cin, cout, k, stride, padding, bias=False)
        return TorchDGConv2d(cin, cout, k, stride, padding, heads=heads, keep=keep)
    make.replaces_shortcuts = True
    return make


def dgc_lasso(model):
    """Sum of the lasso terms of the last forward of every TorchDGConv2d (0 if there are none)."""
    return sum(m.lasso for m in model.modules() if isinstance(m, TorchDGConv2d) and m.lasso is not None)
