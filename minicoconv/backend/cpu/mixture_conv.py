"""The small-map fused convolution with a mixture of expert kernels (CPU), without ever holding a kernel.

    kernels[b, c'] = sum_i coef[b, i, c'] * bank[i, c']     bank (n, C', C/g, kh, kw)
    y_b = conv2d(x_b, s_b * kernels[b])

coef is (B, n, C') (one weight per expert and output channel: CoConv's fused form) or
(B, n) (one per expert: CondConv, DY-CNN, ODConv), broadcast over C'. The optional
spatial factor s (B, kh*kw) (ODConv) scales kernel position q of every channel.

The aggregation alone (`aggregate_kernels`, for the chunked path) and the validation
shared with it are in mixture_aggregate.py.

`mixture_conv2d_forward` / `_backward` (groups = 1): the whole per-sample convolution in
Numba, for small output maps. With L = H'*W' pixels a sample's kernel is used for only
L multiply-adds per entry: at ResNet18's stage 4 (4x4, 512 channels) the 32 kernels of a
batch are 300 MB, written and read back once each against 1.2 GMAC, and OpenBLAS ran the
skinny (C' x K) @ (K x 16) products at half its speed on the static conv's GEMM. Here no
kernel is ever held whole: a task owns a block of output channels (or, for dx, of kernel
columns) and, per block of kernel columns and four samples at a time, aggregates that
tile (in L2) and multiplies it at once with the samples' columns. The columns are laid
out per sample as cols_t (N, L, K) (pixel-major, `im2col.im2col_t_kernel`), so every inner
loop runs along K, contiguous:

    forward      y[b, c, l] = sum_k M_b[c, k] cols_t[b, l, k]   (4 x 4 blocks of dot products)
    backward     dM_b = gy_b cols_t[b]  (4 x 4 blocks of multiply-adds, a tile in L2)
                 dcoef[b, i, c] = <dM_b[c], bank[i, c]>,  dbank[i, c] = sum_b coef[b, i, c] dM_b[c]
                 dcols_t[b, l, k] = sum_c gy[b, c, l] M_b[c, k]  (tasks own column blocks), then col2im_t

(M_b the mixture; a spatial factor scales the columns instead: M_b (s_b . cols_b) is the
same product.) The multiply-adds are 1 + n/L times the static conv's (1.25x at 4x4 with
4 experts), and Numba's loops run them slower than OpenBLAS (rates measured per part:
docs/performance.md). It still beats the BLAS path on small maps by
never sending kernels through memory. The rule for choosing this path lives with the op
(ops/dynamic_conv.py, SMALL_MAP_PIXELS).

Summation order differs from the BLAS path (blocks of columns, reassociated sums), so
results agree with it to rounding, not bit for bit. Every mixture a sample gets depends
on that sample only (the leftover samples of the four-sample passes are mixed one by one
with the same expression), so splitting a batch never changes an aggregated kernel. Callers validate shapes first:
the kernels do no bounds checks.
"""

import numpy as np
from numba import njit, prange

from .conv_kernels import BLOCK_BYTES, conv2d_output_shape
from .im2col import col2im_t_kernel, im2col_t_kernel
from .mixture_aggregate import (
    FASTMATH,
    _block,
    _check_mixture,
    _dot,
    _mix_rows,
    _reduce_coef_grad,
)
from .validation import check_float_array

# Tile sizes (entries). Forward and dK: a task owns about ROWS output channels and walks
# the kernel columns in blocks of COLUMNS; four samples' aggregated tiles (4 x ROWS x
# COLUMNS, 256 KB in float32) stay in L2. dcols: a task owns about DX_COLUMNS kernel
# columns. Task counts are rounded to a multiple of the thread count (`_block`).
ROWS, COLUMNS, DX_COLUMNS = 32, 512, 512


def _check_conv(op, x, bank, coef, stride, padding, dilation):
    bank, coef3 = _check_mixture(op, bank, coef)
    x = check_float_array(op, "x", x, 4, "(N, C, H, W)", bank.dtype, like="bank")
    if coef3.shape[0] != x.shape[0]:
        raise ValueError(f"{op}: expected coef for N = {x.shape[0]} samples, got shape {coef.shape}")
    try:
        out_shape = conv2d_output_shape(x.shape, bank.shape[1:], stride, padding, dilation, 1)
    except ValueError as err:
        raise ValueError(f"{op}: {str(err).removeprefix('conv2d: ')} (w = one expert's kernels, groups = 1)") from None
    kh, kw = bank.shape[3:]
    geom = (kh, kw, *_pair(stride), *_pair(padding), *_pair(dilation), *out_shape[2:])
    return x, bank, coef3, out_shape, geom


