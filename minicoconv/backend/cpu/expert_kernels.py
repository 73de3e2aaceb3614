"""Expert mixing kernels for the CPU backend (CoConv's routing weights applied per channel).

Layout. Expert-stacked maps hold G groups of n experts of D channels each, in the order
(g, i, d): channel (g*n + i)*D + d of z (N, G*n*D, H, W) is expert i's channel g*D + d.
The routing weights r (N, G, n, D) hold one scalar per (sample, group, expert, channel).
Per-expert-free maps x, y (N, G*D, H, W) have channel g*D + d. With L = H*W:

    expert_weighted_sum:  y[b, g, d, :]     = sum_i r[b, g, i, d] * z[b, g, i, d, :]
        backward:         dz[b, g, i, d, :] = r[b, g, i, d] * dy[b, g, d, :]
                          dr[b, g, i, d]    = sum_L z[b, g, i, d, :] * dy[b, g, d, :]
    expert_scale:         xs[b, g, i, d, :] = r[b, g, i, d] * x[b, g, d, :]
        backward:         dx[b, g, d, :]    = sum_i r[b, g, i, d] * dxs[b, g, i, d, :]
                          dr[b, g, i, d]    = sum_L dxs[b, g, i, d, :] * x[b, g, d, :]

Each op's backward is the other op's forward plus a dot product over L, so two kernels
do all four: `_sum_over_experts_kernel` (a weighted sum over i, optionally with the dot
products of each expert plane against another map) and `_scale_per_expert_kernel` (one
scaled copy per expert, optionally with the same dot products). Both run in parallel
over the N*G*D (sample, group, channel) tasks; a task touches n planes of L values,
which stay in cache between its passes. Dot products are accumulated in float64.

Arrays are float32 or float64 and share one dtype; outputs keep it. The public
functions validate shapes, dtypes and contiguity before any kernel runs.
"""

import numpy as np
from numba import njit, prange

from .validation import FLOAT_DTYPES, check_float_array

# Let LLVM reorder float sums so that the dot products vectorise (no nnan/ninf: NaN propagates).
REDUCE_FASTMATH = {"reassoc", "contract"}


# --------------------------------------------------------------------------------------
# Validation (runs before any kernel)
# --------------------------------------------------------------------------------------


def _check_weights(op, r):
    r = check_float_array(op, "r", r, 4, "(N, G, n, D)")
    if r.shape[2] < 1:
        raise ValueError(f"{op}: expected r of shape (N, G, n, D) with n >= 1 experts, got {r.shape}")
    return r


def _check_stacked(op, name, a, r):
    """a (N, G*n*D, H, W) matching r (N, G, n, D); returns it C-contiguous."""
    a = check_float_array(op, name, a, 4, "(N, G*n*D, H, W)", r.dtype, like="r")
    n_batch, n_groups, n_exp, depth = r.shape
    if a.shape[0] != n_batch or a.shape[1] != n_groups * n_exp * depth:
        raise ValueError(f"{op}: expected {name} of shape ({n_batch}, {n_groups * n_exp * depth}, H, W) "
                         f"= (N, G*n*D, H, W) for r of shape {r.shape} = (N, G, n, D), got {a.shape}")
    return a


def _check_plain(op, name, a, r, like=None):
    """a (N, G*D, H, W) matching r (N, G, n, D) (and the H, W of `like`); returns it C-contiguous."""
    a = check_float_array(op, name, a, 4, "(N, G*D, H, W)", r.dtype, like="r")
    n_batch, n_groups, _, depth = r.shape
    expected = (n_batch, n_groups * depth) + (a.shape[2:] if like is None else like.shape[2:])
    if a.shape != expected:
        raise ValueError(f"{op}: expected {name} of shape {expected} = (N, G*D, H, W) for r of shape {r.shape} "
                         f"= (N, G, n, D){'' if like is None else f' and maps of {like.shape[2:]}'}, got {a.shape}")
    return a


def _stacked_view(a, r):
    """(N, G*n*D, H, W) -> (N, G, n, D, L) view of a C-contiguous array."""
    return a.reshape(*r.shape, a.shape[2] * a.shape[3])


def _plain_view(a, r):
    """(N, G*D, H, W) -> (N, G, D, L) view of a C-contiguous array."""
    return a.reshape(r.shape[0], r.shape[1], r.shape[3], a.shape[2] * a.shape[3])


_EMPTY_5D = {dt.type: np.empty((0, 0, 0, 0, 0), dtype=dt) for dt in FLOAT_DTYPES}
_EMPTY_4D = {dt.type: np.empty((0, 0, 0, 0), dtype=dt) for dt in FLOAT_DTYPES}


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


@njit(parallel=True, cache=True, fastmath=REDUCE_FASTMATH)
def _sum_over_experts_kernel(z, r, other, need_sum, need_dot, y, dot):
    """z (N, G, n, D, L), r (N, G, n, D); each output only if asked:
    y (N, G, D, L) = sum_i r[:, :, i] * z[:, :, i];  dot (N, G, n, D) = sum_L z * other, other (N, G, D, L)."""
    n_batch, n_groups, n_exp, depth, size = z.shape
    per_sample = n_groups * depth
    for task in prange(n_batch * per_sample):
        b = task // per_sample
        g = (task - b * per_sample) // depth
        d = task - b * per_sample - g * depth
        if need_sum:
            out = y[b, g, d]
            w = r[b, g, 0, d]
            src = z[b, g, 0, d]
            for k in range(size):
                out[k] = w * src[k]
            for i in range(1, n_exp):
                w = r[b, g, i, d]
                src = z[b, g, i, d]
                for k in range(size):
                    out[k] += w * src[k]
        if need_dot:
            against = other[b, g, d]
            for i in range(n_exp):
                src = z[b, g, i, d]
                acc = np.float64(0.0)
                for k in range(size):
                    acc += src[k] * against[k]
                dot[b, g, i, d] = acc


