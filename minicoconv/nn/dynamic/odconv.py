"""ODConv, omni-dimensional dynamic convolution (Li, Zhou, Yao, ICLR 2022).

Attention branch, A = max(int(C * reduction), 16), temperature T dividing every head's logits:
    h = ReLU(BN_A(conv1x1_{C->A}(GAP(x))))                  (no bias)
    alpha_c = sigmoid(head_{A->C}(h) / T)      input channels    (N, C)
    alpha_f = sigmoid(head_{A->C'}(h) / T)     output channels   (N, C')   dropped (= 1) for depthwise
    alpha_s = sigmoid(head_{A->k*k}(h) / T)    kernel positions  (N, k*k)  dropped for k = 1
    alpha_w = softmax(head_{A->n}(h) / T)      kernels           (N, n)    dropped for n = 1
Output per sample b:
    y_b = alpha_f[b] * conv(alpha_c[b] * x_b, alpha_s[b] * sum_i alpha_w[b, i] W_i)
Training and the fused inference form both use the chunked per-sample convolution
`F.dynamic_conv2d` (with its spatial factor), alpha_c and alpha_f scaling the input and
output channels; `per_sample_kernels` gives the fully folded kernel of the formula.
"""

from __future__ import annotations

import math

from ... import creation
from ...autograd import no_grad
from .. import functional as F
from .. import init
from ..layers.conv import Conv2d
from ..layers.norm import BatchNorm2d
from ..module import Module
from .base import ExpertConv2d
from .hooks import TrainingProgress, register_scalar, scalar_buffer


