"""Numba kernels of Winograd F(2x2, 3x3): the tile transforms fused with the gather and scatter.

The matrices are those of the reference form (minicoconv/backend/reference/winograd.py):

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]
    G2' = [[1, 0], [1/2, 1/2], [1/2, -1/2], [0, -1]]     (F(3x3, 2x2)'s G2 with its last row negated)

written out as adds, so each transform is a handful of additions per value. Layout of the
transformed arrays: (16, channels, tiles), position xi*4 + nu first, so that each of the 16
per-position GEMMs reads one contiguous (channels, tiles) matrix. A block holds samples
n0 .. n0+nb-1; tile t = (s*TH + a)*TW + b for sample n0+s and tile row/column (a, b), which
covers output pixels (2a .. 2a+1, 2b .. 2b+1) and reads padded input rows/columns 2a .. 2a+3.

Every kernel runs `prange` over (sample, channel) planes; the drivers (winograd.py) validate
shapes before calling, as Numba does no bounds checks.
"""

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _bt_rows(d0, d1, d2, d3):
    """B^T applied to the column vector (d0, d1, d2, d3)."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(parallel=True, cache=True)
def input_transform(x, ph, pw, th, tw, n0, nb, v):
    """v[xi*4+nu, c, t] = (B^T d B)[xi, nu], d = the 4x4 tile of x padded by (ph, pw), zero outside.

    x (N, C, H, W); v (16, C, nb*TH*TW), filled for samples n0 .. n0+nb-1.
    """
    n_chan, height, width = x.shape[1], x.shape[2], x.shape[3]
    for task in prange(nb * n_chan):
        s, c = task // n_chan, task % n_chan
        plane = x[n0 + s, c]
        d = np.empty((4, 4), dtype=x.dtype)  # one scratch tile per task
        for a in range(th):
            r0 = 2 * a - ph
            for b in range(tw):
                c0 = 2 * b - pw
                if r0 >= 0 and c0 >= 0 and r0 + 4 <= height and c0 + 4 <= width:
                    for i in range(4):
                        for j in range(4):
                            d[i, j] = plane[r0 + i, c0 + j]
                else:
                    for i in range(4):
                        for j in range(4):
                            r, q = r0 + i, c0 + j
                            d[i, j] = plane[r, q] if 0 <= r < height and 0 <= q < width else 0.0
                t = (s * th + a) * tw + b
                for j in range(4):  # rows: B^T d
                    d[0, j], d[1, j], d[2, j], d[3, j] = _bt_rows(d[0, j], d[1, j], d[2, j], d[3, j])
                for i in range(4):  # columns: (B^T d) B
                    e0, e1, e2, e3 = _bt_rows(d[i, 0], d[i, 1], d[i, 2], d[i, 3])
                    v[i * 4, c, t] = e0
                    v[i * 4 + 1, c, t] = e1
                    v[i * 4 + 2, c, t] = e2
                    v[i * 4 + 3, c, t] = e3


@njit(parallel=True, cache=True)
def output_transform(m, bias, th, tw, n0, nb, y):
    """y[n0+s, k, 2a+i, 2b+j] = (A^T M A)[i, j] + bias[k] for tile t = (s*TH + a)*TW + b, cut at y's edge.

    m (16, K, nb*TH*TW); bias (K,) or empty; y (N, K, OH, OW).
    """
    n_out, out_h, out_w = y.shape[1], y.shape[2], y.shape[3]
    has_bias = bias.shape[0] > 0
    for task in prange(nb * n_out):
        s, k = task // n_out, task % n_out
        plane = y[n0 + s, k]
        b0 = bias[k] if has_bias else 0.0
        for a in range(th):
            for b in range(tw):
                t = (s * th + a) * tw + b
                # rows: A^T M (2x4), then columns: (A^T M) A (2x2)
                r00 = m[0, k, t] + m[4, k, t] + m[8, k, t]
                r01 = m[1, k, t] + m[5, k, t] + m[9, k, t]
                r02 = m[2, k, t] + m[6, k, t] + m[10, k, t]
                r03 = m[3, k, t] + m[7, k, t] + m[11, k, t]
                r10 = m[4, k, t] - m[8, k, t] - m[12, k, t]
                r11 = m[5, k, t] - m[9, k, t] - m[13, k, t]
                r12 = m[6, k, t] - m[10, k, t] - m[14, k, t]
                r13 = m[7, k, t] - m[11, k, t] - m[15, k, t]
                i0, j0 = 2 * a, 2 * b
                plane[i0, j0] = r00 + r01 + r02 + b0
                if j0 + 1 < out_w:
                    plane[i0, j0 + 1] = r01 - r02 - r03 + b0
                if i0 + 1 < out_h:
                    plane[i0 + 1, j0] = r10 + r11 + r12 + b0
                    if j0 + 1 < out_w:
                        plane[i0 + 1, j0 + 1] = r11 - r12 - r13 + b0


@njit(parallel=True, cache=True)
def grad_transform(gy, th, tw, n0, nb, gt):
    """gt[xi*4+nu, k, t] = (G2' g G2'^T)[xi, nu], g = the 2x2 tile (a, b) of gy (zero past the edge).

    gy (N, K, OH, OW); gt (16, K, nb*TH*TW). With the forward's input tiles this gives dW by
    F(3x3, 2x2): M = gt @ v^T per position, dW = A3^T M A3 (see winograd.py).
    """
    n_out, out_h, out_w = gy.shape[1], gy.shape[2], gy.shape[3]
    for task in prange(nb * n_out):
        s, k = task // n_out, task % n_out
        plane = gy[n0 + s, k]
        col = np.empty((4, 2), dtype=gy.dtype)  # G2' g, one scratch per task
        for a in range(th):
            for b in range(tw):
                i0, j0 = 2 * a, 2 * b
                g00 = plane[i0, j0]
                g01 = plane[i0, j0 + 1] if j0 + 1 < out_w else 0.0
                g10 = plane[i0 + 1, j0] if i0 + 1 < out_h else 0.0
                g11 = plane[i0 + 1, j0 + 1] if i0 + 1 < out_h and j0 + 1 < out_w else 0.0
                # rows: G2' g (4x2): (g0, (g0+g1)/2, (g0-g1)/2, -g1) per column
                col[0, 0], col[1, 0], col[2, 0], col[3, 0] = g00, 0.5 * (g00 + g10), 0.5 * (g00 - g10), -g10
                col[0, 1], col[1, 1], col[2, 1], col[3, 1] = g01, 0.5 * (g01 + g11), 0.5 * (g01 - g11), -g11
                t = (s * th + a) * tw + b
                for i in range(4):
                    p, q = col[i, 0], col[i, 1]
                    gt[i * 4, k, t] = p
                    gt[i * 4 + 1, k, t] = 0.5 * (p + q)
                    gt[i * 4 + 2, k, t] = 0.5 * (p - q)
                    gt[i * 4 + 3, k, t] = -q


@njit(inline="always")
def _g_rows(g0, g1, g2):
    """G applied to the column vector (g0, g1, g2)."""
    return g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2


@njit(parallel=True, cache=True)
def kernel_transform(w, flip, u):
    """u[xi*4+nu, k, c] = (G w[k, c] G^T)[xi, nu]; with `flip`, u[., c, k] from w[k, c] turned by 180 degrees.

    w (K, C, 3, 3); u (16, K, C), or (16, C, K) with flip: the kernel of dX = conv(gy, flip(w)^T).
    Computed in float64, stored in u's dtype.
    """
    n_out, n_in = w.shape[0], w.shape[1]
    for k in prange(n_out):
        g = np.empty((3, 3))
        h = np.empty((4, 3))
        for c in range(n_in):
            for i in range(3):
                for j in range(3):
                    g[i, j] = w[k, c, 2 - i, 2 - j] if flip else w[k, c, i, j]
            for j in range(3):  # rows: G g (4x3)
                h[0, j], h[1, j], h[2, j], h[3, j] = _g_rows(g[0, j], g[1, j], g[2, j])
            for i in range(4):  # columns: (G g) G^T (4x4)
                e0, e1, e2, e3 = _g_rows(h[i, 0], h[i, 1], h[i, 2])
                if flip:
                    u[i * 4, c, k], u[i * 4 + 1, c, k], u[i * 4 + 2, c, k], u[i * 4 + 3, c, k] = e0, e1, e2, e3
                else:
                    u[i * 4, k, c], u[i * 4 + 1, k, c], u[i * 4 + 2, k, c], u[i * 4 + 3, k, c] = e0, e1, e2, e3


@njit(parallel=True, cache=True)
def weight_grad_transform(m3, dw):
    """dw[k, c] = A3^T M3[:, k, c] A3 (3x3), F(3x3, 2x2)'s output transform, in float64.

    m3 (16, K, C) summed over all tiles; dw (K, C, 3, 3). A3^T = [[1, 1, 1, 0], [0, 1, -1, 0], [0, 1, 1, 1]].
    """
    n_out, n_in = dw.shape[0], dw.shape[1]
    for k in prange(n_out):
        r = np.empty((3, 4))
        for c in range(n_in):
            for j in range(4):  # rows: A3^T M (3x4)
                m0, m1 = float(m3[j, k, c]), float(m3[4 + j, k, c])
                m2, m3_ = float(m3[8 + j, k, c]), float(m3[12 + j, k, c])
                r[0, j], r[1, j], r[2, j] = m0 + m1 + m2, m1 - m2, m1 + m2 + m3_
            for i in range(3):  # columns: (A3^T M) A3 (3x3)
                dw[k, c, i, 0] = r[i, 0] + r[i, 1] + r[i, 2]
                dw[k, c, i, 1] = r[i, 1] - r[i, 2]
                dw[k, c, i, 2] = r[i, 1] + r[i, 2] + r[i, 3]