@njit(parallel=True, cache=True, fastmath=REDUCE_FASTMATH)
def _scale_per_expert_kernel(x, r, other, need_scale, need_dot, out, dot):
    """x (N, G, D, L), r (N, G, n, D); each output only if asked:
    out (N, G, n, D, L) = r[..., None] * x[:, :, None];  dot (N, G, n, D) = sum_L other * x, other like out."""
    n_batch, n_groups, n_exp, depth = r.shape
    size = x.shape[3]
    per_sample = n_groups * depth
    for task in prange(n_batch * per_sample):
        b = task // per_sample
        g = (task - b * per_sample) // depth
        d = task - b * per_sample - g * depth
        src = x[b, g, d]
        for i in range(n_exp):
            if need_scale:
                w = r[b, g, i, d]
                dst = out[b, g, i, d]
                for k in range(size):
                    dst[k] = w * src[k]
            if need_dot:
                plane = other[b, g, i, d]
                acc = np.float64(0.0)
                for k in range(size):
                    acc += plane[k] * src[k]
                dot[b, g, i, d] = acc


# --------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------


def expert_weighted_sum_forward(z, r):
    """y[b, g*D + d] = sum_i r[b, g, i, d] * z[b, (g*n + i)*D + d].

    z: (N, G*n*D, H, W) expert-stacked maps; r: (N, G, n, D). Returns y (N, G*D, H, W).
    """
    op = "expert_weighted_sum"
    r = _check_weights(op, r)
    z = _check_stacked(op, "z", z, r)
    y = np.empty((r.shape[0], r.shape[1] * r.shape[3], *z.shape[2:]), dtype=z.dtype)
    _sum_over_experts_kernel(_stacked_view(z, r), r, _EMPTY_4D[z.dtype.type], True, False, _plain_view(y, r),
                             _EMPTY_4D[z.dtype.type])
    return y


def expert_weighted_sum_backward(gy, z, r, need_dz=True, need_dr=True):
    """Gradients of expert_weighted_sum_forward: dz = r * gy per expert, dr = sum over (H, W) of z * gy.

    gy: (N, G*D, H, W); z: (N, G*n*D, H, W); r: (N, G, n, D). Returns (dz like z, dr like r),
    each None unless asked for.
    """
    op = "expert_weighted_sum_backward"
    r = _check_weights(op, r)
    z = _check_stacked(op, "z", z, r)
    gy = _check_plain(op, "gy", gy, r, like=z)
    dtype = z.dtype.type
    dz = np.empty_like(z) if need_dz else None
    dr = np.empty_like(r) if need_dr else None
    if need_dz or need_dr:
        _scale_per_expert_kernel(_plain_view(gy, r), r, _stacked_view(z, r), bool(need_dz), bool(need_dr),
                                 _stacked_view(dz, r) if need_dz else _EMPTY_5D[dtype],
                                 dr if need_dr else _EMPTY_4D[dtype])
    return dz, dr


def expert_scale_forward(x, r):
    """xs[b, (g*n + i)*D + d] = r[b, g, i, d] * x[b, g*D + d]: one scaled copy of x per expert.

    x: (N, G*D, H, W); r: (N, G, n, D). Returns xs (N, G*n*D, H, W).
    """
    op = "expert_scale"
    r = _check_weights(op, r)
    x = _check_plain(op, "x", x, r)
    xs = np.empty((r.shape[0], r.shape[1] * r.shape[2] * r.shape[3], *x.shape[2:]), dtype=x.dtype)
    _scale_per_expert_kernel(_plain_view(x, r), r, _EMPTY_5D[x.dtype.type], True, False, _stacked_view(xs, r),
                             _EMPTY_4D[x.dtype.type])
    return xs


def expert_scale_backward(gxs, x, r, need_dx=True, need_dr=True):
    """Gradients of expert_scale_forward: dx = sum_i r * gxs, dr = sum over (H, W) of gxs * x.

    gxs: (N, G*n*D, H, W); x: (N, G*D, H, W); r: (N, G, n, D). Returns (dx like x, dr like r),
    each None unless asked for.
    """
    op = "expert_scale_backward"
    r = _check_weights(op, r)
    gxs = _check_stacked(op, "gxs", gxs, r)
    x = _check_plain(op, "x", x, r, like=gxs)
    dtype = x.dtype.type
    dx = np.empty_like(x) if need_dx else None
    dr = np.empty_like(r) if need_dr else None
    if need_dx or need_dr:
        _sum_over_experts_kernel(_stacked_view(gxs, r), r, _plain_view(x, r), bool(need_dx), bool(need_dr),
                                 _plain_view(dx, r) if need_dx else _EMPTY_4D[dtype],
                                 dr if need_dr else _EMPTY_4D[dtype])
    return dx, dr
