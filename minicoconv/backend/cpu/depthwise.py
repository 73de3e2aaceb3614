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
a shifted phase plane, dx the adjoint, gathered phase by phase (below), mapped back to x.

Taps are applied GROUP (3) at a time (`_tap_groups`: the taps of one phase, padded with
zero-weight slots): a pass over a plane does three multiply-adds per load and store of
the output instead of one. dx is gathered, not scattered: grad_phase_p[r] = sum over
the taps of phase p of w_t * gwide[r - shift_t], so a group writes each entry once.

Parallelism: forward and backward run over the N*C input planes, each worker taking a
contiguous range of them (memory order: walking one channel through the batch strode
over the whole tensor and was 1.3-3x slower; docs/performance.md). Each plane builds its
phase planes once for its M outputs. In the backward a plane owns dx[n, c]; dw is summed
per worker and the workers' sums added at the end (a tiny (workers, C*M, kh, kw) array),
so nothing needs atomics. Scratch planes are allocated once per worker thread.
Callers validate shapes first: no bounds checks here.
"""

import numpy as np
from numba import njit, prange

#: taps per pass over a plane (_tap_groups); the kernels below are written for 3
GROUP = 3


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
def _tap_groups(taps, n_phases):
    """The taps grouped by the phase they read, GROUP at a time: (n_groups, 2 + 3*GROUP) rows of
    [phase, first, i_0, j_0, shift_0, ..., i_{G-1}, j_{G-1}, shift_{G-1}], i = -1 for a padding
    slot (weight 0, the shift of the group's first tap). first = 1 for a phase's first group.
    One pass over a plane then serves GROUP taps: each output is loaded and stored once per
    group instead of once per tap. (i, j) are stored, not i*kw + j: dividing by a runtime kw
    in every group of every plane showed in the small-map timings.
    """
    kh, kw = taps.shape[0], taps.shape[1]
    n_groups = 0
    for p in range(n_phases):
        count = 0
        for i in range(kh):
            for j in range(kw):
                count += taps[i, j, 0] == p
        n_groups += (count + GROUP - 1) // GROUP
    groups = np.empty((n_groups, 2 + 3 * GROUP), dtype=np.int64)
    g = -1
    for p in range(n_phases):
        slot = GROUP
        first = 1
        for i in range(kh):
            for j in range(kw):
                if taps[i, j, 0] != p:
                    continue
                if slot == GROUP:
                    g += 1
                    slot = 0
                    groups[g, 0], groups[g, 1] = p, first
                    first = 0
                    for s in range(GROUP):  # padding slots until filled
                        groups[g, 2 + 3 * s], groups[g, 3 + 3 * s] = -1, 0
                        groups[g, 4 + 3 * s] = taps[i, j, 1]
                groups[g, 2 + 3 * slot], groups[g, 3 + 3 * slot] = i, j
                groups[g, 4 + 3 * slot] = taps[i, j, 1]
                slot += 1
    return groups


@njit(inline="always")
def _tap_weight(wflat, tap):
    return wflat[tap] if tap >= 0 else wflat.dtype.type(0)


@njit(inline="always", fastmath={"contract"})
def _taps3(dst, a, b, c, wa, wb, wc, beta, assign):
    """dst[q] (= beta or +=) wa*a[q] + wb*b[q] + wc*c[q], over dst's length."""
    if assign:
        for q in range(dst.shape[0]):
            dst[q] = beta + wa * a[q] + wb * b[q] + wc * c[q]
    else:
        for q in range(dst.shape[0]):
            dst[q] += wa * a[q] + wb * b[q] + wc * c[q]


@njit(inline="always", fastmath={"reassoc", "contract"})
def _dots3(v, a, b, c):
    """(<v, a>, <v, b>, <v, c>) over v's length, in one pass over v."""
    sa = sb = sc = v.dtype.type(0)
    for q in range(v.shape[0]):
        vq = v[q]
        sa += vq * a[q]
        sb += vq * b[q]
        sc += vq * c[q]
    return sa, sb, sc


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


@njit(inline="always")
def _weight(w, co, groups, g, slot):
    """w[co, 0, i, j] for the tap in slot `slot` of group g, 0 for a padding slot."""
    i = groups[g, 2 + 3 * slot]
    return w[co, 0, i, groups[g, 3 + 3 * slot]] if i >= 0 else w.dtype.type(0)


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
    groups = _tap_groups(taps, sh * sw)
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
                for g in range(groups.shape[0]):
                    plane = phases[groups[g, 0]]
                    s0, s1, s2 = groups[g, 4], groups[g, 7], groups[g, 10]
                    _taps3(wide, plane[s0:s0 + n_wide], plane[s1:s1 + n_wide], plane[s2:s2 + n_wide],
                           _weight(w, co, groups, g, 0), _weight(w, co, groups, g, 1),
                           _weight(w, co, groups, g, 2), beta, g == 0)
                for oh in range(out_h):
                    dst = y[n, co, oh]
                    row = wide[oh * wq:oh * wq + out_w]
                    for t in range(out_w):
                        dst[t] = row[t]


@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def depthwise_backward_kernel(gy, x, w, sh, sw, ph, pw, dh, dw, n_threads, need_dx, need_dw,
                              dx, dwt):
    """gy (N, C*M, OH, OW) -> dx (N, C, H, W) if need_dx, dwt (C*M, 1, kh, kw) if need_dw.

    Both outputs are overwritten (the one not asked for is not touched). dx is gathered:
    grad_phase_p[r] = sum over the taps t of phase p of w_t * gwide[r - shift_t], read from
    gwide with `front` zeros before it and zeros after, so that every group of taps is
    one pass over the phase plane that writes each entry once.
    """
    n_batch, n_chan, height, width = x.shape
    n_out, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    mult = n_out // n_chan
    out_h, out_w = gy.shape[2], gy.shape[3]
    wq, plane_len, rows, cols, taps = _phase_tables(height, width, kh, kw, sh, sw, ph, pw,
                                                   dh, dw)
    groups = _tap_groups(taps, sh * sw)
    front = 0
    for g in range(groups.shape[0]):
        front = max(front, groups[g, 4], groups[g, 7], groups[g, 10])
    n_wide = out_h * wq
    zero = gy.dtype.type(0)
    n_tasks = n_batch * n_chan
    n_workers = min(n_threads, n_tasks)
    partial = np.zeros((n_workers if need_dw else 0, n_out, kh, kw), dtype=x.dtype)
    for worker in prange(n_workers):
        phases = np.zeros((sh * sw, plane_len), dtype=x.dtype)
        grad_phases = np.zeros((sh * sw, plane_len), dtype=x.dtype)  # phases no tap reads stay 0
        padded = np.zeros(front + plane_len, dtype=x.dtype)  # only the gy entries are ever written
        wide = padded[front:front + n_wide]  # columns >= OW stay zero
        for task in range(worker * n_tasks // n_workers, (worker + 1) * n_tasks // n_workers):
            n = task // n_chan
            c = task - n * n_chan
            if need_dw:
                _plane_to_phases(x[n, c], sw, rows, cols, phases)
            for co in range(c * mult, (c + 1) * mult):
                for oh in range(out_h):
                    src_row = gy[n, co, oh]
                    row = wide[oh * wq:oh * wq + out_w]
                    for t in range(out_w):
                        row[t] = src_row[t]
                for g in range(groups.shape[0]):
                    p = groups[g, 0]
                    s0, s1, s2 = groups[g, 4], groups[g, 7], groups[g, 10]
                    if need_dw:
                        plane = phases[p]
                        d0, d1, d2 = _dots3(wide, plane[s0:s0 + n_wide], plane[s1:s1 + n_wide],
                                            plane[s2:s2 + n_wide])
                        for slot, d in ((0, d0), (1, d1), (2, d2)):
                            i = groups[g, 2 + 3 * slot]
                            if i >= 0:
                                partial[worker, co, i, groups[g, 3 + 3 * slot]] += d
                    if need_dx:
                        first = co == c * mult and groups[g, 1] == 1
                        _taps3(grad_phases[p, :plane_len], padded[front - s0:front - s0 + plane_len],
                               padded[front - s1:front - s1 + plane_len],
                               padded[front - s2:front - s2 + plane_len], _weight(w, co, groups, g, 0),
                               _weight(w, co, groups, g, 1), _weight(w, co, groups, g, 2), zero, first)
            if need_dx:
                _phases_to_plane(grad_phases, sw, rows, cols, dx[n, c])
    if need_dw:  # the workers' partial sums, in worker order
        for co in range(n_out):
            for i in range(kh):
                for j in range(kw):
                    acc = zero
                    for worker in range(n_workers):
                        acc += partial[worker, co, i, j]
                    dwt[co, 0, i, j] = acc