class ODConv2d(ExpertConv2d):
    """ODConv2d(in, out, kernel_size, stride=1, padding=0, groups=1, experts=4, reduction=1/16, temperature=1.0,
    anneal=False); with anneal=True training follows `odconv_temperature` (via on_training_progress)."""

    min_training_batch = 2  # the attention BatchNorm sees (N, A, 1, 1): one value per channel per image
    temperature = scalar_buffer("temperature")
    routing_activation = "softmax"  # of the kernel attention alpha_w, the one `routing_gates` returns

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, bias: bool = False, experts: int = 4, reduction: float = 1 / 16,
                 temperature: float = 1.0, anneal: bool = False):
        if bias:
            raise ValueError("ODConv2d: has no bias (the attentions scale the output)")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups, False, experts)
        if not 0 < reduction <= 1:
            raise ValueError(f"ODConv2d: reduction must be in (0, 1], got {reduction}")
        if temperature <= 0:
            raise ValueError(f"ODConv2d: temperature must be > 0, got {temperature}")
        width = max(int(in_channels * reduction), 16)
        kh, kw = self.kernel_size
        self.depthwise = in_channels == groups == out_channels
        register_scalar(self, "temperature", float(temperature))
        self.anneal = bool(anneal)
        self.fc = Conv2d(in_channels, width, 1, bias=False)
        self.bn = BatchNorm2d(width)
        self.channel_head = Conv2d(width, in_channels, 1)
        self.filter_head = None if self.depthwise else Conv2d(width, out_channels, 1)
        self.spatial_head = None if kh * kw == 1 else Conv2d(width, kh * kw, 1)
        self.kernel_head = None if experts == 1 else Conv2d(width, experts, 1)
        self.reset_odconv_parameters()

    def reset_odconv_parameters(self) -> None:
        """ODConv's own init: kernels and heads kaiming-normal (fan_out), head biases 0."""
        n, co, _, kh, kw = self.weight.shape
        init.normal_(self.weight, 0.0, math.sqrt(2.0 / (co * kh * kw)))
        for head in (self.fc, self.channel_head, self.filter_head, self.spatial_head, self.kernel_head):
            if head is not None:
                init.kaiming_normal_(head.weight, mode="fan_out", nonlinearity="relu")
                if head.bias is not None:
                    init.zeros_(head.bias)

    def attentions(self, x):
        """(alpha_c (N, C), alpha_f (N, C') or None, alpha_s (N, k*k) or None, alpha_w (N, n))."""
        n_batch = x.shape[0]
        if self.training and n_batch < 2:
            raise ValueError("ODConv2d: training needs a batch of at least 2 (the attention BatchNorm normalises "
                             f"over the batch of pooled features), got batch size {n_batch}")
        h = self.bn(self.fc(F.adaptive_avg_pool2d(x, 1))).relu()
        t = self.temperature

        def head(conv, width):
            return (conv(h) / t).reshape(n_batch, width)

        alpha_c = head(self.channel_head, self.in_channels).sigmoid()
        alpha_f = None if self.filter_head is None else head(self.filter_head, self.out_channels).sigmoid()
        kk = self.kernel_size[0] * self.kernel_size[1]
        alpha_s = None if self.spatial_head is None else head(self.spatial_head, kk).sigmoid()
        if self.kernel_head is None:
            alpha_w = creation.ones(n_batch, 1, dtype=x.dtype, device=x.device)
        else:
            alpha_w = head(self.kernel_head, self.experts).softmax(axis=1)
        return alpha_c, alpha_f, alpha_s, alpha_w

    routing_weights = attentions

    def routing_gates(self, x):
        """The expert gates alone, alpha_w (N, n) (what `minicoconv inspect` reports)."""
        return self.attentions(x)[3]

    def on_training_progress(self, progress: TrainingProgress) -> None:
        """With anneal=True: T = 1 + 29 (1 - t / (10 epochs of steps)), t = the step about to run (from 1)."""
        if self.anneal:
            self.temperature = odconv_temperature(progress.global_step + 1, progress.steps_per_epoch)

    def forward(self, x):
        self.check_input(x)
        alpha_c, alpha_f, alpha_s, alpha_w = self.attentions(x)
        n_batch, c = x.shape[:2]
        if self.depthwise:  # alpha_c scales whole planes, each read by one kernel: fold it into the mixing
            coef = alpha_w.reshape(n_batch, -1, 1) * alpha_c.reshape(n_batch, 1, c)  # weights (N, n, C)
            return F.dynamic_conv2d(x, self.weight, coef, self.stride, self.padding, self.groups, spatial=alpha_s)
        y = F.dynamic_conv2d(x * alpha_c.reshape(n_batch, c, 1, 1), self.weight, alpha_w, self.stride,
                             self.padding, self.groups, spatial=alpha_s)
        if alpha_f is not None:
            y = y * alpha_f.reshape(n_batch, self.out_channels, 1, 1)
        return y

    def per_sample_kernels(self, alpha_c, alpha_f, alpha_s, alpha_w):
        """K_b = alpha_f[b] (out) * alpha_c[b] (in) * alpha_s[b] (positions) * sum_i alpha_w[b, i] W_i."""
        n, co, ci, kh, kw = self.weight.shape
        b, g = alpha_w.shape[0], self.groups
        k = (alpha_w @ self.weight.reshape(n, -1)).reshape(b, co, ci, kh, kw)
        if alpha_s is not None:
            k = k * alpha_s.reshape(b, 1, 1, kh, kw)
        a_in = alpha_c.reshape(b, g, 1, ci).expand(b, g, co // g, ci).reshape(b, co, ci, 1, 1)
        k = k * a_in
        if alpha_f is not None:
            k = k * alpha_f.reshape(b, co, 1, 1, 1)
        return k

    def macs(self, inputs, out) -> int:
        return self.conv_macs(out.shape) + self.aggregation_macs(out.shape[0])

    def fuse(self):
        return FusedODConv2d(self)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", temperature={self.temperature:g}"


class FusedODConv2d(Module):
    """Eval-only ODConv: one aggregated kernel per sample, K_b = alpha_s[b] * sum_i alpha_w[b, i] W_i.

    The channel attentions are applied to the input and the output instead of being
    folded into K_b: conv(alpha_c * x, K) * alpha_f equals conv(x, alpha_f * alpha_c * K)
    exactly (a convolution is linear in each input and each output channel), and
    scaling the maps costs N*C*H*W and N*C'*H'*W' multiplies where folding costs two
    more passes over the N*C'*C/g*k*k kernel entries (2.4M per sample at ResNet18's
    stage 4, against 8K map entries). `ODConv2d.per_sample_kernels` is the literal,
    fully folded kernel, kept as the reference the tests check this against.
    """

    def __init__(self, layer: ODConv2d):
        super().__init__()
        self.keep_reference("_layer", layer)  # not registered: its children and weight are, below
        for name, m in layer._modules.items():
            setattr(self, name, m)
        self.weight = layer.weight
        self.training = False

    def forward(self, x):
        if self.training or self._layer.training:
            raise RuntimeError("FusedODConv2d is inference-only: keep it and its ODConv2d in eval mode")
        with no_grad():
            return self._layer.forward(x)

    def macs(self, inputs, out) -> int:
        return self._layer.macs(inputs, out)

    def extra_repr(self) -> str:
        return "fused " + self._layer.extra_repr()


def odconv_temperature(iteration: int, iters_per_epoch: int, warm_epochs: int = 10) -> float:
    """The original training's schedule: T = 1 + max(0, 29 (1 - t / (warm_epochs * iters_per_epoch))), t from 1."""
    return 1.0 + max(0.0, 29.0 * (1.0 - iteration / (warm_epochs * iters_per_epoch)))


def set_odconv_temperature(model: Module, temperature: float) -> None:
    """Set the temperature of every ODConv2d in `model`."""
    for m in model.modules():
        if isinstance(m, ODConv2d):
            m.temperature = float(temperature)
