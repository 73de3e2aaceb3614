"""im2col and col2im on the GPU: the layout passes around the convolution GEMMs.

For a block of nb samples starting at n0, the columns of a k x k convolution are

    cols[b*s_b + k*s_k + p] = x[n0 + b, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]   (0 in the padding)

with k = (c*kh + i)*kw + j < K = C*kh*kw and p = oh*OW + ow < L = OH*OW. The strides
(s_b, s_k) choose the layout the GEMM that follows wants: (K*L, L) is per-sample
(nb, K, L), (L, nb*L) is (K, nb, L) with all samples side by side.

im2col: one thread per element of cols (neighbouring threads take neighbouring
pixels p: contiguous writes, nearly contiguous reads).
col2im, its adjoint, is written as a *gather*: one thread per element of dx sums
every column entry that was copied from it. For tap (i, j) that is output pixel
(oh, ow) with oh*sh - ph + i*dh = r (`tap_output`), if it exists. Each thread writes
only its own element, so there are no atomics and the result is deterministic.
"""

from __future__ import annotations

from typing import NamedTuple

from numba import cuda

from . import device as dev
from .indexing import tap_output

_tap = tap_output.device


class ConvGeometry(NamedTuple):
    """A convolution's window: kernel, stride, padding, dilation (h, w each) and output size."""

    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    out_h: int
    out_w: int

    @property
    def args(self) -> tuple:
        return tuple(self)


@cuda.jit
def _im2col_kernel(x, n0, nb, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, cols, s_b, s_k):
    n_chan, height, width = x.shape[1], x.shape[2], x.shape[3]
    n_pix, n_k = out_h * out_w, n_chan * kh * kw
    for t in range(cuda.grid(1), nb * n_k * n_pix, cuda.gridsize(1)):
        p = t % n_pix
        k = (t // n_pix) % n_k
        b = t // (n_pix * n_k)
        c, i, j = k // (kh * kw), (k // kw) % kh, k % kw
        r = (p // out_w) * sh - ph + i * dh
        s = (p % out_w) * sw - pw + j * dw
        at = b * s_b + k * s_k + p
        if 0 <= r < height and 0 <= s < width:
            cols[at] = x[n0 + b, c, r, s]
        else:
            cols[at] = 0


@cuda.jit
def _col2im_kernel(cols, n0, nb, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, s_b, s_k, dx):
    n_chan, height, width = dx.shape[1], dx.shape[2], dx.shape[3]
    for t in range(cuda.grid(1), nb * n_chan * height * width, cuda.gridsize(1)):
        s = t % width
        r = (t // width) % height
        c = (t // (width * height)) % n_chan
        b = t // (width * height * n_chan)
        acc = 0.0
        for i in range(kh):
            oh = _tap(r, ph, i, dh, sh, out_h)
            if oh >= 0:
                for j in range(kw):
                    ow = _tap(s, pw, j, dw, sw, out_w)
                    if ow >= 0:
                        acc += cols[b * s_b + ((c * kh + i) * kw + j) * s_k + oh * out_w + ow]
        dx[n0 + b, c, r, s] = acc


def im2col(x, n0: int, nb: int, geom, cols, s_b: int, s_k: int) -> None:
    """Columns of samples [n0, n0 + nb) of x into the flat buffer `cols` (layout s_b, s_k)."""
    n_k = x.shape[1] * geom.kh * geom.kw
    dev.launch(_im2col_kernel, nb * n_k * geom.out_h * geom.out_w, x, n0, nb, *geom.args, cols, s_b, s_k)


def col2im(cols, n0: int, nb: int, geom, s_b: int, s_k: int, dx) -> None:
    """Adjoint of `im2col`: overwrite dx[n0:n0 + nb] with the column entries summed back."""
    n, c, h, w = dx.shape
    dev.launch(_col2im_kernel, nb * c * h * w, cols, n0, nb, *geom.args, s_b, s_k, dx)
