"""Tutorial 10: Winograd convolution F(2x2, 3x3), derived by hand, checked, and its precision cost.

Run:  python tutorials/10_winograd.py [--quick] [--plots DIR]

A 3x3 convolution computes each output pixel with 9 multiplications per input channel. Winograd's
minimal filtering (Lavin & Gray 2016) computes a 2x2 block of outputs with 16 instead of 36: 2.25x
fewer. This tutorial

1. derives the 1-d algorithm F(2, 3) by hand and checks it on numbers;
2. prints the matrices B^T, G, A^T that the engine uses and nests them into 2-d;
3. checks the engine's Winograd convolution (forward, dX, dW) against direct convolution;
4. measures the precision cost in float32, for F(2x2, 3x3) and the larger F(4x4, 3x3).

Engine files it teaches:
- minicoconv/backend/reference/winograd.py   the readable form: matrices, forward, dX, dW
- minicoconv/backend/cpu/winograd_kernels.py the Numba tile transforms (gather + transform, scatter)
- minicoconv/backend/cpu/winograd.py         the driver (16 GEMMs per block), set_conv_algorithm
- minicoconv/backend/cpu/conv_kernels.py     where conv2d chooses im2col or Winograd
Figures and the per-shape choice: docs/performance.md.
"""

from __future__ import annotations

import numpy as np

from minicoconv.backend.reference import conv as direct
from minicoconv.backend.reference import winograd as wino

# F(4, 3): the same construction with the points 0, 1, -1, 2, -2 and infinity (not used by the engine)
BT43 = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=np.float64)
G43 = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
AT43 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=np.float64)


