"""CoConv's expert mixing: elementwise products and sums over 6-d views.

Expert-stacked maps (N, G*n*D, H, W): channel (g*n + i)*D + d is expert i's channel g*D + d;
routing weights r (N, G, n, D); plain maps (N, G*D, H, W). Viewed 6-d, stacked is
(N, G, n, D, H, W), r is (N, G, n, D, 1, 1) and plain is (N, G, 1, D, H, W), so
    weighted sum:  y = sum over i of r * z          scale:  xs = r * x
and each backward is the other one plus dr = sum over (H, W) of (the other input) * (the gradient).
"""

from __future__ import annotations

import numpy as np

from .checks import float_array

Grads = tuple[np.ndarray | None, np.ndarray | None]


def _views(op: str, r: np.ndarray, stacked: np.ndarray | None = None, plain: np.ndarray | None = None,
           stacked_name: str = "z", plain_name: str = "x") -> tuple:
    """Validate; return (stacked 6-d, r 6-d, plain 6-d) views (None for a missing array)."""
    float_array(op, "r", r, 4, "(N, G, n, D)")
    n_batch, n_groups, n_exp, depth = r.shape
    s6 = p6 = None
    spatial = None
    for name, a, channels, is_stacked in ((stacked_name, stacked, n_groups * n_exp * depth, True),
                                          (plain_name, plain, n_groups * depth, False)):
        if a is None:
            continue
        float_array(op, name, a, 4, "(N, C, H, W)", r.dtype)
        if a.shape[:2] != (n_batch, channels) or (spatial is not None and a.shape[2:] != spatial):
            raise ValueError(f"{op}: expected {name} of shape ({n_batch}, {channels}, H, W) for r {r.shape}, "
                             f"got {a.shape}")
        spatial = a.shape[2:]
        if is_stacked:
            s6 = a.reshape(*r.shape, *spatial)
        else:
            p6 = a.reshape(n_batch, n_groups, 1, depth, *spatial)
    return s6, r.reshape(*r.shape, 1, 1), p6


def expert_weighted_sum_forward(z: np.ndarray, r: np.ndarray) -> np.ndarray:
    """y[b, g*D + d] = sum_i r[b, g, i, d] * z[b, (g*n + i)*D + d]:  z stacked -> y (N, G*D, H, W)."""
    z6, r6, _ = _views("expert_weighted_sum", r, z)
    y = (z6 * r6).sum(axis=2)
    return y.reshape(z.shape[0], -1, *z.shape[2:])


def expert_weighted_sum_backward(gy: np.ndarray, z: np.ndarray, r: np.ndarray, need_dz: bool = True,
                                 need_dr: bool = True) -> Grads:
    """(dz, dr): dz[b, (g*n + i)*D + d] = r[b, g, i, d] * gy[b, g*D + d],  dr = sum over (H, W) of z * gy."""
    z6, r6, g6 = _views("expert_weighted_sum_backward", r, z, gy, plain_name="gy")
    dz = (g6 * r6).reshape(z.shape) if need_dz else None
    dr = (z6 * g6).sum(axis=(4, 5)) if need_dr else None
    return dz, dr


def expert_scale_forward(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """xs[b, (g*n + i)*D + d] = r[b, g, i, d] * x[b, g*D + d]:  x plain -> xs (N, G*n*D, H, W)."""
    _, r6, x6 = _views("expert_scale", r, None, x)
    return (x6 * r6).reshape(x.shape[0], -1, *x.shape[2:])


def expert_scale_backward(gxs: np.ndarray, x: np.ndarray, r: np.ndarray, need_dx: bool = True,
                          need_dr: bool = True) -> Grads:
    """(dx, dr): dx[b, g*D + d] = sum_i r[b, g, i, d] * gxs[b, (g*n + i)*D + d],  dr = sum over (H, W) of gxs * x."""
    g6, r6, x6 = _views("expert_scale_backward", r, gxs, x, stacked_name="gxs")
    dx = (g6 * r6).sum(axis=2).reshape(x.shape) if need_dx else None
    dr = (g6 * x6).sum(axis=(4, 5)) if need_dr else None
    return dx, dr
