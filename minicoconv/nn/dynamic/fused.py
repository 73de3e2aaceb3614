"""Fused inference: every dynamic convolution as one aggregated kernel per sample.

CoConv (paper eq. 3). In eval mode each expert BN is affine, BN_i(z) = a_i z + c_i, so
    y_b = sum_i r_bi * (a_i * conv(x_b, W_i) + c_i)
        = conv(x_b, sum_i (r_bi * a_i) W_i) + sum_i r_bi * c_i
(products with r and a per output channel). With input attention r_bi scales
the input channels of W_i instead, and the bias is sum_i c_i.

`nn.fuse(model)` returns a copy of an eval-mode model that shares every
parameter and buffer with it, in which each dynamic convolution is replaced by
its fused form. With output attention the kernel mixture is the dynamic
convolution op with per-channel weights r_bi * a_i (ops/dynamic_conv.py: small
maps in one pass that never holds a whole kernel, larger ones in cache-sized
chunks). The per-sample kernels cost N * C' * C/g * k * k floats, so otherwise
the batch is processed in chunks whose kernels fit in `MEMORY_BUDGET_BYTES`.
"""

from __future__ import annotations

import numpy as np

from ... import functions
from ...autograd import no_grad
from ...ops.dynamic_conv import DynamicConv2d as DynamicConv2dOp
from ...ops.dynamic_conv import uses_small_map_path
from ...tensor import Tensor
from .. import functional as F
from ..module import Module

#: bytes of per-sample kernels held at once by fused inference
#: (dynamic_conv2d has its own: ops.dynamic_conv.KERNEL_BUDGET_BYTES)
MEMORY_BUDGET_BYTES = 256 * 2**20


def chunk_size(per_sample_bytes: int, batch: int, budget: int | None = None) -> int:
    """Samples per chunk so that per-sample kernels stay within `budget` bytes (at least 1).

    `budget` defaults to MEMORY_BUDGET_BYTES as it is at call time (so it can be changed).
    """
    budget = MEMORY_BUDGET_BYTES if budget is None else budget
    return max(1, min(batch, budget // max(per_sample_bytes, 1)))


class FusedCoConv2d(Module):
    """Eval-only form of a CoConv2d, sharing its weights, routing and expert BN."""

    def __init__(self, layer):
        super().__init__()
        self.keep_reference("_layer", layer)  # not registered: its tensors are registered below
        self.weight = layer.weight
        if layer.bias is not None:
            self.bias = layer.bias
        self.routing = layer.routing
        if layer.bn is not None:
            self.bn = layer.bn
        self.training = False

    def forward(self, x):
        layer = self._layer
        if self.training:
            raise RuntimeError("FusedCoConv2d is inference-only: keep it in eval mode (train the CoConv2d)")
        layer.check_input(x)
        with no_grad():
            r = layer.routing(x)
            a, c = (Tensor(v, device=x.device) for v in layer.expert_affine())
            n_batch = x.shape[0]
            output = layer.attention == "output"
            args = (layer.stride, layer.padding, (1, 1), layer.groups)
            if output and uses_small_map_path(x.shape, layer.weight.shape, *args):
                step = n_batch  # that path never holds a whole kernel
            else:
                step = chunk_size(int(np.prod(layer.weight.shape[1:])) * x.dtype.itemsize, n_batch)
            outs = []
            for s in range(0, n_batch, step):
                xb, rb = x[s:s + step], r[s:s + step]
                if output:  # K_b[c'] = sum_i (r_bi * a_i)[c'] W_i[c']: the dynamic conv with per-channel weights
                    y = DynamicConv2dOp.apply(xb, layer.weight, rb * a, None, *args)
                    bias = (rb * c).sum(axis=1)
                else:
                    kernels = self._input_attention_kernels(rb, a)
                    y = F.per_sample_conv2d(xb, kernels, layer.stride, layer.padding, layer.groups)
                    bias = c.sum(axis=0).expand(xb.shape[0], layer.out_channels)
                outs.append(y + bias.reshape(*bias.shape, 1, 1))
            return outs[0] if len(outs) == 1 else functions.cat(outs, axis=0)

    def _input_attention_kernels(self, r, a):
        """K_b[c', j] = sum_i a_i[c'] r_bi[grp(c') * C/g + j] W_i[c', j]  ->  (B, C', C/g, k, k)."""
        layer = self._layer
        n, co, ci, kh, kw = layer.weight.shape
        g, batch = layer.groups, r.shape[0]
        scaled = layer.weight * a.reshape(n, co, 1, 1, 1)
        r_out = r.reshape(batch, n, g, 1, ci).expand(batch, n, g, co // g, ci).reshape(batch, n, co, ci, 1, 1)
        return (r_out * scaled).sum(axis=1)

    def macs(self, inputs, out) -> int:
        layer = self._layer
        return layer.conv_macs(out.shape) + layer.aggregation_macs(out.shape[0])

    def extra_repr(self) -> str:
        return "fused " + self._layer.extra_repr()


def fuse(model: Module) -> Module:
    """An eval-only copy of `model` with every dynamic convolution in its fused form.

    Parameters and buffers are shared with `model`, not copied. `model` must be
    in eval mode (the fused form has no batch statistics to train with).
    """
    if model.training:
        raise RuntimeError("fuse: the model is in training mode; call model.eval() first "
                           "(the fused form is inference-only)")
    if hasattr(model, "fuse") and callable(model.fuse):
        return model.fuse()
    clone = model.shallow_copy()
    for name, child in model._modules.items():
        clone.replace_child(name, fuse(child) if child is not None else None)
    return clone
