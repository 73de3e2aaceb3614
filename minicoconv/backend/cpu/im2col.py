"""im2col / col2im and the layout passes around the convolution GEMMs (Numba, CPU).

Columns layout. For a block of nb samples, the columns are one C-contiguous matrix

    cols (K, nb*L),   K = C*kh*kw (row c*kh*kw + i*kw + j),   L = OH*OW,
    cols[k, b*L + oh*OW + ow] = x[n0 + b, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]

(zero where the index falls in the padding). Samples side by side along the columns
make the forward one GEMM W (Cout, K) @ cols (K, nb*L) for the whole block, and dW one
GEMM gy^T (Cout, nb*L) @ cols^T, instead of nb skinny per-sample GEMMs (slower for the
small-spatial ResNet stages: docs/performance.md). The price is
one transpose of the GEMM output, (Cout, nb*L) -> y (nb, Cout, L), which the output
pass does while adding the bias; it is cheap because the block is still in cache.

Planes are passed flattened, x as (N, C, H*W), so that every inner loop is a zero-based
loop over a contiguous view: Numba then needs no negative-index wraparound and LLVM
vectorises the loop. "Same" stride-1 convolutions (OW == W) take a fast path: with
equal row lengths, tap (i, j) is one flat shift of the whole plane, so each column row
is a single long copy (im2col) or add (col2im), after which the |j*dw - pw| columns per
row that wrapped around a row edge are zeroed.

Every kernel runs in parallel over the (sample, channel) pairs of the block; each pair
owns its own rows of `cols` or its own plane of `dx`, so no two threads write the same
element. Callers validate shapes first: the kernels do no bounds checks.

At the end: the per-sample pixel-major layout cols_t (N, L, K) of the small-map mixture
convolution (mixture_conv.py), whose inner loops run along K.
"""

import numpy as np
from numba import njit, prange, uint64


