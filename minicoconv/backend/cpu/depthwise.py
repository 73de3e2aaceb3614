"""Direct depthwise convolution kernels (Numba, CPU), no im2col.

Depthwise means Cin/groups == 1: groups == Cin and output channel co = c*M + m reads
only input channel c = co // M, M = Cout / Cin the channel multiplier.

    y[n, co, oh, ow] = bias[co] + sum_{i,j} w[co, 0, i, j] * xpad[n, c, oh*sh + i*dh,
                                                                 ow*sw + j*dw]

Phase planes. Each input plane is padded and split by stride phase into sh*sw planes
of Hq x Wq (Hq = ceil(Hp/sh), Wq = ceil(Wp/sw), Hp x Wp the padded size):

    phase[a*sw + b][u*Wq + v] = xpad[u*sh + a, v*sw + b]

Tap (i, j) then reads phase ((i*dh) % sh, (j*dw) % sw) at the flat offset
(i*dh // sh)*Wq + (j*dw // sw), the same for every output pixel, if the output is kept
"wide" (OH rows of Wq, the last Wq - OW columns ignored). So every tap is one long
unit-stride loop over OH*Wq elements, which LLVM vectorises, whatever the stride and
dilation. (Direct loops over output rows were slower: a 16-wide row is too short for
the vectorised loop body and falls back to scalar code; docs/performance.md.) The backward uses
the same planes: dw is a dot product of the wide gy (zeros in the ignored columns) with
a shifted phase plane, dx a shifted scatter-add into phase planes mapped back to x.

Parallelism: the forward runs over the N*Cin input planes (each builds its phase planes
once for its M outputs). The backward runs over the Cin input channels, each thread
looping over the batch: it owns dx[:, c] and dw[c*M:(c+1)*M], so neither needs atomics
or per-thread partial sums. Scratch planes are allocated once per worker thread.
Callers validate shapes first: no bounds checks here.
"""

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _phase_tables(height, width, kh, kw, sh, sw, ph, pw, dh, dw):
    """Index tables of the phase layout, computed once per call: integer divisions by a
    runtime stride cost more than copying a small plane row.

    Returns (wq, plane_len, rows, cols, taps):
      rows (H, 2): phase row a of x row r and its flat offset u*Wq in that phase;
      cols (sw, 3): for phase column b, the first x column c0, its v0, and the count;
      taps (kh, kw, 2): phase index and flat shift read by tap (i, j).
    plane_len includes the tail that the last taps read past Hq*Wq.
    """
    hq = (height + 2 * ph + sh - 1) // sh
    wq = (width + 2 * pw + sw - 1) // sw
    plane_len = hq * wq + ((kw - 1) * dw) // sw + 1
    rows = np.empty((height, 2), dtype=np.int64)
    for r in range(height):
        rows[r, 0] = (r + ph) % sh
        rows[r, 1] = ((r + ph) // sh) * wq
    cols = np.empty((sw, 3), dtype=np.int64)
    for b in range(sw):
        c0 = (b - pw) % sw
        cols[b, 0] = c0
        cols[b, 1] = (c0 + pw) // sw
        cols[b, 2] = max(0, (width - c0 + sw - 1) // sw)
    taps = np.empty((kh, kw, 2), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            taps[i, j, 0] = (i * dh % sh) * sw + j * dw % sw
            taps[i, j, 1] = (i * dh // sh) * wq + j * dw // sw
    return wq, plane_len, rows, cols, taps


@njit(cache=True)
def _plane_to_phases(src, sw, rows, cols, phases):
    """x plane (H, W) -> the real-pixel entries of its phase planes (padding untouched)."""
    for r in range(src.shape[0]):
        for b in range(sw):
            src_row = src[r, cols[b, 0]:]
            dst = phases[rows[r, 0] * sw + b, rows[r, 1] + cols[b, 1]:]
            if sw == 1:
                for t in range(cols[b, 2]):
                    dst[t] = src_row[t]
            else:
                for t in range(cols[b, 2]):
                    dst[t] = src_row[t * sw]


@njit(cache=True)
def _phases_to_plane(phases, sw, rows, cols, dst):
    """Inverse of _plane_to_phases: dst (H, W) = the real-pixel entries of the phases."""
    for r in range(dst.shape[0]):
        for b in range(sw):
            dst_row = dst[r, cols[b, 0]:]
            src = phases[rows[r, 0] * sw + b, rows[r, 1] + cols[b, 1]:]
            if sw == 1:
                for t in range(cols[b, 2]):
                    dst_row[t] = src[t]
            else:
                for t in range(cols[b, 2]):
                    dst_row[t * sw] = src[t]


@njit(parallel=True, cache=True, fastmath={"contract"})
def depthwise_forward_kernel(x, w, bias, sh, sw, ph, pw, dh, dw, n_threads, y):
    """x (N, C, H, W), w (C*M, 1, kh, kw), bias (C*M,) or empty -> y (N, C*M, OH, OW).

    n_threads: numba.get_num_threads() of the caller (one scratch set per worker).
    """
    n_batch, n_chan, height, width = x.shape
    n_out, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    mult = n_out // n_chan
    out_h, out_w = y.shape[2], y.shape[3]
    wq, plane_len, rows, cols, taps = _phase_tables(height, width, kh, kw, sh, sw, ph, pw,
                                                   dh, dw)
    n_wide = out_h * wq
    has_bias = bias.shape[0] > 0
    n_tasks = n_batch * n_chan
    n_workers = min(n_threads, n_tasks)
    for worker in prange(n_workers):
        phases = np.zeros((sh * sw, plane_len), dtype=x.dtype)
        wide = np.empty(n_wide, dtype=x.dtype)
        for task in range(worker, n_tasks, n_workers):
            n = task // n_chan
            c = task - n * n_chan
            _plane_to_phases(x[n, c], sw, rows, cols, phases)
            for co in range(c * mult, (c + 1) * mult):
                beta = bias[co] if has_bias else y.dtype.type(0)
                for q in range(n_wide):
                    wide[q] = beta
                for i in range(kh):
                    for j in range(kw):
                        shift = taps[i, j, 1]
                        src = phases[taps[i, j, 0], shift:shift + n_wide]
                        wv = w[co, 0, i, j]
                        for q in range(n_wide):
                            wide[q] += wv * src[q]
                for oh in range(out_h):
                    dst = y[n, co, oh]
                    row = wide[oh * wq:oh * wq + out_w]
                    for t in range(out_w):
                        dst[t] = row[t]


@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def depthwise_backward_kernel(gy, x, w, sh, sw, ph, pw, dh, dw, n_threads, need_dx, need_dw,
                              dx, dwt):
    """gy (N, C*M, OH, OW) -> dx (N, C, H, W) if need_dx, dwt (C*M, 1, kh, kw) if need_dw.

    Both outputs are overwritten (the one not asked for is not touched).
    """
    n_batch, n_chan, height, width = x.shape
    n_out, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    mult = n_out // n_chan
    out_h, out_w = gy.shape[2], gy.shape[3]
    wq, plane_len, rows, cols, taps = _phase_tables(height, width, kh, kw, sh, sw, ph, pw,
                                                   dh, dw)
    n_wide = out_h * wq
    zero = gy.dtype.type(0)
    n_workers = min(n_threads, n_chan)
    for worker in prange(n_workers):
        phases = np.zeros((sh * sw, plane_len), dtype=x.dtype)
        grad_phases = np.empty((sh * sw, plane_len), dtype=x.dtype)
        wide = np.zeros(n_wide, dtype=x.dtype)  # columns >= OW stay zero
        for c in range(worker, n_chan, n_workers):
            if need_dw:
                for co in range(c * mult, (c + 1) * mult):
                    for i in range(kh):
                        for j in range(kw):
                            dwt[co, 0, i, j] = zero
            for n in range(n_batch):
                if need_dw:
                    _plane_to_phases(x[n, c], sw, rows, cols, phases)
                if need_dx:
                    grad_phases[:] = zero
                for co in range(c * mult, (c + 1) * mult):
                    for oh in range(out_h):
                        src_row = gy[n, co, oh]
                        row = wide[oh * wq:oh * wq + out_w]
                        for t in range(out_w):
                            row[t] = src_row[t]
                    if need_dw:
                        for i in range(kh):
                            for j in range(kw):
                                shift = taps[i, j, 1]
                                src = phases[taps[i, j, 0], shift:shift + n_wide]
                                acc = zero
                                for q in range(n_wide):
                                    acc += wide[q] * src[q]
                                dwt[co, 0, i, j] += acc
                    if need_dx:
                        for i in range(kh):
                            for j in range(kw):
                                shift = taps[i, j, 1]
                                dst = grad_phases[taps[i, j, 0], shift:shift + n_wide]
                                wv = w[co, 0, i, j]
                                for q in range(n_wide):
                                    dst[q] += wv * wide[q]
                if need_dx:
                    _phases_to_plane(grad_phases, sw, rows, cols, dx[n, c])
