"""Tutorial 02: convolution, from six nested loops to im2col + one matrix multiply.

How to run it, from the repository root:

    python tutorials/02_im2col_convolution.py           # the whole lesson (about ten seconds)
    python tutorials/02_im2col_convolution.py --quick --plots out   # skips the slowest timing (the tests)

Or from a notebook: `main(["--quick"])`, or call the section functions one by one.

What you will learn, one printed section each:

1. The definition: a 2-d convolution (strictly, a cross-correlation) as six nested loops.
2. im2col: copy every receptive field into one column; printed for a tiny 4x4 image
   (picture: the image and its column matrix).
3. Convolution = GEMM + reshape: W (C', C k k) @ cols (C k k, OH OW) -> (C', OH, OW),
   checked against the loops and against `minicoconv.nn.functional.conv2d`.
4. What it buys: timings of the loops, im2col in NumPy, and our Numba kernel.
5. The backward pass as two GEMMs and a col2im -- and why col2im must ADD overlapping
   contributions -- checked against autograd.
6. Groups and depthwise convolutions: one GEMM per group, and why depthwise gets its own kernel.

Shapes throughout: x (N, C, H, W), weight (C', C/groups, kh, kw), y (N, C', OH, OW) with
OH = (H + 2 ph - dh (kh - 1) - 1) // sh + 1 (likewise OW). docs/performance.md says how
the engine's kernels lay this out for speed; this lesson is the idea, in plain NumPy.
The engine's files: minicoconv/ops/conv.py (the differentiable op), minicoconv/backend/cpu/
im2col.py, conv_kernels.py, blas.py and depthwise.py (Numba), minicoconv/backend/reference/conv.py
(the plain-NumPy twin every kernel is tested against).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from pathlib import Path

import numba
import numpy as np

import minicoconv as mc
from minicoconv.bench.timing import measure_interleaved
from minicoconv.lesson import check, save_figure, section
from minicoconv.nn import functional as F


def out_size(size: int, k: int, stride: int, pad: int, dil: int) -> int:
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


# ---------------------------------------------------------------------------------------
# 1. The definition
# ---------------------------------------------------------------------------------------
def conv2d_loops(x, w, b=None, stride=1, padding=0, dilation=1):
    """y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * x_padded[n, c, i*s + p*d, j*s + q*d].

    Six loops per image: output channel, output row, output column, then the sum over
    input channel and kernel row and column. (Square stride/padding/dilation, groups=1.)
    """
    n_batch, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    oh, ow = out_size(h, kh, stride, padding, dilation), out_size(wd, kw, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))  # zeros around the border
    y = np.zeros((n_batch, c_out, oh, ow), dtype=x.dtype)
    for n in range(n_batch):
        for o in range(c_out):                                   # 1
            for i in range(oh):                                  # 2
                for j in range(ow):                              # 3
                    total = 0.0 if b is None else b[o]
                    for c in range(c_in):                        # 4
                        for p in range(kh):                      # 5
                            for q in range(kw):                  # 6
                                total += w[o, c, p, q] * xp[n, c, i * stride + p * dilation, j * stride + q * dilation]
                    y[n, o, i, j] = total
    return y


def the_definition() -> None:
    section(1, "The definition: six nested loops")
    # Engine: minicoconv/backend/reference/conv.py is the plain-NumPy convolution every kernel is tested against.
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    w = np.array([[[[1.0, 0, -1], [2, 0, -2], [1, 0, -1]]]])     # a Sobel filter: horizontal gradient
    print("x (1, 1, 4, 4):\n", x[0, 0])
    print("w (1, 1, 3, 3):\n", w[0, 0])
    y = conv2d_loops(x, w)
    print("y = conv2d(x, w) (1, 1, 2, 2):\n", y[0, 0])
    # Each output is the dot product of the kernel with the 3x3 window under it. Here every
    # window rises by 1 per column, so the Sobel response is (1+2+1) * (0 - 2) = -8 everywhere.
    check(np.all(y == -8.0), "every window of a left-to-right ramp gives the same Sobel response, -8")
    print("Deep-learning 'convolution' does not flip the kernel: it is a cross-correlation, as in PyTorch.")


# ---------------------------------------------------------------------------------------
# 2.-3. im2col and the GEMM
# ---------------------------------------------------------------------------------------
def im2col(x, kh, kw, stride=1, padding=0, dilation=1):
    """x (N, C, H, W) -> cols (N, C*kh*kw, OH*OW).

    Row c*kh*kw + p*kw + q holds kernel tap (p, q) of channel c for every output pixel;
    column i*OW + j holds the receptive field of output pixel (i, j). The loop runs over
    the kh*kw taps only: each tap is ONE strided slice of the padded image.
    """
    n_batch, c_in, h, w = x.shape
    oh, ow = out_size(h, kh, stride, padding, dilation), out_size(w, kw, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = np.empty((n_batch, c_in, kh, kw, oh, ow), dtype=x.dtype)
    for p in range(kh):
        for q in range(kw):
            r0, c0 = p * dilation, q * dilation
            cols[:, :, p, q] = xp[:, :, r0:r0 + stride * (oh - 1) + 1:stride, c0:c0 + stride * (ow - 1) + 1:stride]
    return cols.reshape(n_batch, c_in * kh * kw, oh * ow)


def conv2d_im2col(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """im2col, then one GEMM per group: W_g (C'/G, K/G) @ cols_g (K/G, OH*OW), then a reshape."""
    n_batch, c_out, kh, kw = x.shape[0], w.shape[0], w.shape[2], w.shape[3]
    oh = out_size(x.shape[2], kh, stride, padding, dilation)
    ow = out_size(x.shape[3], kw, stride, padding, dilation)
    cols = im2col(x, kh, kw, stride, padding, dilation)             # (N, K, L), K = C*kh*kw
    k = cols.shape[1]
    # rows are channel-major, so group g's input channels are the contiguous rows [g*K/G, (g+1)*K/G)
    cols_g = cols.reshape(n_batch, groups, k // groups, oh * ow)    # (N, G, K/G, L)
    w_g = w.reshape(groups, c_out // groups, k // groups)           # (G, C'/G, K/G)
    y = w_g @ cols_g                                                # (N, G, C'/G, L): matmul broadcasts N
    y = y.reshape(n_batch, c_out, oh, ow)                           # free: the memory is already NCHW
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def im2col_by_hand(plots: Path | None = None) -> None:
    section(2, "im2col: one column per receptive field")
    # Engine: minicoconv/backend/cpu/im2col.py (block by block, in cache) and conv_kernels.py.
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    cols = im2col(x, 3, 3)
    print("x:\n", x[0, 0])
    print(f"cols = im2col(x, 3x3) has shape {cols.shape} = (N, C*kh*kw, OH*OW):")
    print(cols[0])
    # Column 0 is the top-left 3x3 window read row by row; column 3 is the bottom-right one.
    check(np.array_equal(cols[0][:, 0], x[0, 0, :3, :3].ravel()), "column 0 is the top-left window, flattened")
    check(np.array_equal(cols[0][:, 3], x[0, 0, 1:, 1:].ravel()), "column 3 is the bottom-right window")
    print("The 4x4 image has 16 values; the columns hold 36: each interior pixel is copied into up to")
    print("kh*kw = 9 columns. That memory is the price of turning the convolution into one GEMM.")
    if plots is not None:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend is chosen or changed

        fig = Figure(figsize=(8, 4))
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1]})
        left.imshow(x[0, 0], cmap="viridis")
        for (i, j), v in np.ndenumerate(x[0, 0]):
            left.text(j, i, f"{v:.0f}", ha="center", va="center", color="w", fontsize=9)
        left.set_title("x: a 4x4 image")
        right.imshow(cols[0], cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(cols[0]):
            right.text(j, i, f"{v:.0f}", ha="center", va="center", color="w", fontsize=7)
        right.set_title("im2col(x, 3x3): (9 taps, 4 windows)")
        right.set_xlabel("output pixel (window)")
        right.set_ylabel("kernel tap")
        save_figure(fig, plots, "02_im2col_matrix.png")

    # The engine's Numba im2col produces the same matrix (same row order).
    from minicoconv.backend.cpu.conv_kernels import im2col as numba_im2col
    check(np.array_equal(numba_im2col(x, 3, 3), cols), "the engine's Numba im2col builds the same matrix")

    xs = np.arange(2 * 2 * 5 * 5, dtype=np.float64).reshape(2, 2, 5, 5)
    big = im2col(xs, 3, 3, stride=2, padding=1, dilation=1)
    check(np.array_equal(numba_im2col(xs, 3, 3, 2, 1, 1), big),
          f"... also with 2 channels, stride 2 and padding 1 (cols {big.shape})")


def conv_as_gemm() -> None:
    section(3, "Convolution = GEMM + reshape")
    # Engine: minicoconv/ops/conv.py (Conv2d Function) -> CPUBackend.conv2d_forward in
    # minicoconv/backend/cpu/backend.py -> conv_kernels.py and blas.py (one sgemm/dgemm call).
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)

    cols = im2col(x, 3, 3, padding=1)                          # (2, 27, 30)
    w_mat = w.reshape(4, -1)                                   # (4, 27): one kernel per row
    print(f"x {x.shape} -> cols {cols.shape};  w {w.shape} -> W {w_mat.shape}")
    y_mat = w_mat @ cols                                       # (2, 4, 30): every output of every image
    print(f"W @ cols -> {y_mat.shape} = (N, C', OH*OW)")
    y = y_mat.reshape(2, 4, 6, 5) + b.reshape(1, -1, 1, 1)     # reshape to (N, C', OH, OW), add the bias
    print(f"reshape -> {y.shape} = (N, C', OH, OW)")

    y_loops = conv2d_loops(x, w, b, padding=1)
    y_ours = F.conv2d(mc.tensor(x), mc.tensor(w), mc.tensor(b), padding=1).numpy()
    check(np.allclose(y, y_loops, rtol=1e-12, atol=1e-12), "im2col + GEMM equals the six loops")
    check(np.allclose(y, y_ours, rtol=1e-12, atol=1e-12), "... and minicoconv.nn.functional.conv2d")

    for stride, padding, dilation in [(2, 1, 1), (1, 2, 2), (3, 0, 1)]:
        a = conv2d_im2col(x, w, b, stride, padding, dilation)
        ok = np.allclose(a, conv2d_loops(x, w, b, stride, padding, dilation), rtol=1e-12, atol=1e-12)
        ok &= np.allclose(a, F.conv2d(mc.tensor(x), mc.tensor(w), mc.tensor(b), stride, padding, dilation).numpy(),
                          rtol=1e-12, atol=1e-12)
        check(ok, f"stride {stride}, padding {padding}, dilation {dilation}: all three agree, y {a.shape}")
    print("The engine puts the whole batch side by side, cols (K, N*OH*OW), for one big GEMM")
    print("(minicoconv/backend/cpu/im2col.py explains its layout).")


