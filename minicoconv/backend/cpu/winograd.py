"""Winograd F(2x2, 3x3) convolution on the CPU: drivers, and which algorithm a conv uses.

The math is the reference form's (minicoconv/backend/reference/winograd.py); here the tile
transforms are Numba kernels fused with the gather and scatter (winograd_kernels.py) and the
16 per-position GEMMs go through blas.gemm (Numba's pool, one single-threaded BLAS call per
task: the one-pool rule of blas.py).

    forward, per block of nb samples:
        V (16, C, T) = input_transform(x)          B^T d B of every 4x4 input tile
        M (16, C', T) = U (16, C', C) @ V          16 GEMMs, U = G w G^T (once per call)
        y = output_transform(M) + bias             A^T M A of every tile, cut at the edge
    dX: the same forward on gy with U^ = G flip(w)^T G^T and padding 2 - p
    dW: M3 (16, C', C) = sum over blocks of Gy' (16, C', T) @ V^T (16, T, C), Gy' = G2' gy G2'^T,
        then dW = A3^T M3 A3 (F(3x3, 2x2), sharing V's tiles; see the reference form)

Applies to 3x3 kernels with stride 1, dilation 1, groups 1 and padding 0, 1 or 2 (`applies`).
Grouped and depthwise convolutions stay on their paths (im2col per group, depthwise.py):
a depthwise 3x3 does 9 multiply-adds per output and is memory-bound, so fewer
multiplications buy nothing there, and a grouped conv's per-position GEMMs would be
(C'/g, C/g) matrices too small for BLAS to pay.

Which algorithm: `set_conv_algorithm("im2col" | "auto" | "winograd")` (process-wide; "im2col"
is the default: on an idle 2-core machine with 2 threads this F(2x2, 3x3) measured slower than
im2col at ResNet18's stages 1-2 and equal at stage 3, docs/performance.md). "winograd" forces it
wherever it applies (tests use this to check both paths); "auto" takes it where
`prefer_winograd` says it measured faster with one thread on a loaded machine.

F(4x4, 3x3) (6x6 tiles, 4x fewer multiplications) is not implemented here. Its matrices
hold 4, 5, 8 and 1/24, and a float64-checked prototype in float32 gave forward errors of
6e-6 to 1.3e-5 at 64-512 channels, 11-18x F(2x2, 3x3)'s (which measures 2e-7 to 9e-7, about
im2col's); within the 1e-4 bound for the output but with a thin margin for dW, whose sums run
over a whole batch of tiles, and it was not pursued in the time of this change
(docs/performance.md). F(2x2, 3x3) meets the bound everywhere with about 100x to spare.

Memory: the forward's V is returned as `saved` when the whole batch is one block (it is
smaller than im2col's columns: 4 values per output pixel and channel instead of 9), so the
backward's dW reuses it; otherwise the backward recomputes it block by block.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .blas import gemm
from .winograd_kernels import grad_transform, input_transform, kernel_transform, output_transform, weight_grad_transform

ALGORITHMS = ("auto", "im2col", "winograd")
# bytes of transformed tiles (V and M) per block: big GEMMs, still cache-friendly
BLOCK_BYTES = 4 << 20

# the 16 position matrices of a transformed array start this many bytes apart beyond their size:
# with a power-of-two size all 16 would map to the same cache sets and a kernel that writes
# one value to each per tile evicts its own lines (5 lines apart: 16 distinct sets)
PAD_BYTES = 320

_algorithm = "im2col"  # the measured default (module docstring)


def set_conv_algorithm(name: str) -> str:
    """Choose the 3x3 stride-1 convolution algorithm: "im2col" (the default), "auto" (a shape rule) or "winograd".

    Returns the previous setting. Process-wide; affects the CPU backend's conv2d only.
    """
    global _algorithm
    if name not in ALGORITHMS:
        raise ValueError(f"set_conv_algorithm: expected one of {ALGORITHMS}, got {name!r}")
    previous, _algorithm = _algorithm, name
    return previous


def get_conv_algorithm() -> str:
    """The current setting of `set_conv_algorithm`."""
    return _algorithm


def applies(w_shape: tuple, stride: tuple, padding: tuple, dilation: tuple, groups: int) -> bool:
    """Whether F(2x2, 3x3) computes this conv: 3x3, stride 1, dilation 1, groups 1, padding 0..2."""
    return (tuple(w_shape[2:]) == (3, 3) and groups == 1 and tuple(stride) == (1, 1)
            and tuple(dilation) == (1, 1) and all(0 <= p <= 2 for p in padding))


def prefer_winograd(c_in: int, c_out: int, height: int, width: int) -> bool:
    """The measured rule for "auto" (table and figures: docs/performance.md).

    Winograd's GEMMs have inner dimension C (im2col's: 9C), so it wins once C and C' are
    wide enough for BLAS to run near peak and the map has enough tiles; with few input
    channels (the 3-channel stems) the transforms cost more than the multiplications they
    save, and with C * C' above 2**17 (U above 8 MB in float32: ResNet18's stage 4, CoConv's
    stacked 256 -> 1024) the transformed kernels and the transforms of the wide side cost more
    than the saved multiplications at the small maps where such layers sit.
    """
    narrow, pixels = min(c_in, c_out), height * width
    return c_in * c_out <= 1 << 17 and ((narrow >= 64 and pixels >= 256) or (narrow >= 128 and pixels >= 64))


def use_winograd(x_shape: tuple, w_shape: tuple, stride, padding, dilation, groups) -> bool:
    """What conv2d runs for these (validated) arguments under the current setting."""
    if _algorithm == "im2col" or not applies(w_shape, stride, padding, dilation, groups):
        return False
    return _algorithm == "winograd" or prefer_winograd(x_shape[1], w_shape[0], *x_shape[2:])


class WinogradSaved(NamedTuple):
    """What the forward keeps for the backward: the whole batch's V (16, C, N*T)."""

    v: np.ndarray


