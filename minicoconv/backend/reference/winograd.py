"""Winograd convolution F(2x2, 3x3), the readable form: 3x3 stride-1 convolution, groups = 1.

Minimal filtering (Lavin & Gray 2016). One output tile of 2x2 pixels reads a 4x4 input tile d
and the 3x3 kernel g; in 1-d, F(2, 3) computes y_i = sum_j d_{i+j} g_j (i = 0, 1) as

    y = A^T [(G g) * (B^T d)]                  (* elementwise: 4 multiplications, not 6)

and in 2-d, nesting the 1-d algorithm over rows and columns,

    Y (2x2) = A^T [(G g G^T) * (B^T d B)] A    (16 multiplications, not 36: 2.25x fewer)

Over channels the elementwise product becomes a sum, so for each of the 16 transform
positions (xi, nu) the convolution is one matrix product over channels:

    U[xi,nu] (C', C)  = (G w[k, c] G^T)[xi,nu]          the transformed kernels
    V[xi,nu] (C, T)   = (B^T d[c, t] B)[xi,nu]            the transformed input tiles, T tiles
    M[xi,nu] (C', T)  = U[xi,nu] @ V[xi,nu]               16 GEMMs
    y tile (k, t)     = A^T M[:, :, k, t] A               the output transform

Gradients, both Winograd too:
- dX is the convolution of gy (padded by 2 - p) with the kernel flipped in space and with
  in/out channels swapped: dx = conv2d(gy, flip(w)^T, padding 2 - p), the same F(2x2, 3x3).
- dW is a correlation of the padded input with gy: dW[k, c] = sum_n,t corr(d[n, c, t] (4x4),
  gy[n, k, t] (2x2)) -> 3x3, the F(3x3, 2x2) algorithm (output 3, "filter" 2, tile 4):
  dW[k, c] = A3^T [ sum_t (G2 gy_t G2^T) * (B3^T d_t B3) ] A3, summed over tiles in the
  transformed domain, i.e. 16 GEMMs (C', T) @ (T, C). B3 equals B up to the sign of its last
  row, so the forward's transformed input tiles V serve dW when G2's last row is negated
  (`G2_FWD`): (D G2) gy (D G2)^T * (B^T d B) with D = diag(1, 1, 1, -1).

Precision: B^T, A^T and G hold only 0, +-1 and +-1/2, so each transform is a few adds; the
rounding error grows because the transformed values mix several inputs (float32 error is
measured in tests/backend/test_winograd.py and docs/performance.md).
"""

from __future__ import annotations

import numpy as np

from .checks import float_array, same_shape
from .conv import conv_geometry

# F(2, 3), interpolation points 0, 1, -1 and infinity
BT = np.array([[1, 0, -1, 0],
               [0, 1, 1, 0],
               [0, -1, 1, 0],
               [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0],
              [0.5, 0.5, 0.5],
              [0.5, -0.5, 0.5],
              [0, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 0],
               [0, 1, -1, -1]], dtype=np.float64)

# F(3, 2), the same points: y_i = sum_j d_{i+j} g_j for i = 0, 1, 2 and j = 0, 1
BT3 = np.array([[1, 0, -1, 0],
                [0, 1, 1, 0],
                [0, -1, 1, 0],
                [0, -1, 0, 1]], dtype=np.float64)
G2 = np.array([[1, 0],
               [0.5, 0.5],
               [0.5, -0.5],
               [0, 1]], dtype=np.float64)
AT3 = np.array([[1, 1, 1, 0],
                [0, 1, -1, 0],
                [0, 1, 1, 1]], dtype=np.float64)
# BT3 = D @ BT with D = diag(1, 1, 1, -1); D moved onto G2, so dW can use B^T d B
G2_FWD = np.diag([1.0, 1.0, 1.0, -1.0]) @ G2


def winograd_applies(x_shape: tuple, w_shape: tuple, stride, padding, dilation, groups: int) -> bool:
    """True when the F(2x2, 3x3) path computes this convolution: 3x3, stride 1, dilation 1, groups 1."""
    return (tuple(w_shape[2:]) == (3, 3) and groups == 1 and _pair(stride) == (1, 1)
            and _pair(dilation) == (1, 1) and all(0 <= p <= 2 for p in _pair(padding)))


def _pair(v):
    return (v, v) if isinstance(v, int | np.integer) else tuple(v)


def input_tiles(x: np.ndarray, padding: tuple, tiles_hw: tuple) -> np.ndarray:
    """x (N, C, H, W) -> d (N, C, TH, TW, 4, 4): tile (a, b) is xpad[2a:2a+4, 2b:2b+4], zero past the edges."""
    n, c, height, width = x.shape
    th, tw = tiles_hw
    ph, pw = padding
    xp = np.zeros((n, c, 2 * th + 2, 2 * tw + 2), dtype=x.dtype)
    h_end, w_end = min(height, 2 * th + 2 - ph), min(width, 2 * tw + 2 - pw)
    xp[:, :, ph:ph + h_end, pw:pw + w_end] = x[:, :, :h_end, :w_end]
    win = np.lib.stride_tricks.sliding_window_view(xp, (4, 4), axis=(2, 3))
    return win[:, :, ::2, ::2]


