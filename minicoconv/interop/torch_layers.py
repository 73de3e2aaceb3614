"""The dynamic convolutions written out in PyTorch: the bench's reference and `to_torch`'s target.

Imported only when PyTorch is installed. Same semantics as minicoconv's layers
(docs/layers.md), in the formulations PyTorch code usually uses:

- CondConv / DY-CNN: aggregate one kernel per sample (r @ W_flat, (N, n) x (n, C'*C/g*k*k)),
  then ONE grouped convolution of the batch folded into channels: x (1, N*C, H, W) with
  N*C' kernels and N*g groups. Attribute names equal minicoconv's (`weight`, `bias`,
  `routing`, `fc1`, `fc2`), so their state_dicts have the same keys.
- CoConv training form: n convolutions `convs[i]` and n BatchNorms `bns[i]`,
  y = sum_i r_i * BN_i(conv_i(x)) (output attention), or y = sum_i BN_i(conv(x, r_i * W_i))
  with r_i (N, C) scaling W_i's input channels (input attention, paper Table 5).
  Fused inference (paper eq. 3, `fused=True` in eval mode, output attention): the
  per-sample aggregated kernel sum_i (r_i a_i) W_i, as one grouped convolution like CondConv.
  (minicoconv stacks the n experts as one weight and one BN; interop/weights.py maps the two.)
- ODConv and DGC: see torch_beyond.py.
Initialisation is PyTorch's default (to_torch / load_state_dict bring the weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: CoConv's softmax routing: softmax over experts of this temperature times the logits
COCONV_SOFTMAX_TEMPERATURE = 16.0


def _per_sample_conv(x, kernels, stride, padding, groups):
    """y_b = conv(x_b, kernels_b): x (N, C, H, W), kernels (N, C', C/g, k, k), as one grouped conv."""
    n, c, h, w = x.shape
    c_out = kernels.shape[1]
    y = F.conv2d(x.reshape(1, n * c, h, w), kernels.reshape(n * c_out, *kernels.shape[2:]), None, stride,
                 padding, 1, n * groups)
    return y.reshape(n, c_out, *y.shape[2:])


class _Experts(nn.Module):
    """A bank of n expert kernels `weight` (n, C', C/g, k, k) and optional `bias` (n, C')."""

    def __init__(self, cin, cout, k, stride, padding, groups, experts, bias=False):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = cin, cout, k
        self.stride, self.padding, self.groups, self.experts = stride, padding, groups, experts
        self.weight = nn.Parameter(torch.empty(experts, cout, cin // groups, k, k))
        nn.init.kaiming_uniform_(self.weight.view(experts * cout, -1, k, k), a=5 ** 0.5)
        self.bias = nn.Parameter(torch.zeros(experts, cout)) if bias else None

    def aggregated_conv(self, x, r):
        """conv(x_b, sum_i r_bi W_i) + sum_i r_bi bias_i with r (N, n)."""
        kernels = (r @ self.weight.reshape(self.experts, -1)).reshape(x.shape[0], *self.weight.shape[1:])
        y = _per_sample_conv(x, kernels, self.stride, self.padding, self.groups)
        return y if self.bias is None else y + (r @ self.bias)[:, :, None, None]


class TorchCondConv2d(_Experts):
    """r = sigmoid(Linear(GAP(x))), y_b = conv(x_b, sum_i r_bi W_i)."""

    def __init__(self, cin, cout, k, stride=1, padding=0, groups=1, experts=4, bias=False):
        super().__init__(cin, cout, k, stride, padding, groups, experts, bias)
        self.routing = nn.Linear(cin, experts)

    def forward(self, x):
        r = torch.sigmoid(self.routing(x.mean((2, 3))))
        return self.aggregated_conv(x, r)


class TorchDyConv2d(_Experts):
    """r = softmax(Linear(ReLU(Linear(GAP(x)))) / T), y_b = conv(x_b, sum_i r_bi W_i)."""

    def __init__(self, cin, cout, k, stride=1, padding=0, groups=1, experts=4, bias=False, reduction=16,
                 temperature=1.0):
        super().__init__(cin, cout, k, stride, padding, groups, experts, bias)
        hidden = max(cin // reduction, 16)
        self.fc1, self.fc2 = nn.Linear(cin, hidden), nn.Linear(hidden, experts)
        self.temperature = temperature

    def forward(self, x):
        r = torch.softmax(self.fc2(F.relu(self.fc1(x.mean((2, 3))))) / self.temperature, dim=1)
        return self.aggregated_conv(x, r)


class TorchCoConvRouting(nn.Module):
    """[A1 expanded, A3] (multi-scale) or A1 -> 1x1 conv, ReLU -> depthwise 3x3 (1x1), ReLU -> 1x1 conv
    -> sigmoid, or softmax over experts of 16 * logits: r (N, n, width)."""

    def __init__(self, cin, experts, width, reduction=16, multiscale=True, activation="sigmoid"):
        super().__init__()
        hidden = max(cin // reduction, 16)
        self.experts, self.width, self.multiscale, self.activation = experts, width, multiscale, activation
        self.reduce = nn.Conv2d(2 * cin if multiscale else cin, hidden, 1, bias=False)
        self.spatial = nn.Conv2d(hidden, hidden, 3 if multiscale else 1, groups=hidden, bias=False)
        self.expand = nn.Conv2d(hidden, experts * width, 1, bias=False)

    def forward(self, x):
        a = F.adaptive_avg_pool2d(x, 1)
        if self.multiscale:
            a = torch.cat([a.expand(-1, -1, 3, 3), F.adaptive_avg_pool2d(x, 3)], dim=1)
        h = F.relu(self.spatial(F.relu(self.reduce(a))))
        logits = self.expand(h).reshape(x.shape[0], self.experts, self.width)
        if self.activation == "sigmoid":
            return torch.sigmoid(logits)
        return torch.softmax(COCONV_SOFTMAX_TEMPERATURE * logits, dim=1)


class TorchCoConv2d(nn.Module):
    """Training: sum_i r_i * BN_i(conv_i(x)) with n convs and n BNs. Eval with `fused`: paper eq. 3."""

    def __init__(self, cin, cout, k, stride=1, padding=0, groups=1, experts=4, fused=True, bias=False,
                 activation="sigmoid", attention="output", multiscale=True, expert_bn=True, reduction=16):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = cin, cout, k
        self.stride, self.padding, self.groups, self.experts, self.fused = stride, padding, groups, experts, fused
        self.attention = attention
        self.convs = nn.ModuleList(nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=bias)
                                   for _ in range(experts))
        self.bns = nn.ModuleList(nn.BatchNorm2d(cout) for _ in range(experts)) if expert_bn else None
        width = cout if attention == "output" else cin
        self.routing = TorchCoConvRouting(cin, experts, width, reduction, multiscale, activation)

    def forward(self, x):
        r = self.routing(x)  # (N, n, C') or (N, n, C)
        if self.fused and not self.training and self.attention == "output":
            return self._fused_forward(x, r)
        y = 0
        for i, conv in enumerate(self.convs):
            z = conv(x) if self.attention == "output" else self._input_scaled_conv(x, conv, r[:, i])
            if self.bns is not None:
                z = self.bns[i](z)
            y = y + (r[:, i, :, None, None] * z if self.attention == "output" else z)
        return y

    def _input_scaled_conv(self, x, conv, r):
        """conv(x_b, W scaled by r_b on its input channels) + bias, r (N, C): one grouped conv."""
        n, g = x.shape[0], self.groups
        cout, cin_g = conv.weight.shape[:2]
        scale = r.reshape(n, g, 1, cin_g).expand(n, g, cout // g, cin_g).reshape(n, cout, cin_g, 1, 1)
        y = _per_sample_conv(x, conv.weight * scale, self.stride, self.padding, g)
        return y if conv.bias is None else y + conv.bias[:, None, None]

    def _fused_forward(self, x, r):
        w = torch.stack([conv.weight for conv in self.convs])  # (n, C', C/g, k, k)
        a, c = torch.ones(w.shape[:2], dtype=w.dtype, device=w.device), 0.0
        if self.bns is not None:
            a = torch.stack([bn.weight / torch.sqrt(bn.running_var + bn.eps) for bn in self.bns])  # (n, C')
            c = torch.stack([bn.bias for bn in self.bns]) - a * torch.stack([bn.running_mean for bn in self.bns])
        if self.convs[0].bias is not None:
            c = c + a * torch.stack([conv.bias for conv in self.convs])
        kernels = torch.einsum("bnc,nckij->bckij", r * a, w)
        y = _per_sample_conv(x, kernels, self.stride, self.padding, self.groups)
        return y + (r * c).sum(1)[:, :, None, None] if torch.is_tensor(c) else y


DYNAMIC = {"condconv": TorchCondConv2d, "dycnn": TorchDyConv2d, "coconv": TorchCoConv2d}


def conv_factory(kind="static", experts=4, **options):
    """make(cin, cout, k, stride=1, padding=0, groups=1), as minicoconv.models.conv_factory.

    `options` go to the layer (CoConv's activation, attention, ...; DGC's heads and keep).
    ODConv and DGC come from torch_beyond.py.
    """
    if kind in ("odconv", "dgc"):
        from . import torch_beyond

        return (torch_beyond.odconv_factory(experts, **options) if kind == "odconv"
                else torch_beyond.dgc_factory(**options))
    if kind == "static":
        return lambda cin, cout, k, stride=1, padding=0, groups=1: nn.Conv2d(
            cin, cout, k, stride, padding, groups=groups, bias=False)
    cls = DYNAMIC[kind]
    return lambda cin, cout, k, stride=1, padding=0, groups=1: cls(cin, cout, k, stride, padding, groups,
                                                                   experts=experts, **options)
