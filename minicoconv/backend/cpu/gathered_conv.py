"""Convolution of gathered input channels, per sample and group (CPU): DGC's sparse inference.

    x (N, C, H, W), weight (G, C'/G, C, kh, kw), idx (G, N, K) ints in [0, C), scale (G, N, K)
    y[b, g*C'/G + o] = sum_j scale[g, b, j] * conv2d(x[b, idx[g, b, j]], weight[g, o, idx[g, b, j]])
    -> y (N, C', OH, OW), output channels group-major (channel g*C'/G + o)

Each sample and group convolves only its K gathered channels: N*C'*K*kh*kw*OH*OW
multiply-accumulates, K/C of a dense convolution's. Inference only: there is no backward.

Why a kernel of its own. The composed form (`Backend.gathered_conv2d_forward`) gathers each
sample's kernels, (N, C', K, kh, kw), and runs the per-sample convolution. Those kernels
are as big as the weight times the batch (151 MB for ResNet18's stage 4 at batch 32 and
keep 0.5) and each of their values serves only OH*OW multiply-accumulates (16 at stage 4),
so writing and reading them costs more than the arithmetic: the composed form was several
times slower than the dense convolution there (docs/performance.md). Here nothing batch-sized is built. One
parallel task per (sample, group, tile of output rows) works in cache:

  1. columns: bt (P, K*kk), bt[p, j*kk + i*kw + jj] = scale[g, b, j] * x[b, idx[g, b, j], tap],
     one row per output pixel p of the tile (read from a zero-padded copy of x, made once);
  2. per block of 4 output channels: a (4, K*kk), their weights at the gathered channels,
     copied from the shared weight (a run of consecutive channels is one copy);
  3. y[o, p] = a[o] . bt[p], 4 channels x 4 pixels at a time: 16 dot products over K*kk,
     which LLVM vectorises along K*kk with the 16 sums in registers (fastmath reassoc).

Step 2 is the price of reading the weight at gathered channels: C'*K*kk copies per sample
and tile, 1/(tile's pixels) of the multiply-accumulates; at 4x4 maps (16 pixels) it takes
about as long as step 3 (a copy costs about a cycle per value, a short run being too short
for LLVM's vectorised copy loop). The weight itself (9.4 MB at stage 4) is shared by every
sample and never copied whole. It was faster than the composed form at every size measured
(docs/performance.md), so this kernel is used at every size: no switch to gathered kernels
for large maps.

Tiles. Step 1 stores column by column (its inner loop runs over the tile's pixels, long
whatever the kernel size): one store per row of bt, each on its own cache line. So a tile
has at most TILE_PIXELS pixels, and the rows of bt are padded to an odd number of cache
lines, which spreads those stores over every set of the L1 cache. Tiles of 256 pixels and at
most 1 MB of columns were best or within noise at every shape measured (docs/performance.md).
"""

import numpy as np
from numba import njit, prange

from .conv_kernels import conv2d_output_shape
from .mixture_conv import _dot_4x4
from .validation import check_float_array

# A task's tile of whole output rows has at most TILE_PIXELS pixels (step 1 keeps one L1
# line per pixel in use) and its columns bt at most TILE_BYTES (bt stays in L2 while every
# block of output channels sweeps it); at least one row.
TILE_PIXELS = 256
TILE_BYTES = 1 << 20
# Cache line size in bytes (rows of bt span an odd number of lines, see the module docstring).
CACHE_LINE = 64
# Let LLVM reorder the dot products' sums so that they vectorise (no nnan/ninf: NaN propagates).
REDUCE_FASTMATH = {"reassoc", "contract"}


# --------------------------------------------------------------------------------------
# Validation (runs before any kernel)
# --------------------------------------------------------------------------------------