@njit(cache=True)
def out_range(offset, size, stride, n_out):
    """Output indices o in [lo, hi) with 0 <= o*stride + offset < size; 0 <= lo <= hi <= n_out."""
    lo = min(n_out, max(0, (stride - 1 - offset) // stride))
    hi = min(n_out, (size - 1 - offset) // stride + 1)
    return lo, max(lo, hi)


@njit(cache=True)
def tap_ranges(k, dil, pad, size, stride, n_out):
    """(k, 2) table: row t holds out_range of kernel tap t (computed once per call, since
    the integer divisions cost more than a small plane's copy)."""
    table = np.empty((k, 2), dtype=np.int64)
    for t in range(k):
        table[t, 0], table[t, 1] = out_range(t * dil - pad, size, stride, n_out)
    return table


@njit(cache=True)
def _zero_wrapped_columns(row, out_h, out_w, s_lo, s_hi):
    """Zero columns [0, s_lo) and [s_hi, OW) of every output row of a flat (OH*OW) row."""
    if s_lo == 0 and s_hi == out_w:
        return
    for oh in range(out_h):
        base = oh * out_w
        for t in range(s_lo):
            row[base + t] = 0
        for t in range(s_hi, out_w):
            row[base + t] = 0


@njit(parallel=True, cache=True)
def im2col_kernel(x, height, width, n0, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, cols):
    """x (N, C, H*W), samples [n0, n0 + nb) -> cols (C*kh*kw, nb*OH*OW); writes every entry."""
    n_chan = x.shape[1]
    n_pix = out_h * out_w
    nb = cols.shape[1] // n_pix
    flat = sh == 1 and sw == 1 and out_w == width
    rows = tap_ranges(kh, dh, ph, height, sh, out_h)
    columns = tap_ranges(kw, dw, pw, width, sw, out_w)
    for task in prange(nb * n_chan):
        c = task // nb  # channel-major: neighbouring tasks write neighbouring column segments
        b = task - c * nb
        plane = x[n0 + b, c]
        for i in range(kh):
            r_lo, r_hi = rows[i, 0], rows[i, 1]
            for j in range(kw):
                off = j * dw - pw
                s_lo, s_hi = columns[j, 0], columns[j, 1]
                row = cols[(c * kh + i) * kw + j, b * n_pix:(b + 1) * n_pix]
                if flat:
                    shift = (i * dh - ph) * width + off
                    lo = min(n_pix, max(0, -shift))
                    hi = max(lo, min(n_pix, height * width - shift))
                    src = plane[lo + shift:hi + shift]
                    seg = row[lo:hi]
                    for p in range(lo):
                        row[p] = 0
                    for t in range(hi - lo):
                        seg[t] = src[t]
                    for p in range(hi, n_pix):
                        row[p] = 0
                    _zero_wrapped_columns(row, out_h, out_w, s_lo, s_hi)
                    continue
                for p in range(r_lo * out_w):
                    row[p] = 0
                for p in range(r_hi * out_w, n_pix):
                    row[p] = 0
                for oh in range(r_lo, r_hi):
                    dst = row[oh * out_w:(oh + 1) * out_w]
                    start = (oh * sh + i * dh - ph) * width + s_lo * sw + off
                    src = plane[start:start + (s_hi - s_lo - 1) * sw + 1]
                    for t in range(s_lo):
                        dst[t] = 0
                    seg = dst[s_lo:s_hi]
                    if sw == 1:
                        for t in range(s_hi - s_lo):
                            seg[t] = src[t]
                    else:
                        for t in range(s_hi - s_lo):
                            seg[t] = src[t * sw]
                    for t in range(s_hi, out_w):
                        dst[t] = 0


@njit(parallel=True, cache=True)
def col2im_kernel(cols, n0, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, height, width, dx):
    """Adjoint of im2col_kernel: cols (C*kh*kw, nb*OH*OW) -> dx[n0:n0 + nb] (N, C, H*W).

    dx's planes are overwritten. cols is scratch: on the flat path the entries of
    wrapped columns (which belong to the padding) are zeroed.
    """
    n_chan = dx.shape[1]
    n_pix = out_h * out_w
    nb = cols.shape[1] // n_pix
    flat = sh == 1 and sw == 1 and out_w == width
    rows = tap_ranges(kh, dh, ph, height, sh, out_h)
    columns = tap_ranges(kw, dw, pw, width, sw, out_w)
    for task in prange(nb * n_chan):
        c = task // nb  # channel-major: neighbouring tasks read neighbouring column segments
        b = task - c * nb
        plane = dx[n0 + b, c]
        for p in range(height * width):
            plane[p] = 0
        for i in range(kh):
            r_lo, r_hi = rows[i, 0], rows[i, 1]
            for j in range(kw):
                off = j * dw - pw
                s_lo, s_hi = columns[j, 0], columns[j, 1]
                row = cols[(c * kh + i) * kw + j, b * n_pix:(b + 1) * n_pix]
                if flat:
                    _zero_wrapped_columns(row, out_h, out_w, s_lo, s_hi)
                    shift = (i * dh - ph) * width + off
                    lo = min(n_pix, max(0, -shift))
                    hi = max(lo, min(n_pix, height * width - shift))
                    dst = plane[lo + shift:hi + shift]
                    src = row[lo:hi]
                    for t in range(hi - lo):
                        dst[t] += src[t]
                    continue
                for oh in range(r_lo, r_hi):
                    start = (oh * sh + i * dh - ph) * width + s_lo * sw + off
                    dst = plane[start:start + (s_hi - s_lo - 1) * sw + 1]
                    src = row[oh * out_w + s_lo:oh * out_w + s_hi]
                    if sw == 1:
                        for t in range(s_hi - s_lo):
                            dst[t] += src[t]
                    else:
                        for t in range(s_hi - s_lo):
                            dst[t * sw] += src[t]


@njit(parallel=True, cache=True)
def unfold_output_kernel(out, bias, n0, y):
    """GEMM output out (Cout, nb*L) -> y[n0 + b, co, :] = out[co, b*L:(b+1)*L] + bias[co].

    y is (N, Cout, L); bias is (Cout,) or empty for no bias.
    """
    n_out, n_pix = y.shape[1], y.shape[2]
    nb = out.shape[1] // n_pix
    has_bias = bias.shape[0] > 0
    for task in prange(nb * n_out):
        b = task // n_out
        co = task - b * n_out
        src = out[co, b * n_pix:(b + 1) * n_pix]
        dst = y[n0 + b, co]
        if has_bias:
            beta = bias[co]
            for p in range(n_pix):
                dst[p] = src[p] + beta
        else:
            for p in range(n_pix):
                dst[p] = src[p]


@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def fold_grad_kernel(gy, n0, gy_t, row_sums):
    """gy[n0:n0 + nb] (N, Cout, L) -> gy_t (Cout, nb*L), the layout of the GEMM output.

    Also row_sums[b, co] = sum over L of gy[n0 + b, co] (for the bias gradient).
    """
    n_out, n_pix = gy.shape[1], gy.shape[2]
    nb = gy_t.shape[1] // n_pix
    for task in prange(nb * n_out):
        b = task // n_out
        co = task - b * n_out
        src = gy[n0 + b, co]
        dst = gy_t[co, b * n_pix:(b + 1) * n_pix]
        total = src.dtype.type(0)
        for p in range(n_pix):
            v = src[p]
            dst[p] = v
            total += v
        row_sums[b, co] = total


def im2col_blocks(x, geom_args, n0, cols):
    """Unchecked driver: x (N, C, H, W) C-contiguous, samples [n0, ...) -> cols (K, nb*L)."""
    n_batch, n_chan, height, width = x.shape
    im2col_kernel(x.reshape(n_batch, n_chan, height * width), height, width, n0, *geom_args,
                  cols)


def col2im_blocks(cols, geom_args, n0, dx):
    """Unchecked driver: cols (K, nb*L) (clobbered) -> dx[n0:n0 + nb] (N, C, H, W)."""
    n_batch, n_chan, height, width = dx.shape
    col2im_kernel(cols, n0, *geom_args, height, width,
                  dx.reshape(n_batch, n_chan, height * width))


# --------------------------------------------------------------------------------------
# Columns in the per-sample pixel-major layout cols_t (N, L, K)
# --------------------------------------------------------------------------------------


# (Indices are cast to unsigned where LLVM cannot prove them non-negative: Numba then
# emits no negative-index wraparound, which here halved the time of these two kernels.)


@njit(parallel=True, cache=True)
def im2col_t_kernel(x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, cols_t):
    """cols_t[b, oh*OW + ow, (c*kh + i)*kw + j] = x[b, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw] (0 outside).

    A task (sample, output row) first copies the kh input rows it reads, zero-padded, into
    `rows` (C*kh, W + 2*pw); every entry is then a branch-free read of that buffer.
    """
    n_batch, n_chan, height, width = x.shape
    wp = width + 2 * pw
    for task in prange(n_batch * out_h):
        b = task // out_h
        oh = task - b * out_h
        rows = np.zeros((n_chan * kh, wp), dtype=x.dtype)
        for c in range(n_chan):
            for i in range(kh):
                ih = oh * sh - ph + i * dh
                if 0 <= ih < height:
                    rows[c * kh + i, pw:pw + width] = x[b, c, ih]
        flat = rows.ravel()
        for ow in range(out_w):
            out = cols_t[b, oh * out_w + ow]
            for ci in range(n_chan * kh):
                src, dst = uint64(ci * wp + ow * sw), uint64(ci * kw)
                for j in range(kw):
                    out[dst + uint64(j)] = flat[src + uint64(j * dw)]


@njit(parallel=True, cache=True)
def col2im_t_kernel(cols_t, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, dx):
    """Adjoint of im2col_t_kernel: dx (N, C, H, W) = sum of cols_t entries over the taps that read each pixel.

    A task (sample, channel) accumulates into a zero-padded plane, then copies its interior.
    """
    n_batch, n_chan, height, width = dx.shape
    hp, wp = (out_h - 1) * sh + (kh - 1) * dh + 1, (out_w - 1) * sw + (kw - 1) * dw + 1
    hp, wp = max(hp, height + ph), max(wp, width + pw)
    for task in prange(n_batch * n_chan):
        b = task // n_chan
        c = task - b * n_chan
        plane = np.zeros((hp, wp), dtype=dx.dtype)
        flat = plane.ravel()
        for oh in range(out_h):
            for ow in range(out_w):
                row = cols_t[b, oh * out_w + ow]
                for i in range(kh):
                    src, dst = uint64((c * kh + i) * kw), uint64((oh * sh + i * dh) * wp + ow * sw)
                    for j in range(kw):
                        flat[dst + uint64(j * dw)] += row[src + uint64(j)]
        dx[b, c] = plane[ph:ph + height, pw:pw + width]
