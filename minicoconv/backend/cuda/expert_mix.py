"""Expert mixing kernels on the GPU, same contract as the CPU backend (`cpu/expert_kernels.py`).

Expert-stacked maps z (N, G*n*D, H, W), routing weights r (N, G, n, D), plain maps
(N, G*D, H, W); with L = H*W and bg = b*G + g, the flat index of r[b, g, i, d] is
j = (bg*n + i)*D + d, of z[b, g, i, d, k] is j*L + k, and of the plain map's
[b, g, d, k] is (bg*D + d)*L + k. Three kernels on flat views:

- `_sum_over_experts_kernel`: one thread per plain-map element, y = sum_i r * z
  (expert_weighted_sum forward, expert_scale's dx);
- `_scale_per_expert_kernel`: one thread per stacked element, out = r * x
  (expert_scale forward, expert_weighted_sum's dz);
- `_expert_dot_kernel` / `_expert_dot_block_kernel`: dr[j] = sum_k stacked[j*L + k] *
  plain[(bg*D + d)*L + k], one thread per j when L is short, else one block per j whose
  threads stride over L and meet in `block_sum` (as in reduce.py).
Sums are accumulated in float64.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from . import device as dev
from .reduce import block_sum

THREADS = dev.THREADS


@cuda.jit
def _sum_over_experts_kernel(z, r, n_exp, depth, size, y):
    for t in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        k = t % size
        d = (t // size) % depth
        bg = t // (size * depth)
        acc = 0.0
        for i in range(n_exp):
            j = (bg * n_exp + i) * depth + d
            acc += r[j] * z[j * size + k]
        y[t] = acc


@cuda.jit
def _scale_per_expert_kernel(x, r, n_exp, depth, size, out):
    for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        j = t // size
        bg = j // (n_exp * depth)
        out[t] = r[j] * x[(bg * depth + j % depth) * size + t % size]


@cuda.jit(device=True)
def _plain_base(j, n_exp, depth, size):
    """Flat offset of the plain-map plane that stacked plane j pairs with."""
    return ((j // (n_exp * depth)) * depth + j % depth) * size


@cuda.jit
def _expert_dot_kernel(stacked, plain, n_exp, depth, size, dot):
    for j in range(cuda.grid(1), dot.size, cuda.gridsize(1)):
        base = _plain_base(j, n_exp, depth, size)
        acc = 0.0
        for k in range(size):
            acc += stacked[j * size + k] * plain[base + k]
        dot[j] = acc


@cuda.jit
def _expert_dot_block_kernel(stacked, plain, n_exp, depth, size, dot):
    partial = cuda.shared.array(THREADS, np.float64)
    for j in range(cuda.blockIdx.x, dot.size, cuda.gridDim.x):
        base = _plain_base(j, n_exp, depth, size)
        acc = 0.0
        for k in range(cuda.threadIdx.x, size, THREADS):
            acc += stacked[j * size + k] * plain[base + k]
        total = block_sum(partial, acc)
        if cuda.threadIdx.x == 0:
            dot[j] = total


# ---- validated drivers (same signatures as the CPU backend) ---------------------------------
def _check_weights(op, r):
    dev.check_device_array(op, "r", r, 4, "(N, G, n, D)")
    if r.shape[2] < 1:
        raise ValueError(f"{op}: expected r of shape (N, G, n, D) with n >= 1 experts, got {tuple(r.shape)}")
    return r


def _check_maps(op, name, a, r, stacked, like=None):
    """a (N, G*n*D, H, W) if stacked else (N, G*D, H, W), of r's dtype (and the H, W of `like`)."""
    layout = "(N, G*n*D, H, W)" if stacked else "(N, G*D, H, W)"
    dev.check_device_array(op, name, a, 4, layout)
    if a.dtype != r.dtype:
        raise ValueError(f"{op}: expected {name} of dtype {r.dtype} (like r), got {a.dtype}")
    n_batch, n_groups, n_exp, depth = r.shape
    spatial = tuple(a.shape[2:]) if like is None else tuple(like.shape[2:])
    expected = (n_batch, n_groups * (n_exp if stacked else 1) * depth) + spatial
    if tuple(a.shape) != expected:
        raise ValueError(f"{op}: expected {name} of shape {expected} = {layout} for r of shape {tuple(r.shape)} "
                         f"= (N, G, n, D), got {tuple(a.shape)}")
    return a