def f23_by_hand(d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """y_i = sum_j d[i+j] g[j] for i = 0, 1 with 4 multiplications instead of 6.

    The kernel terms (g0 + g1 + g2)/2 and (g0 - g1 + g2)/2 are computed once per kernel, so
    only the four products below are paid per tile:
        m1 = (d0 - d2) g0               m2 = (d1 + d2) (g0 + g1 + g2)/2
        m3 = (d2 - d1) (g0 - g1 + g2)/2 m4 = (d1 - d3) g2
        y0 = m1 + m2 + m3   = d0 g0 + d1 g1 + d2 g2    (the g1 d2 terms cancel between m2, m3)
        y1 = m2 - m3 - m4   = d1 g0 + d2 g1 + d3 g2
    """
    m1 = (d[0] - d[2]) * g[0]
    m2 = (d[1] + d[2]) * (g[0] + g[1] + g[2]) / 2
    m3 = (d[2] - d[1]) * (g[0] - g[1] + g[2]) / 2
    m4 = (d[1] - d[3]) * g[2]
    return np.array([m1 + m2 + m3, m2 - m3 - m4])


def check_by_hand(rng) -> float:
    """The hand derivation and the matrix form A^T [(G g) * (B^T d)] against the direct sums."""
    worst = 0.0
    for _ in range(100):
        d, g = rng.standard_normal(4), rng.standard_normal(3)
        want = np.array([d[0:3] @ g, d[1:4] @ g])
        matrix_form = wino.AT @ ((wino.G @ g) * (wino.BT @ d))
        worst = max(worst, np.abs(f23_by_hand(d, g) - want).max(), np.abs(matrix_form - want).max())
    return worst


def winograd_2d(x, w, bt, g, at, dtype) -> np.ndarray:
    """y = conv2d(x, w, padding 1) by F(m x m, 3x3) with any matrices, every step rounded to `dtype`."""
    n, c, height, width = x.shape
    alpha, m = bt.shape[0], at.shape[0]
    tiles = -(-height // m)
    xp = np.zeros((n, c, tiles * m + 2, tiles * m + 2))
    xp[:, :, 1:height + 1, 1:width + 1] = x
    d = np.lib.stride_tricks.sliding_window_view(xp, (alpha, alpha), axis=(2, 3))[:, :, ::m, ::m]
    bt, g, at = bt.astype(dtype), g.astype(dtype), at.astype(dtype)
    u = np.einsum("xi,kcij,yj->xykc", g, w.astype(dtype), g).astype(dtype)
    v = np.einsum("xi,nctsij,yj->xycnts", bt, d.astype(dtype), bt).astype(dtype)
    prod = np.einsum("xykc,xycnts->xyknts", u, v).astype(dtype)
    y = np.einsum("ax,xyknts,by->nktsab", at, prod, at).astype(dtype)
    return y.transpose(0, 1, 2, 4, 3, 5).reshape(n, w.shape[0], tiles * m, tiles * m)[:, :, :height, :width]


def check_engine(rng) -> dict:
    """The reference form and the CPU kernels (forced Winograd) against direct convolution, float64."""
    from minicoconv.backend.cpu import conv_kernels, winograd

    x, w = rng.standard_normal((2, 5, 7, 6)), rng.standard_normal((4, 5, 3, 3))
    y, cols = direct.conv2d_forward(x, w, None, 1, 1)
    gy = rng.standard_normal(y.shape)
    dx, dw, _ = direct.conv2d_backward(gy, x, w, cols, 1, 1)
    previous = winograd.set_conv_algorithm("winograd")
    try:
        y_cpu, saved = conv_kernels.conv2d_forward(x, w, None, 1, 1)
        dx_cpu, dw_cpu, _ = conv_kernels.conv2d_backward(gy, x, w, saved, 1, 1)
    finally:
        winograd.set_conv_algorithm(previous)
    return {
        "reference y": np.abs(wino.winograd_conv2d(x, w, 1) - y).max(),
        "reference dX": np.abs(wino.winograd_conv2d_dx(gy, w, 1) - dx).max(),
        "reference dW": np.abs(wino.winograd_conv2d_dw(gy, x, 1) - dw).max(),
        "cpu y": np.abs(y_cpu - y).max(), "cpu dX": np.abs(dx_cpu - dx).max(), "cpu dW": np.abs(dw_cpu - dw).max(),
    }


def precision(rng, channels) -> dict:
    """Max-normalised float32 error of each algorithm against float64 direct convolution, per C."""
    rows = {"direct (im2col)": [], "F(2x2,3x3)": [], "F(4x4,3x3)": []}
    for c in channels:
        x = rng.standard_normal((2, c, 8, 8))
        w = rng.standard_normal((16, c, 3, 3)) / np.sqrt(9 * c)
        exact = direct.conv2d_forward(x, w, None, 1, 1)[0]
        scale = np.abs(exact).max()
        y32 = direct.conv2d_forward(x.astype(np.float32), w.astype(np.float32), None, 1, 1)[0]
        rows["direct (im2col)"].append(np.abs(y32 - exact).max() / scale)
        for name, mats in (("F(2x2,3x3)", (wino.BT, wino.G, wino.AT)), ("F(4x4,3x3)", (BT43, G43, AT43))):
            rows[name].append(np.abs(winograd_2d(x, w, *mats, np.float32) - exact).max() / scale)
    return rows


def plot_precision(channels, rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, errors in rows.items():
        ax.semilogy(channels, errors, marker="o", label=name)
    ax.axhline(1e-4, color="grey", linestyle="--", label="bound 1e-4")
    ax.set_xlabel("input channels C")
    ax.set_ylabel("float32 error (max-normalised)")
    ax.set_title("The precision cost of Winograd")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the test suite's mode)")
    parser.add_argument("--plots", metavar="DIR", help="write the precision plot (PNG) into DIR")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)

    print("1. F(2, 3) by hand: 4 multiplications for 2 outputs of a 3-tap filter (direct: 6)")
    print(f"   worst difference from the direct sums over 100 draws: {check_by_hand(rng):.1e}")

    np.set_printoptions(precision=3, suppress=True)
    print("\n2. The matrices (minicoconv/backend/reference/winograd.py): y = A^T [(G g) * (B^T d)]")
    for name, mat in (("B^T", wino.BT), ("G", wino.G), ("A^T", wino.AT)):
        print(f"   {name} =\n" + "\n".join("      " + line for line in str(mat).splitlines()))
    print("   2-d, nesting rows and columns: Y = A^T [(G g G^T) * (B^T d B)] A")
    print("   multiplications per 2x2 output tile and channel: direct 36, F(2x2,3x3) 16 (2.25x fewer);")
    print("   per 4x4 tile: direct 144, F(4x4,3x3) 36 (4x fewer)")

    print("\n3. The engine against direct convolution (float64, max |difference|):")
    for name, err in check_engine(rng).items():
        print(f"   {name:<14}{err:.1e}")

    channels = [4, 16, 64] if args.quick else [4, 16, 64, 256, 512]
    rows = precision(rng, channels)
    print("\n4. float32 error against float64 direct convolution, 8x8 maps, max-normalised:")
    print("   " + f"{'C':>20}" + "".join(f"{c:>10}" for c in channels))
    for name, errors in rows.items():
        print(f"   {name:>20}" + "".join(f"{e:10.1e}" for e in errors))
    print("   The transforms mix several inputs before the products (B^T d subtracts neighbours, A^T adds")
    print("   four products), so each rounding error is carried into several outputs. F(2x2,3x3)'s matrices")
    print("   hold only 0, +-1, +-1/2: its error stays close to direct convolution's. F(4x4,3x3)'s hold")
    print("   4, 5, 8 and 1/24: an order of magnitude more error. The engine keeps F(2x2,3x3).")
    if args.plots:
        from pathlib import Path

        out = Path(args.plots)
        out.mkdir(parents=True, exist_ok=True)
        plot_precision(channels, rows, out / "10_winograd_precision.png")
        print(f"\nwrote {out / '10_winograd_precision.png'}")


if __name__ == "__main__":
    main()