def check_gathered_conv2d(op, x, weight, idx, scale, stride, padding):
    """Validate everything; return the output shape (N, C', OH, OW). Errors are ValueError."""
    check_float_array(op, "x", x, 4, "(N, C, H, W)")
    check_float_array(op, "weight", weight, 5, "(G, C'/G, C, kh, kw)", x.dtype)
    if not isinstance(idx, np.ndarray) or idx.dtype.kind not in "iu" or idx.ndim != 3:
        raise ValueError(f"{op}: expected idx as a 3-d integer numpy.ndarray (G, N, K), got "
                         f"{getattr(idx, 'dtype', type(idx).__name__)} of shape {getattr(idx, 'shape', None)}")
    check_float_array(op, "scale", scale, 3, "(G, N, K)", x.dtype)
    n_batch, c_in = x.shape[:2]
    n_groups, c_out_g, c_w, kh, kw = weight.shape
    if c_w != c_in:
        raise ValueError(f"{op}: expected weight.shape[2] == C ({c_in}), got weight of shape {weight.shape}")
    if idx.shape[:2] != (n_groups, n_batch):
        raise ValueError(f"{op}: expected idx of shape (G, N, K) = ({n_groups}, {n_batch}, K), got {idx.shape}")
    if scale.shape != idx.shape:
        raise ValueError(f"{op}: expected scale of the shape of idx {idx.shape}, got {scale.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= c_in):
        raise ValueError(f"{op}: expected idx in [0, C) = [0, {c_in}), got values in "
                         f"[{idx.min()}, {idx.max()}]")
    if min(n_groups, c_out_g) < 1:
        raise ValueError(f"{op}: expected weight with G, C'/G >= 1, got shape {weight.shape}")
    try:  # the geometry of a grouped conv with one channel per group (validates stride, padding)
        return conv2d_output_shape((n_batch, n_groups, *x.shape[2:]), (n_groups * c_out_g, 1, kh, kw),
                                   stride, padding, 1, n_groups)
    except ValueError as err:
        raise ValueError(f"{op}: {str(err).removeprefix('conv2d: ')}") from None


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


@njit(cache=True)
def _channel_runs(c_idx, run_j, run_c, run_len):
    """Cut the gathered channels into runs of consecutive channels; return their number.

    Run r covers positions [run_j[r], run_j[r] + run_len[r]) of c_idx, holding channels
    run_c[r], run_c[r] + 1, ... .
    """
    n_runs = 0
    for j in range(c_idx.shape[0]):
        if n_runs > 0 and c_idx[j] == run_c[n_runs - 1] + run_len[n_runs - 1]:
            run_len[n_runs - 1] += 1
        else:
            run_j[n_runs], run_c[n_runs], run_len[n_runs] = j, c_idx[j], 1
            n_runs += 1
    return n_runs


@njit(cache=True)
def _pack_columns(xb, c_idx, s_idx, kh, kw, sh, sw, padded_w, out_w, p0, corner, bt):
    """bt[p, j*kk + i*kw + jj] = s_idx[j] * xb[c_idx[j], (oh*sh + i)*Wp + ow*sw + jj] for the
    tile's pixels p (output pixel p0 + p = oh*OW + ow); xb is one padded sample (C, Hp*Wp).

    The innermost loop runs over the tile's pixels (long, whatever the kernel size), reading
    at corner[p] = oh*sh*Wp + ow*sw; a loop over the kh*kw taps would be too short to pay.
    """
    kk = kh * kw
    n_pix = bt.shape[0]
    for p in range(n_pix):
        oh = (p0 + p) // out_w
        corner[p] = oh * sh * padded_w + (p0 + p - oh * out_w) * sw
    for j in range(c_idx.shape[0]):
        plane = xb[c_idx[j]]
        s = s_idx[j]
        for i in range(kh):
            for jj in range(kw):
                col = j * kk + i * kw + jj
                tap = plane[i * padded_w + jj:]
                for p in range(n_pix):
                    bt[p, col] = s * tap[corner[p]]


@njit(cache=True)
def _pack_weights(w, first, n_rows, kk, run_j, run_c, run_len, n_runs, a):
    """a[r, j*kk:(j+1)*kk] = w[first + r, c_j*kk:(c_j+1)*kk] for r < n_rows (one copy per run
    of consecutive channels); rows n_rows.. of a are zeroed."""
    for r in range(a.shape[0]):
        ar = a[r]
        if r >= n_rows:
            for q in range(ar.shape[0]):
                ar[q] = 0
            continue
        wrow = w[first + r]
        for k in range(n_runs):
            n = run_len[k] * kk
            dst = ar[run_j[k] * kk:run_j[k] * kk + n]
            src = wrow[run_c[k] * kk:run_c[k] * kk + n]
            for q in range(n):
                dst[q] = src[q]


@njit(cache=True, fastmath=REDUCE_FASTMATH)
def _dot_block(a, bt, yb, first, n_rows, p0):
    """yb[first + r, p0 + p] = a[r] . bt[p] for r < n_rows (<= 4) and every row p of bt.

    4 pixels at a time: the 16 sums of mixture_conv's _dot_4x4, vectorised by LLVM, held in registers.
    """
    nk = a.shape[1]
    n_pix = bt.shape[0]
    a0, a1, a2, a3 = a[0], a[1], a[2], a[3]
    zero = a.dtype.type(0)
    p = 0
    while p + 4 <= n_pix:
        s = _dot_4x4(a0, a1, a2, a3, bt[p], bt[p + 1], bt[p + 2], bt[p + 3], nk)  # s[4*r + l] = a_r . bt[p + l]
        _store4(yb, first, n_rows, p0 + p, s[0], s[4], s[8], s[12])
        _store4(yb, first, n_rows, p0 + p + 1, s[1], s[5], s[9], s[13])
        _store4(yb, first, n_rows, p0 + p + 2, s[2], s[6], s[10], s[14])
        _store4(yb, first, n_rows, p0 + p + 3, s[3], s[7], s[11], s[15])
        p += 4
    while p < n_pix:  # the last 1-3 pixels of the tile
        b0 = bt[p]
        s0 = s1 = s2 = s3 = zero
        for q in range(nk):
            v = b0[q]
            s0 += a0[q] * v
            s1 += a1[q] * v
            s2 += a2[q] * v
            s3 += a3[q] * v
        _store4(yb, first, n_rows, p0 + p, s0, s1, s2, s3)
        p += 1


@njit(cache=True)
def _store4(yb, first, n_rows, p, s0, s1, s2, s3):
    """yb[first + r, p] = s_r for r < n_rows."""
    yb[first, p] = s0
    if n_rows > 1:
        yb[first + 1, p] = s1
    if n_rows > 2:
        yb[first + 2, p] = s2
    if n_rows > 3:
        yb[first + 3, p] = s3


@njit(parallel=True, cache=True)
def gathered_conv2d_kernel(xpad, padded_w, w, idx, scale, kh, kw, sh, sw, out_w, tile_rows, row_len, y):
    """xpad (N, C, Hp*Wp) zero-padded, w (G*C'/G, C*kh*kw), idx (G, N, K) int64 in [0, C),
    scale (G, N, K) -> y (N, C', OH*OW), every entry written; bt's rows hold row_len >= K*kh*kw
    values. Unchecked: validate first."""
    n_batch = xpad.shape[0]
    n_groups, _, n_keep = idx.shape
    c_out_g = w.shape[0] // n_groups
    kk = kh * kw
    nk = n_keep * kk
    n_pix = y.shape[2]
    tile = tile_rows * out_w
    n_tiles = (n_pix + tile - 1) // tile
    for task in prange(n_batch * n_groups * n_tiles):
        b = task // (n_groups * n_tiles)
        g = (task // n_tiles) % n_groups
        p0 = (task % n_tiles) * tile
        c_idx = idx[g, b]
        run_j = np.empty(n_keep, dtype=np.int64)
        run_c = np.empty(n_keep, dtype=np.int64)
        run_len = np.empty(n_keep, dtype=np.int64)
        n_runs = _channel_runs(c_idx, run_j, run_c, run_len)
        bt = np.empty((min(tile, n_pix - p0), row_len), dtype=y.dtype)
        corner = np.empty(bt.shape[0], dtype=np.int64)
        _pack_columns(xpad[b], c_idx, scale[g, b], kh, kw, sh, sw, padded_w, out_w, p0, corner, bt)
        a = np.empty((4, nk), dtype=y.dtype)
        for first in range(0, c_out_g, 4):
            n_rows = min(4, c_out_g - first)
            _pack_weights(w, g * c_out_g + first, n_rows, kk, run_j, run_c, run_len, n_runs, a)
            _dot_block(a, bt, y[b], g * c_out_g + first, n_rows, p0)


# --------------------------------------------------------------------------------------
# Public driver
# --------------------------------------------------------------------------------------


def _row_len(n, itemsize):
    """n rounded up to whole cache lines, an odd number of them."""
    per_line = CACHE_LINE // itemsize
    lines = -(-n // per_line)
    return (lines + 1 - lines % 2) * per_line


def _as_pair(value):
    """A validated int or (h, w) pair -> (int, int)."""
    return (int(value), int(value)) if np.ndim(value) == 0 else (int(value[0]), int(value[1]))


def gathered_conv2d_forward(x, weight, idx, scale, stride=1, padding=0):
    """y[b, g*C'/G + o] = sum_j scale[g, b, j] * conv2d(x[b, idx[g, b, j]], weight[g, o, idx[g, b, j]]).

    x (N, C, H, W), weight (G, C'/G, C, kh, kw), idx (G, N, K) integers in [0, C),
    scale (G, N, K) -> y (N, C', OH, OW) of x's dtype (see the module docstring).
    """
    op = "gathered_conv2d"
    out_shape = check_gathered_conv2d(op, x, weight, idx, scale, stride, padding)
    (sh, sw), (ph, pw) = _as_pair(stride), _as_pair(padding)
    n_batch, c_in, height, width = x.shape
    n_groups, c_out_g, _, kh, kw = weight.shape
    n_keep = idx.shape[2]
    if n_batch == 0 or n_keep == 0:
        return np.zeros(out_shape, dtype=x.dtype)
    xpad = np.zeros((n_batch, c_in, height + 2 * ph, width + 2 * pw), dtype=x.dtype)
    xpad[:, :, ph:ph + height, pw:pw + width] = x
    w = np.ascontiguousarray(weight).reshape(n_groups * c_out_g, c_in * kh * kw)
    out_h, out_w = out_shape[2:]
    row_len = _row_len(n_keep * kh * kw, x.itemsize)
    tile_rows = max(1, min(out_h, TILE_PIXELS // out_w, TILE_BYTES // (out_w * row_len * x.itemsize)))
    y = np.empty((n_batch, n_groups * c_out_g, out_h * out_w), dtype=x.dtype)
    gathered_conv2d_kernel(xpad.reshape(n_batch, c_in, -1), width + 2 * pw, w,
                           np.ascontiguousarray(idx, dtype=np.int64), np.ascontiguousarray(scale),
                           kh, kw, int(sh), int(sw), out_w, tile_rows, row_len, y)
    return y.reshape(out_shape)