def winograd_conv2d(x: np.ndarray, w: np.ndarray, padding) -> np.ndarray:
    """y = conv2d(x, w, stride 1, padding): x (N, C, H, W), w (C', C, 3, 3) -> y (N, C', H+2p-2, W+2p-2).

    U = G w G^T, V = B^T d B per tile, M = U @ V per transform position, Y = A^T M A per tile.
    """
    padding = _pair(padding)
    oh, ow = x.shape[2] + 2 * padding[0] - 2, x.shape[3] + 2 * padding[1] - 2
    th, tw = -(-oh // 2), -(-ow // 2)
    u = np.einsum("xi,kcij,yj->xykc", G, w, G)                       # (4, 4, C', C)
    v = np.einsum("xi,nctsij,yj->xycnts", BT, input_tiles(x, padding, (th, tw)), BT)  # (4, 4, C, N, TH, TW)
    m = np.einsum("xykc,xycnts->xyknts", u, v)                       # 16 GEMMs over C
    y = np.einsum("ax,xyknts,by->kntsab", AT, m, AT)                 # (C', N, TH, TW, 2, 2)
    y = y.transpose(1, 0, 2, 4, 3, 5).reshape(x.shape[0], w.shape[0], 2 * th, 2 * tw)
    return y[:, :, :oh, :ow]


def winograd_conv2d_dx(gy: np.ndarray, w: np.ndarray, padding) -> np.ndarray:
    """dx of y = conv2d(x, w, padding p): the Winograd conv of gy with flip(w)^T and padding 2 - p."""
    ph, pw = _pair(padding)
    w_t = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, C', 3, 3)
    return winograd_conv2d(gy, w_t, (2 - ph, 2 - pw))


def winograd_conv2d_dw(gy: np.ndarray, x: np.ndarray, padding) -> np.ndarray:
    """dW of y = conv2d(x, w, padding p): F(3x3, 2x2), gy (N, C', OH, OW), x (N, C, H, W) -> (C', C, 3, 3).

    Tile t of gy (2x2, zero past the edge) pairs with the forward's input tile t;
    M = sum_t (G2 gy_t G2^T) (C', T) @ (B3^T d_t B3)^T (T, C) per position; dW = A3^T M A3.
    """
    padding = _pair(padding)
    n, c_out, oh, ow = gy.shape
    th, tw = -(-oh // 2), -(-ow // 2)
    gyp = np.zeros((n, c_out, 2 * th, 2 * tw), dtype=gy.dtype)
    gyp[:, :, :oh, :ow] = gy
    gy_tiles = gyp.reshape(n, c_out, th, 2, tw, 2).transpose(0, 1, 2, 4, 3, 5)  # (N, C', TH, TW, 2, 2)
    gt = np.einsum("xi,knstij,yj->xyknst", G2, gy_tiles.transpose(1, 0, 2, 3, 4, 5), G2)
    v = np.einsum("xi,nctsij,yj->xycnts", BT3, input_tiles(x, padding, (th, tw)), BT3)
    m = np.einsum("xyknts,xycnts->xykc", gt, v)                      # 16 GEMMs over the N*T tiles
    return np.einsum("ax,xykc,by->kcab", AT3, m, AT3)


def conv2d_forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, stride=1, padding=0,
                   dilation=1, groups: int = 1) -> tuple[np.ndarray, None]:
    """The conv2d_forward contract computed by F(2x2, 3x3); only where `winograd_applies`."""
    op = "winograd_conv2d"
    float_array(op, "x", x, 4, "(N, C, H, W)")
    float_array(op, "w", w, 4, "(C', C, 3, 3)", x.dtype)
    conv_geometry(op, x.shape, w.shape, stride, padding, dilation, groups)
    if not winograd_applies(x.shape, w.shape, stride, padding, dilation, groups):
        raise ValueError(f"{op}: expected a 3x3 kernel, stride 1, dilation 1, groups 1 and padding 0..2, got "
                         f"w {w.shape}, stride {stride}, padding {padding}, dilation {dilation}, groups {groups}")
    y = winograd_conv2d(x, w, padding)
    if bias is not None:
        same_shape(op, "bias", bias, (w.shape[0],), x.dtype)
        y = y + bias.reshape(1, -1, 1, 1)
    return y, None


def conv2d_backward(gy: np.ndarray, x: np.ndarray, w: np.ndarray, saved=None, stride=1, padding=0, dilation=1,
                    groups: int = 1, need_dx: bool = True, need_dw: bool = True, need_db: bool = True):
    """(dx, dw, db) of conv2d_forward by Winograd (dX: F(2x2, 3x3), dW: F(3x3, 2x2))."""
    op = "winograd_conv2d"
    float_array(op, "x", x, 4, "(N, C, H, W)")
    float_array(op, "w", w, 4, "(C', C, 3, 3)", x.dtype)
    *_, out_shape = conv_geometry(op, x.shape, w.shape, stride, padding, dilation, groups)
    if not winograd_applies(x.shape, w.shape, stride, padding, dilation, groups):
        raise ValueError(f"{op}: expected a 3x3 kernel, stride 1, dilation 1, groups 1 and padding 0..2")
    same_shape(op, "gy", gy, out_shape, x.dtype)
    dx = winograd_conv2d_dx(gy, w, padding) if need_dx else None
    dw = winograd_conv2d_dw(gy, x, padding) if need_dw else None
    db = gy.sum(axis=(0, 2, 3)) if need_db else None
    return dx, dw, db
