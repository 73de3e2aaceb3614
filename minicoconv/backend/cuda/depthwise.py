"""Direct depthwise convolution kernels (Cin/groups == 1), no im2col.

Output channel co = c*M + m reads only input channel c = co // M (M = Cout / Cin):

    y[n, co, oh, ow] = bias[co] + sum_{i,j} w[co, 0, i, j] * x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]

- forward: one thread per output element, looping over the kh*kw taps;
- dx: one thread per input element, gathering gy over the M output channels and the
  taps that read it (`tap_output`), so each thread writes only its own element;
- dw: one block per weight element (co, i, j): its N*OH*OW products gy * x are
  shared among the block's threads and added up with `block_sum` (shared memory).
Sums are accumulated in float64.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from . import device as dev
from .indexing import tap_output
from .reduce import block_sum

_tap = tap_output.device
THREADS = dev.THREADS


@cuda.jit
def _forward_kernel(x, w, bias, has_bias, sh, sw, ph, pw, dh, dw, y):
    n_chan, height, width = x.shape[1], x.shape[2], x.shape[3]
    n_out, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    mult = n_out // n_chan
    out_h, out_w = y.shape[2], y.shape[3]
    for t in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        ow = t % out_w
        oh = (t // out_w) % out_h
        co = (t // (out_w * out_h)) % n_out
        n = t // (out_w * out_h * n_out)
        c = co // mult
        acc = bias[co] if has_bias else 0.0
        for i in range(kh):
            r = oh * sh - ph + i * dh
            if 0 <= r < height:
                for j in range(kw):
                    s = ow * sw - pw + j * dw
                    if 0 <= s < width:
                        acc += w[co, 0, i, j] * x[n, c, r, s]
        y[n, co, oh, ow] = acc


@cuda.jit
def _input_grad_kernel(gy, w, sh, sw, ph, pw, dh, dw, dx):
    n_chan, height, width = dx.shape[1], dx.shape[2], dx.shape[3]
    n_out, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    mult = n_out // n_chan
    out_h, out_w = gy.shape[2], gy.shape[3]
    for t in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        s = t % width
        r = (t // width) % height
        c = (t // (width * height)) % n_chan
        n = t // (width * height * n_chan)
        acc = 0.0
        for co in range(c * mult, (c + 1) * mult):
            for i in range(kh):
                oh = _tap(r, ph, i, dh, sh, out_h)
                if oh >= 0:
                    for j in range(kw):
                        ow = _tap(s, pw, j, dw, sw, out_w)
                        if ow >= 0:
                            acc += w[co, 0, i, j] * gy[n, co, oh, ow]
        dx[n, c, r, s] = acc


@cuda.jit
def _weight_grad_kernel(gy, x, sh, sw, ph, pw, dh, dw, dwt):
    partial = cuda.shared.array(THREADS, np.float64)
    n_batch, n_chan, height, width = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    n_out, kh, kw = dwt.shape[0], dwt.shape[2], dwt.shape[3]
    mult = n_out // n_chan
    out_h, out_w = gy.shape[2], gy.shape[3]
    n_terms = n_batch * out_h * out_w
    for e in range(cuda.blockIdx.x, n_out * kh * kw, cuda.gridDim.x):
        j = e % kw
        i = (e // kw) % kh
        co = e // (kw * kh)
        c = co // mult
        acc = 0.0
        for q in range(cuda.threadIdx.x, n_terms, THREADS):
            ow = q % out_w
            oh = (q // out_w) % out_h
            n = q // (out_w * out_h)
            r = oh * sh - ph + i * dh
            s = ow * sw - pw + j * dw
            if 0 <= r < height and 0 <= s < width:
                acc += gy[n, co, oh, ow] * x[n, c, r, s]
        total = block_sum(partial, acc)
        if cuda.threadIdx.x == 0:
            dwt[co, 0, i, j] = total


def depthwise_forward(x, w, bias, geom, y) -> None:
    """y = depthwise conv of x with w (+ bias); y (N, Cout, OH, OW) is overwritten."""
    has_bias = bias is not None
    dev.launch(_forward_kernel, y.size, x, w, bias if has_bias else dev.placeholder(x.dtype), has_bias,
               *geom.args[2:8], y)


def depthwise_backward(gy, x, w, geom, dx, dw) -> None:
    """Overwrite dx (like x) and/or dw (like w), whichever is not None."""
    if dx is not None:
        dev.launch(_input_grad_kernel, dx.size, gy, w, *geom.args[2:8], dx)
    if dw is not None:
        dev.launch(_weight_grad_kernel, dw.size, gy, x, *geom.args[2:8], dw, items_per_block=1)