# ---------------------------------------------------------------------------------------
# 4. Timings
# ---------------------------------------------------------------------------------------
def timed(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function: one untimed warm-up call each (Numba loads its
    compiled kernels, memory is touched), then `repeats` calls, round-robin so that a burst of
    load from other programs slows all of them alike (minicoconv/bench/timing.py)."""
    return {name: t.median_ms / 1e3 for name, t in measure_interleaved(fns, repeats=repeats, warmup=1).items()}


@contextlib.contextmanager
def numba_threads(n: int):
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def time_numba(x: mc.Tensor, w: mc.Tensor, repeats: int, **conv_args) -> tuple[float, float]:
    """F.conv2d's median time with all of Numba's threads and with one."""
    call = functools.partial(F.conv2d, x, w, **conv_args)
    with mc.no_grad():
        t_all = timed({"all": call}, repeats)["all"]
        with numba_threads(1):
            t_one = timed({"one": call}, repeats)["one"]
    return t_all, t_one


def timings(quick: bool) -> None:
    section(4, "What it buys: loops vs im2col (NumPy) vs our Numba kernel")
    # Engine: minicoconv/backend/cpu/conv_kernels.py (the blocked Numba kernel) and blas.py (the GEMM call);
    # the timer is minicoconv/bench/timing.py, the one `minicoconv bench` uses.
    sizes = {"small": ((2, 3, 8, 8), (4, 3, 3, 3)), "medium": ((4, 8, 16, 16), (16, 8, 3, 3))}
    if not quick:
        sizes["large"] = ((8, 32, 32, 32), (64, 32, 3, 3))      # too slow for the loops: skipped there
    rng = np.random.default_rng(0)
    threads = numba.get_num_threads()
    print(f"float32, 3x3 kernel, padding 1; median of several runs.  Numba: {threads} thread(s) / 1 thread")
    print("(Timings depend on what else the machine is doing: rerun, and trust ratios of 10x more than 1.5x.)")
    print(f"{'size':7s} {'x':>16s} {'w':>15s} {'loops':>10s} {'im2col':>9s} {'Numba':>19s}")
    for name, (x_shape, w_shape) in sizes.items():
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        run_loops = name == "small" or (name == "medium" and not quick)
        t_loops = timed({"loops": functools.partial(conv2d_loops, x, w, padding=1)}, 1)["loops"] if run_loops else None
        t_im2col = timed({"im2col": functools.partial(conv2d_im2col, x, w, padding=1)}, 5)["im2col"]
        t_all, t_one = time_numba(mc.tensor(x), mc.tensor(w), 5, padding=1)
        loops = f"{t_loops * 1e3:8.1f}ms" if run_loops else "(skipped)"
        print(f"{name:7s} {str(x_shape):>16s} {str(w_shape):>15s} {loops:>10s} {t_im2col * 1e3:7.2f}ms "
              f"{t_all * 1e3:8.2f} /{t_one * 1e3:7.2f}ms")
        check(np.allclose(conv2d_im2col(x, w, padding=1), F.conv2d(mc.tensor(x), mc.tensor(w), padding=1).numpy(),
                          rtol=1e-4, atol=1e-4), f"{name}: the float32 results agree")
    print("The loops do one multiply-add per Python step: hundreds to thousands of times slower.")
    print("im2col hands the same arithmetic to BLAS, vectorised and cache-blocked; the Numba kernel")
    print("also builds the columns block by block while they are in cache and writes NCHW directly.")
    print("Threads: on an idle machine they pay off as the convolution grows. Waking a thread pool")
    print("costs more than a tiny convolution, though, and on a busy machine a parallel launch waits")
    print("for a free core -- compare the two Numba columns on yours.")


# ---------------------------------------------------------------------------------------
# 5. The backward pass
# ---------------------------------------------------------------------------------------
def col2im(cols, x_shape, kh, kw, stride=1, padding=0, dilation=1):
    """The adjoint of im2col: cols (N, C*kh*kw, OH*OW) -> (N, C, H, W), overlaps ADDED."""
    n_batch, c_in, h, w = x_shape
    oh, ow = out_size(h, kh, stride, padding, dilation), out_size(w, kw, stride, padding, dilation)
    xp = np.zeros((n_batch, c_in, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    cols = cols.reshape(n_batch, c_in, kh, kw, oh, ow)
    for p in range(kh):
        for q in range(kw):
            r0, c0 = p * dilation, q * dilation
            xp[:, :, r0:r0 + stride * (oh - 1) + 1:stride, c0:c0 + stride * (ow - 1) + 1:stride] += cols[:, :, p, q]
    return xp[:, :, padding:padding + h, padding:padding + w]     # the padding's gradient is dropped


def backward_as_gemms() -> None:
    section(5, "The backward pass: two GEMMs and a col2im")
    # Engine: Conv2d.backward in minicoconv/ops/conv.py -> conv2d_backward in minicoconv/backend/cpu/conv_kernels.py,
    # col2im in minicoconv/backend/cpu/im2col.py.
    # Forward:  Y = W @ cols  (per image: (C', K) @ (K, L)), then reshape.
    # Given G = dLoss/dY (C', L), the matrix-product rule gives
    #   dW    = G @ cols^T                   (C', L) @ (L, K) -> (C', K), summed over images
    #   dcols = W^T @ G                      (K, C') @ (C', L) -> (K, L)
    #   dx    = col2im(dcols)                every column entry flows back to the pixel it was copied from
    #   db    = G summed over images and pixels
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    stride, padding = 1, 1
    cols = im2col(x, 3, 3, stride, padding)                      # (N, K, L)
    g = rng.standard_normal((2, 4, 5, 6))                        # an upstream gradient dLoss/dy
    g_mat = g.reshape(2, 4, -1)                                  # (N, C', L)

    dw = (g_mat @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
    dcols = w.reshape(4, -1).T @ g_mat                           # (N, K, L)
    dx = col2im(dcols, x.shape, 3, 3, stride, padding)
    db = g.sum(axis=(0, 2, 3))

    xt, wt, bt = (mc.tensor(a, requires_grad=True) for a in (x, w, b))
    F.conv2d(xt, wt, bt, stride, padding).backward(mc.tensor(g))
    for name, ours, auto in (("dx", dx, xt.grad), ("dW", dw, wt.grad), ("db", db, bt.grad)):
        check(np.allclose(ours, auto.numpy(), rtol=1e-12, atol=1e-12), f"{name} by GEMM(s) equals autograd's")

    # Why col2im ADDS: a pixel is copied into several columns (one per window that covers it),
    # i.e. it is used several times, and the gradient of a value used several times is the sum
    # of the gradients of its uses. col2im of all-ones columns counts the windows over each pixel:
    counts = col2im(np.ones((1, 9, 4)), (1, 1, 4, 4), 3, 3)
    print("col2im(ones) for a 4x4 image and a 3x3 kernel = windows covering each pixel:\n", counts[0, 0])
    check(counts[0, 0, 1, 1] == 4 and counts[0, 0, 0, 0] == 1, "centre pixels are in 4 windows, corners in 1")
    # Overwriting instead of adding would keep only the last window's contribution:
    wrong = np.zeros((1, 1, 4, 4))
    cols6 = np.ones((1, 1, 3, 3, 2, 2))
    for p in range(3):
        for q in range(3):
            wrong[:, :, p:p + 2, q:q + 2] = cols6[:, :, p, q]
    check(not np.array_equal(wrong, counts), "assigning instead of adding loses the overlapping contributions")

    # col2im is the adjoint (transpose) of im2col: <im2col(x), c> == <x, col2im(c)> for all x, c.
    c = rng.standard_normal(cols.shape)
    lhs, rhs = np.sum(im2col(x, 3, 3, stride, padding) * c), np.sum(x * col2im(c, x.shape, 3, 3, stride, padding))
    check(np.isclose(lhs, rhs, rtol=1e-12), f"<im2col(x), c> = <x, col2im(c)> ({lhs:.6f})")
    print("The engine does exactly this block by block; it recomputes the columns in the backward")
    print("instead of keeping them (cheaper than streaming them through memory, see conv_kernels.py).")


# ---------------------------------------------------------------------------------------
# 6. Groups and depthwise
# ---------------------------------------------------------------------------------------
def groups_and_depthwise(quick: bool) -> None:
    section(6, "Groups and depthwise convolutions")
    # Engine: grouped GEMMs in minicoconv/backend/cpu/conv_kernels.py, the direct depthwise kernel in
    # minicoconv/backend/cpu/depthwise.py.
    rng = np.random.default_rng(2)
    # groups=G splits the C input channels and the C' output channels into G groups; output group g
    # sees only input group g. The weight is (C', C/G, k, k): each kernel spans C/G channels.
    x = rng.standard_normal((2, 6, 5, 5))
    w = rng.standard_normal((4, 3, 3, 3))                       # G = 2: 6 -> 4 channels, 3 per group
    y = conv2d_im2col(x, w, padding=1, groups=2)
    separate = np.concatenate([conv2d_loops(x[:, :3], w[:2], padding=1),
                               conv2d_loops(x[:, 3:], w[2:], padding=1)], axis=1)
    check(np.allclose(y, separate, rtol=1e-12, atol=1e-12), "groups=2 is two independent convolutions, side by side")
    check(np.allclose(y, F.conv2d(mc.tensor(x), mc.tensor(w), padding=1, groups=2).numpy(), rtol=1e-12,
                      atol=1e-12), "... and equals F.conv2d(groups=2)")
    print("As one GEMM it would be block-diagonal; instead we do one GEMM per group,")
    print("W_g (C'/G, K/G) @ cols_g (K/G, L), batched by np.matmul over the group axis.")

    # Depthwise: groups = C, one input channel per group (C' = m*C with a channel multiplier m).
    c, m = 8, 2
    x = rng.standard_normal((2, c, 12, 12))
    w = rng.standard_normal((m * c, 1, 3, 3))
    y = conv2d_im2col(x, w, padding=1, groups=c)
    ours = F.conv2d(mc.tensor(x), mc.tensor(w), padding=1, groups=c).numpy()
    check(np.allclose(y, ours, rtol=1e-12, atol=1e-12), f"depthwise (groups = C = {c}, multiplier {m}) agrees")
    print(f"Per group the GEMM is ({m}, 9) @ (9, {12 * 12}): {c} tiny products with almost no reuse.")
    print("im2col would copy every pixel 9 times to feed them, so the engine uses a direct Numba")
    print("kernel for depthwise convolutions instead (minicoconv/backend/cpu/depthwise.py):")
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    repeats = 3 if quick else 20
    t_all, t_one = time_numba(mc.tensor(x32), mc.tensor(w32), repeats, padding=1, groups=c)
    t_im2col = timed({"im2col": functools.partial(conv2d_im2col, x32, w32, padding=1, groups=c)}, repeats)["im2col"]
    print(f"  im2col + per-group GEMMs (NumPy) {t_im2col * 1e3:7.3f} ms;  direct Numba kernel "
          f"{t_all * 1e3:7.3f} ms ({numba.get_num_threads()} threads), {t_one * 1e3:7.3f} ms (1 thread)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the slowest timing (used by the test suite)")
    parser.add_argument("--plots", metavar="DIR", type=Path, help="write the picture (PNG) to DIR")
    args = parser.parse_args(argv)

    the_definition()
    im2col_by_hand(args.plots)
    conv_as_gemm()
    timings(args.quick)
    backward_as_gemms()
    groups_and_depthwise(args.quick)
    print("\nDone: loops -> im2col -> GEMM, its backward with col2im, groups and depthwise.")


if __name__ == "__main__":
    main()