def _pair(v):
    return (v, v) if isinstance(v, (int, np.integer)) else tuple(v)


# --------------------------------------------------------------------------------------
# The fused small-map convolution
# --------------------------------------------------------------------------------------


@njit(inline="always", fastmath=FASTMATH)
def _dot_4x4(a0, a1, a2, a3, b0, b1, b2, b3, m):
    """The 16 dot products <a_r, b_l> of length m (r, l = 0..3), row-major in a tuple."""
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = a0.dtype.type(0)
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = a0.dtype.type(0)
    for k in range(m):
        x0, x1, x2, x3 = a0[k], a1[k], a2[k], a3[k]
        y0, y1, y2, y3 = b0[k], b1[k], b2[k], b3[k]
        s00 += x0 * y0
        s01 += x0 * y1
        s02 += x0 * y2
        s03 += x0 * y3
        s10 += x1 * y0
        s11 += x1 * y1
        s12 += x1 * y2
        s13 += x1 * y3
        s20 += x2 * y0
        s21 += x2 * y1
        s22 += x2 * y2
        s23 += x2 * y3
        s30 += x3 * y0
        s31 += x3 * y1
        s32 += x3 * y2
        s33 += x3 * y3
    return (s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33)


@njit(inline="always")
def _store(a, i, j, v, first):
    if first:
        a[i, j] = v
    else:
        a[i, j] += v


@njit(inline="always", fastmath=FASTMATH)
def _tile_times_cols(kt, rows, ct, k0, k1, yb, c0, first):
    """yb[c0 + r, px] (= or +=) <kt[r, :m], ct[px, k0:k1]> for r < rows and every pixel px.

    4 x 4 blocks of dot products (16 accumulators); leftover rows and pixels one at a time.
    """
    m = k1 - k0
    n_pix = ct.shape[0]
    r = 0
    while r + 4 <= rows:
        a0, a1, a2, a3 = kt[r, :m], kt[r + 1, :m], kt[r + 2, :m], kt[r + 3, :m]
        px = 0
        while px + 4 <= n_pix:
            s = _dot_4x4(a0, a1, a2, a3, ct[px, k0:k1], ct[px + 1, k0:k1], ct[px + 2, k0:k1], ct[px + 3, k0:k1], m)
            for u in range(4):
                for v in range(4):
                    _store(yb, c0 + r + u, px + v, s[4 * u + v], first)
            px += 4
        for rr in range(r, r + 4):
            for ll in range(px, n_pix):
                _store(yb, c0 + rr, ll, _dot(kt[rr, :m], ct[ll, k0:k1], m), first)
        r += 4
    for rr in range(r, rows):
        for ll in range(n_pix):
            _store(yb, c0 + rr, ll, _dot(kt[rr, :m], ct[ll, k0:k1], m), first)


@njit(cache=True, fastmath=FASTMATH)
def _forward_task(coef, w, cols_t, c0, rows, tiles, y):
    """Output channels [c0, c0 + rows) of every sample; tiles: scratch (4, rows, COLUMNS)."""
    n_batch = coef.shape[0]
    k_total = w.shape[2]
    for k0 in range(0, k_total, COLUMNS):
        k1 = min(k_total, k0 + COLUMNS)
        m = k1 - k0
        for b0 in range(0, n_batch, 4):
            for r in range(rows):
                _mix_rows(coef, w, b0, c0 + r, k0, k1, tiles[0, r, :m], tiles[1, r, :m], tiles[2, r, :m],
                          tiles[3, r, :m])
            for s in range(min(4, n_batch - b0)):
                _tile_times_cols(tiles[s], rows, cols_t[b0 + s], k0, k1, y[b0 + s], c0, k0 == 0)