def _tiles(out_h: int, out_w: int) -> tuple[int, int]:
    return -(-out_h // 2), -(-out_w // 2)


def _block(n_batch: int, rows: int, tiles: int, itemsize: int, kernel_bytes: int = 0) -> int:
    """Samples per block: `rows` transformed rows of `tiles` tiles each take ~BLOCK_BYTES, or twice
    the transformed kernels' bytes when that is more: every block's GEMMs read all of U, so with
    wide layers (C' x C large) small blocks would stream U from memory once per block."""
    per_sample = 16 * rows * tiles * itemsize
    return max(1, min(n_batch, max(BLOCK_BYTES, 2 * kernel_bytes) // max(1, per_sample)))


def _positions(buf: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A (16, rows, cols) view of buf whose position matrices are PAD_BYTES apart (see PAD_BYTES)."""
    step = rows * cols + PAD_BYTES // buf.itemsize
    item = buf.itemsize
    # explicit strides: reshape may give a length-1 axis any stride, and gemm wants unit column strides
    return np.lib.stride_tricks.as_strided(buf[:16 * step], (16, rows, cols), (step * item, cols * item, item))


def _buffer(rows: int, cols: int, dtype) -> np.ndarray:
    return np.empty(16 * (rows * cols + PAD_BYTES // np.dtype(dtype).itemsize), dtype=dtype)


def transformed_kernels(w: np.ndarray, flip: bool = False) -> np.ndarray:
    """U (16, C', C) = G w[k, c] G^T at position xi*4 + nu for w (C', C, 3, 3), in w's dtype;
    with `flip` the (16, C, C') kernels of dX, G flip(w[k, c]) G^T at [., c, k]."""
    c_out, c_in = w.shape[:2]
    u = np.empty((16, c_in, c_out) if flip else (16, c_out, c_in), dtype=w.dtype)
    kernel_transform(w, flip, u)
    return u


def _winograd(x, u, bias, padding, y, keep_v=False):
    """y = conv(x, w) + bias through U = kernel_transform(w); returns V when keep_v and one block."""
    n_batch, c_in = x.shape[:2]
    c_out = u.shape[1]
    th, tw = _tiles(*y.shape[2:])
    nb = _block(n_batch, c_in + c_out, th * tw, x.itemsize, u.nbytes)
    v_buf = _buffer(c_in, nb * th * tw, x.dtype)
    m_buf = _buffer(c_out, nb * th * tw, x.dtype)
    for n0 in range(0, n_batch, nb):
        cnt = min(nb, n_batch - n0)
        v = _positions(v_buf, c_in, cnt * th * tw)
        m = _positions(m_buf, c_out, cnt * th * tw)
        input_transform(x, padding[0], padding[1], th, tw, n0, cnt, v)
        gemm(u, v, m)
        output_transform(m, bias, th, tw, n0, cnt, y)
    if keep_v and nb >= n_batch and n_batch > 0:
        return WinogradSaved(_positions(v_buf, c_in, n_batch * th * tw))
    return None


def winograd_forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray, padding: tuple,
                     y: np.ndarray) -> WinogradSaved | None:
    """Fill y (N, C', OH, OW) with conv2d(x, w, padding) + bias; arguments already validated
    (conv_kernels.conv2d_forward). bias: (C',) or empty. Returns the saved V or None."""
    return _winograd(x, transformed_kernels(w), bias, padding, y, keep_v=True)


def winograd_backward(gy: np.ndarray, x: np.ndarray, w: np.ndarray, saved, padding: tuple,
                      dx: np.ndarray | None, dw: np.ndarray | None) -> None:
    """Fill dx and/or dw (whichever is not None); arguments already validated
    (conv_kernels.conv2d_backward). saved: the forward's WinogradSaved or None."""
    if dx is not None:
        no_bias = np.empty(0, dtype=x.dtype)
        _winograd(gy, transformed_kernels(w, flip=True), no_bias, (2 - padding[0], 2 - padding[1]), dx)
    if dw is not None:
        _weight_grad(gy, x, saved, padding, dw)


def _weight_grad(gy, x, saved, padding, dw):
    """dw = A3^T [sum over tiles of Gy' @ V^T] A3 (F(3x3, 2x2); see the module docstring)."""
    n_batch, c_in = x.shape[:2]
    c_out = gy.shape[1]
    th, tw = _tiles(*gy.shape[2:])
    n_tiles = th * tw
    if saved is not None and not (isinstance(saved, WinogradSaved) and isinstance(saved.v, np.ndarray)
                                  and saved.v.shape == (16, c_in, n_batch * n_tiles)
                                  and saved.v.dtype == x.dtype):
        raise ValueError(f"conv2d: expected saved = None or what the Winograd forward returned, V of shape "
                         f"{(16, c_in, n_batch * n_tiles)} and dtype {x.dtype}")
    nb = n_batch if saved is not None else _block(n_batch, c_in + c_out, n_tiles, x.itemsize,
                                                  16 * c_in * c_out * x.itemsize)
    m3 = np.zeros((16, c_out, c_in), dtype=x.dtype)
    v_buf = None if saved is not None else _buffer(c_in, nb * n_tiles, x.dtype)
    g_buf = _buffer(c_out, nb * n_tiles, x.dtype)
    for n0 in range(0, n_batch, nb):
        cnt = min(nb, n_batch - n0)
        if saved is not None:
            v = saved.v
        else:
            v = _positions(v_buf, c_in, cnt * n_tiles)
            input_transform(x, padding[0], padding[1], th, tw, n0, cnt, v)
        gt = _positions(g_buf, c_out, cnt * n_tiles)
        grad_transform(gy, th, tw, n0, cnt, gt)
        gemm(gt, v.transpose(0, 2, 1), m3, accumulate=True)
    weight_grad_transform(m3, dw)