def _dot(stacked, plain, r, dr):
    """dr (like r) = sum over (H, W) of each stacked plane times its plain-map plane."""
    size = stacked.shape[2] * stacked.shape[3]
    args = (dev.flat(stacked), dev.flat(plain), r.shape[2], r.shape[3], size, dev.flat(dr))
    if size >= THREADS:
        dev.launch(_expert_dot_block_kernel, dr.size, *args, items_per_block=1)
    else:
        dev.launch(_expert_dot_kernel, dr.size, *args)


def expert_weighted_sum_forward(z, r):
    """y[b, g*D + d] = sum_i r[b, g, i, d] * z[b, (g*n + i)*D + d]: z (N, G*n*D, H, W) -> y (N, G*D, H, W)."""
    op = "expert_weighted_sum"
    r = _check_weights(op, r)
    z = _check_maps(op, "z", z, r, stacked=True)
    y = dev.empty((r.shape[0], r.shape[1] * r.shape[3], *z.shape[2:]), z.dtype)
    dev.launch(_sum_over_experts_kernel, y.size, dev.flat(z), dev.flat(r), r.shape[2], r.shape[3],
               z.shape[2] * z.shape[3], dev.flat(y))
    return y


def expert_weighted_sum_backward(gy, z, r, need_dz=True, need_dr=True):
    """(dz, dr): dz = r * gy per expert, dr = sum over (H, W) of z * gy; each None unless asked."""
    op = "expert_weighted_sum_backward"
    r = _check_weights(op, r)
    z = _check_maps(op, "z", z, r, stacked=True)
    gy = _check_maps(op, "gy", gy, r, stacked=False, like=z)
    dz = dr = None
    if need_dz:
        dz = dev.empty(z.shape, z.dtype)
        dev.launch(_scale_per_expert_kernel, dz.size, dev.flat(gy), dev.flat(r), r.shape[2], r.shape[3],
                   z.shape[2] * z.shape[3], dev.flat(dz))
    if need_dr:
        dr = dev.empty(r.shape, r.dtype)
        _dot(z, gy, r, dr)
    return dz, dr


def expert_scale_forward(x, r):
    """xs[b, (g*n + i)*D + d] = r[b, g, i, d] * x[b, g*D + d]: x (N, G*D, H, W) -> xs (N, G*n*D, H, W)."""
    op = "expert_scale"
    r = _check_weights(op, r)
    x = _check_maps(op, "x", x, r, stacked=False)
    xs = dev.empty((r.shape[0], r.shape[1] * r.shape[2] * r.shape[3], *x.shape[2:]), x.dtype)
    dev.launch(_scale_per_expert_kernel, xs.size, dev.flat(x), dev.flat(r), r.shape[2], r.shape[3],
               x.shape[2] * x.shape[3], dev.flat(xs))
    return xs


def expert_scale_backward(gxs, x, r, need_dx=True, need_dr=True):
    """(dx, dr): dx = sum_i r * gxs, dr = sum over (H, W) of gxs * x; each None unless asked."""
    op = "expert_scale_backward"
    r = _check_weights(op, r)
    gxs = _check_maps(op, "gxs", gxs, r, stacked=True)
    x = _check_maps(op, "x", x, r, stacked=False, like=gxs)
    dx = dr = None
    if need_dx:
        dx = dev.empty(x.shape, x.dtype)
        dev.launch(_sum_over_experts_kernel, dx.size, dev.flat(gxs), dev.flat(r), r.shape[2], r.shape[3],
                   x.shape[2] * x.shape[3], dev.flat(dx))
    if need_dr:
        dr = dev.empty(r.shape, r.dtype)
        _dot(gxs, x, r, dr)
    return dx, dr