@njit(parallel=True, cache=True)
def _forward_kernel(coef, w, cols_t, block, y):
    """y (N, C', L): y[b, c, l] = <sum_i coef[b, i, c] w[i, c], cols_t[b, l]>; tasks: blocks of channels."""
    c_out = coef.shape[2]
    for task in prange((c_out + block - 1) // block):
        c0 = task * block
        rows = min(c_out, c0 + block) - c0
        _forward_task(coef, w, cols_t, c0, rows, np.empty((4, rows, COLUMNS), dtype=w.dtype), y)


@njit(inline="always", fastmath=FASTMATH)
def _combine_4x4(g, a0, b0, swap, x0, x1, x2, x3, o0, o1, o2, o3, m, first):
    """o_u[:m] (= or +=) sum_v G[u, v] * x_v[:m] for u, v = 0..3, G[u, v] = g[a0 + u, b0 + v]
    (or g[a0 + v, b0 + u] if swap): sixteen multiply-adds per four loads and four stores."""
    if swap:
        g00, g01, g02, g03 = g[a0, b0], g[a0 + 1, b0], g[a0 + 2, b0], g[a0 + 3, b0]
        g10, g11, g12, g13 = g[a0, b0 + 1], g[a0 + 1, b0 + 1], g[a0 + 2, b0 + 1], g[a0 + 3, b0 + 1]
        g20, g21, g22, g23 = g[a0, b0 + 2], g[a0 + 1, b0 + 2], g[a0 + 2, b0 + 2], g[a0 + 3, b0 + 2]
        g30, g31, g32, g33 = g[a0, b0 + 3], g[a0 + 1, b0 + 3], g[a0 + 2, b0 + 3], g[a0 + 3, b0 + 3]
    else:
        g00, g01, g02, g03 = g[a0, b0], g[a0, b0 + 1], g[a0, b0 + 2], g[a0, b0 + 3]
        g10, g11, g12, g13 = g[a0 + 1, b0], g[a0 + 1, b0 + 1], g[a0 + 1, b0 + 2], g[a0 + 1, b0 + 3]
        g20, g21, g22, g23 = g[a0 + 2, b0], g[a0 + 2, b0 + 1], g[a0 + 2, b0 + 2], g[a0 + 2, b0 + 3]
        g30, g31, g32, g33 = g[a0 + 3, b0], g[a0 + 3, b0 + 1], g[a0 + 3, b0 + 2], g[a0 + 3, b0 + 3]
    if first:
        for k in range(m):
            y0, y1, y2, y3 = x0[k], x1[k], x2[k], x3[k]
            o0[k] = g00 * y0 + g01 * y1 + g02 * y2 + g03 * y3
            o1[k] = g10 * y0 + g11 * y1 + g12 * y2 + g13 * y3
            o2[k] = g20 * y0 + g21 * y1 + g22 * y2 + g23 * y3
            o3[k] = g30 * y0 + g31 * y1 + g32 * y2 + g33 * y3
    else:
        for k in range(m):
            y0, y1, y2, y3 = x0[k], x1[k], x2[k], x3[k]
            o0[k] += g00 * y0 + g01 * y1 + g02 * y2 + g03 * y3
            o1[k] += g10 * y0 + g11 * y1 + g12 * y2 + g13 * y3
            o2[k] += g20 * y0 + g21 * y1 + g22 * y2 + g23 * y3
            o3[k] += g30 * y0 + g31 * y1 + g32 * y2 + g33 * y3


@njit(inline="always", fastmath=FASTMATH)
def _grad_tile(gy_b, c0, rows, ct, k0, k1, dk):
    """dk[r, :m] = sum_l gy_b[c0 + r, px] * ct[px, k0:k1]: 4 rows x 4 pixels per pass, leftovers one by one."""
    m = k1 - k0
    n_pix = ct.shape[0]
    rows4, pix4 = rows - rows % 4, n_pix - n_pix % 4
    for r in range(0, rows4, 4):
        for px in range(0, pix4, 4):
            _combine_4x4(gy_b, c0 + r, px, False, ct[px, k0:k1], ct[px + 1, k0:k1], ct[px + 2, k0:k1],
                         ct[px + 3, k0:k1], dk[r, :m], dk[r + 1, :m], dk[r + 2, :m], dk[r + 3, :m], m, px == 0)
    for r in range(rows):
        d = dk[r, :m]
        for px in range(pix4 if r < rows4 else 0, n_pix):
            g = gy_b[c0 + r, px]
            x = ct[px, k0:k1]
            if px == 0:
                for k in range(m):
                    d[k] = g * x[k]
            else:
                for k in range(m):
                    d[k] += g * x[k]


@njit(cache=True, fastmath=FASTMATH)
def _grad_bank_task(gy, cols_t, coef, w, c0, rows, need_dbank, need_dcoef, dk, dw, dcoef):
    """Rows [c0, c0 + rows) of dw, and of dcoef (zeroed by the caller); dk: scratch (4, rows, COLUMNS).

    Four samples at a time: their dK tiles, then per channel and expert one pass for the
    four dot products with w and one for the update of dw (a padded sample slot holds a
    zero tile and weighs 0).
    """
    n_batch, n = coef.shape[0], coef.shape[1]
    k_total = w.shape[2]
    for k0 in range(0, k_total, COLUMNS):
        k1 = min(k_total, k0 + COLUMNS)
        m = k1 - k0
        for b0 in range(0, n_batch, 4):
            n_s = min(4, n_batch - b0)
            for s in range(4):
                if s < n_s:
                    _grad_tile(gy[b0 + s], c0, rows, cols_t[b0 + s], k0, k1, dk[s])
                else:
                    dk[s, :rows, :m] = 0
            for r in range(rows):
                c = c0 + r
                d0, d1, d2, d3 = dk[0, r, :m], dk[1, r, :m], dk[2, r, :m], dk[3, r, :m]
                for i in range(n):
                    wi = w[i, c, k0:k1]
                    s0 = s1 = s2 = s3 = wi.dtype.type(0)
                    if need_dbank:
                        a0 = coef[b0, i, c]
                        a1 = coef[b0 + 1, i, c] if n_s > 1 else wi.dtype.type(0)
                        a2 = coef[b0 + 2, i, c] if n_s > 2 else wi.dtype.type(0)
                        a3 = coef[b0 + 3, i, c] if n_s > 3 else wi.dtype.type(0)
                        out = dw[i, c, k0:k1]
                        if b0 > 0 and need_dcoef:  # the common case: one pass for both
                            for k in range(m):
                                x, e0, e1, e2, e3 = wi[k], d0[k], d1[k], d2[k], d3[k]
                                s0 += e0 * x
                                s1 += e1 * x
                                s2 += e2 * x
                                s3 += e3 * x
                                out[k] += a0 * e0 + a1 * e1 + a2 * e2 + a3 * e3
                        elif b0 > 0:
                            for k in range(m):
                                out[k] += a0 * d0[k] + a1 * d1[k] + a2 * d2[k] + a3 * d3[k]
                        else:
                            for k in range(m):
                                out[k] = a0 * d0[k] + a1 * d1[k] + a2 * d2[k] + a3 * d3[k]
                    if need_dcoef and not (need_dbank and b0 > 0):
                        for k in range(m):
                            x = wi[k]
                            s0 += d0[k] * x
                            s1 += d1[k] * x
                            s2 += d2[k] * x
                            s3 += d3[k] * x
                    if need_dcoef:
                        dcoef[b0, i, c] += s0
                        if n_s > 1:
                            dcoef[b0 + 1, i, c] += s1
                        if n_s > 2:
                            dcoef[b0 + 2, i, c] += s2
                        if n_s > 3:
                            dcoef[b0 + 3, i, c] += s3


@njit(parallel=True, cache=True)
def _grad_bank_kernel(gy, cols_t, coef, w, block, need_dbank, need_dcoef, dw, dcoef):
    """dK_b = gy_b cols_t[b], tile by tile; dcoef[b, i, c] = <dK_b[c], w[i, c]>, dw[i, c] = sum_b coef[b, i, c]
    dK_b[c]; tasks: blocks of channels (each owns its rows of dw and dcoef)."""
    c_out = coef.shape[2]
    for task in prange((c_out + block - 1) // block):
        c0 = task * block
        rows = min(c_out, c0 + block) - c0
        _grad_bank_task(gy, cols_t, coef, w, c0, rows, need_dbank, need_dcoef,
                        np.empty((4, rows, COLUMNS), dtype=w.dtype), dw, dcoef)


@njit(inline="always", fastmath=FASTMATH)
def _add_rows_to_pixels(g, c0, rows, t, d, k0, k1):
    """d[px, k0:k1] += sum_{r < rows} g[c0 + r, px] * t[r, :m] for every pixel px: 4 pixels x 4 rows per pass."""
    m = k1 - k0
    n_pix = g.shape[1]
    rows4, pix4 = rows - rows % 4, n_pix - n_pix % 4
    for px in range(0, pix4, 4):
        for r in range(0, rows4, 4):
            _combine_4x4(g, c0 + r, px, True, t[r, :m], t[r + 1, :m], t[r + 2, :m], t[r + 3, :m],
                         d[px, k0:k1], d[px + 1, k0:k1], d[px + 2, k0:k1], d[px + 3, k0:k1], m, False)
    for px in range(n_pix):
        dl = d[px, k0:k1]
        for r in range(rows4 if px < pix4 else 0, rows):
            gr = g[c0 + r, px]
            tr = t[r, :m]
            for k in range(m):
                dl[k] += gr * tr[k]


@njit(cache=True, fastmath=FASTMATH)
def _grad_cols_task(gy, coef, w, k0, k1, kt, dcols_t):
    """Columns [k0, k1) of dcols_t; kt: scratch (4, 8, k1 - k0)."""
    n_batch, c_out = gy.shape[0], gy.shape[1]
    m = k1 - k0
    for b0 in range(0, n_batch, 4):
        n_s = min(4, n_batch - b0)
        for s in range(n_s):
            dcols_t[b0 + s, :, k0:k1] = 0
        for c0 in range(0, c_out, 8):
            rows = min(8, c_out - c0)
            for r in range(rows):
                _mix_rows(coef, w, b0, c0 + r, k0, k1, kt[0, r, :m], kt[1, r, :m], kt[2, r, :m], kt[3, r, :m])
            for s in range(n_s):
                _add_rows_to_pixels(gy[b0 + s], c0, rows, kt[s], dcols_t[b0 + s], k0, k1)


@njit(parallel=True, cache=True)
def _grad_cols_kernel(gy, coef, w, block, dcols_t):
    """dcols_t[b, l, k] = sum_c gy[b, c, l] K_b[c, k], K_b the mixture; tasks: blocks of columns.

    Per four samples and eight channels: mix the eight kernel rows, then add them, weighted
    by gy, into every pixel's row of dcols_t (one pass per eight channels).
    """
    k_total = w.shape[2]
    for task in prange((k_total + block - 1) // block):
        k0 = task * block
        _grad_cols_task(gy, coef, w, k0, min(k_total, k0 + block), np.empty((4, 8, block), dtype=w.dtype), dcols_t)


@njit(parallel=True, cache=True)
def _scale_columns_kernel(cols_t, spatial, out):
    """out[b, l, k] = spatial[b, k % kk] * cols_t[b, l, k] (kk = spatial.shape[1])."""
    n_batch, n_pix, k_total = cols_t.shape
    kk = spatial.shape[1]
    for b in prange(n_batch):
        scale = np.empty(k_total, dtype=cols_t.dtype)
        for k in range(k_total):
            scale[k] = spatial[b, k % kk]
        for p in range(n_pix):
            src, dst = cols_t[b, p], out[b, p]
            for k in range(k_total):
                dst[k] = scale[k] * src[k]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _spatial_grad_kernel(cols_t, dcols_t, ds):
    """ds[b, q] = sum over pixels l and columns k with k % kk == q of cols_t[b, l, k] * dcols_t[b, l, k]."""
    n_batch, n_pix, k_total = cols_t.shape
    kk = ds.shape[1]
    for b in prange(n_batch):
        acc = np.zeros(k_total, dtype=np.float64)
        for p in range(n_pix):
            src, grad = cols_t[b, p], dcols_t[b, p]
            for k in range(k_total):
                acc[k] += src[k] * grad[k]
        for q in range(kk):
            ds[b, q] = acc[q::kk].sum()


def _check_spatial(op, spatial, x, bank):
    if spatial is None:
        return None
    kk = bank.shape[3] * bank.shape[4]
    spatial = check_float_array(op, "spatial", spatial, 2, "(N, kh*kw)", bank.dtype, like="bank")
    if spatial.shape != (x.shape[0], kk):
        raise ValueError(f"{op}: expected spatial of shape {(x.shape[0], kk)} = (N, kh*kw), got {spatial.shape}")
    return spatial


def mixture_conv2d_forward(x, bank, coef, spatial, stride, padding, dilation):
    """y_b = conv2d(x_b, s_b * sum_i coef[b, i(, c')] bank[i]) with groups = 1; returns (y, saved).

    x (N, C, H, W), bank (n, C', C, kh, kw), coef (N, n) or (N, n, C'), spatial s (N, kh*kw)
    or None (ODConv's per-position factor, scaling kernel column k by s_b[k % (kh*kw)]; it is
    applied to the columns instead, an equal product) -> y (N, C', H', W').
    saved: the (unscaled) columns cols_t when they take at most BLOCK_BYTES (else None: recomputed).
    """
    op = "mixture_conv2d"
    x, bank, coef3, out_shape, geom = _check_conv(op, x, bank, coef, stride, padding, dilation)
    spatial = _check_spatial(op, spatial, x, bank)
    n_batch, n_pix = x.shape[0], out_shape[2] * out_shape[3]
    n, c_out = bank.shape[:2]
    cols_t = np.empty((n_batch, n_pix, bank[0, 0].size), dtype=x.dtype)
    y = np.empty(out_shape, dtype=x.dtype)
    if y.size:
        im2col_t_kernel(x, *geom, cols_t)
        scaled = cols_t
        if spatial is not None:
            scaled = np.empty_like(cols_t)
            _scale_columns_kernel(cols_t, spatial, scaled)
        _forward_kernel(coef3, bank.reshape(n, c_out, -1), scaled, _block(c_out, ROWS),
                        y.reshape(n_batch, c_out, n_pix))
    return y, (cols_t if cols_t.nbytes <= BLOCK_BYTES else None)


def mixture_conv2d_backward(gy, x, bank, coef, spatial, saved, stride, padding, dilation, need_dx=True,
                            need_dbank=True, need_dcoef=True, need_ds=False):
    """Gradients of mixture_conv2d_forward: (dx, dbank, dcoef, ds), each None unless asked for.

    saved: what the forward returned with these arguments (or None: recompute the columns).
    With M_b = sum_i coef_bi W_i and y_b = M_b (s_b . cols_b): the bank and coef gradients come
    from dM_b = gy_b (s_b . cols_b)^T; dx and ds from dcols'_b = M_b^T gy_b, as dcols = s . dcols'
    and ds_b[q] = sum of cols . dcols' over the columns of position q.
    """
    op = "mixture_conv2d"
    x, bank, coef3, out_shape, geom = _check_conv(op, x, bank, coef, stride, padding, dilation)
    spatial = _check_spatial(op, spatial, x, bank)
    need_ds = need_ds and spatial is not None
    gy = check_float_array(op, "gy", gy, 4, str(out_shape), x.dtype)
    if gy.shape != out_shape:
        raise ValueError(f"{op}: expected gy of shape {out_shape}, got {gy.shape}")
    n_batch, n_pix = x.shape[0], out_shape[2] * out_shape[3]
    n, c_out = bank.shape[:2]
    w = bank.reshape(n, c_out, -1)
    gy3 = gy.reshape(n_batch, c_out, n_pix)
    dx = np.empty(x.shape, dtype=x.dtype) if need_dx else None
    dbank = np.zeros(bank.shape, dtype=x.dtype) if need_dbank else None
    dcoef = np.zeros(coef3.shape, dtype=x.dtype) if need_dcoef else None
    ds = np.zeros(spatial.shape, dtype=x.dtype) if need_ds else None
    if n_batch == 0:
        return dx, dbank, (_reduce_coef_grad(dcoef, np.ndim(coef)) if need_dcoef else None), ds
    cols_t = saved
    if cols_t is None and (need_dbank or need_dcoef or need_ds):
        cols_t = np.empty((n_batch, n_pix, w.shape[2]), dtype=x.dtype)
        im2col_t_kernel(x, *geom, cols_t)
    if need_dbank or need_dcoef:
        scaled = cols_t
        if spatial is not None:
            scaled = np.empty_like(cols_t)
            _scale_columns_kernel(cols_t, spatial, scaled)
        empty = np.empty((0, 0, 0), dtype=x.dtype)
        _grad_bank_kernel(gy3, scaled, coef3, w, _block(c_out, ROWS), need_dbank, need_dcoef,
                          empty if dbank is None else dbank.reshape(n, c_out, -1), empty if dcoef is None else dcoef)
    if need_dx or need_ds:
        dcols_t = np.empty((n_batch, n_pix, w.shape[2]), dtype=x.dtype)
        _grad_cols_kernel(gy3, coef3, w, _block(w.shape[2], DX_COLUMNS, 16), dcols_t)
        if need_ds:
            _spatial_grad_kernel(cols_t, dcols_t, ds)
        if need_dx:
            if spatial is not None:
                _scale_columns_kernel(dcols_t, spatial, dcols_t)
            col2im_t_kernel(dcols_t, *geom, dx)
    return dx, dbank, (_reduce_coef_grad(dcoef, np.ndim(coef)) if need_dcoef else None), ds

