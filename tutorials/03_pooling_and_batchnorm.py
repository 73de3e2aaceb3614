"""Tutorial 03: pooling and batch normalisation -- forward, backward, and the state BN keeps.

How to run it, from the repository root:

    python tutorials/03_pooling_and_batchnorm.py           # the whole lesson (a few seconds)
    python tutorials/03_pooling_and_batchnorm.py --quick --plots out   # fewer steps, a picture in out/ (the tests)

Or from a notebook: `main(["--quick"])`, or call the section functions one by one.

What you will learn, one printed section each:

1. Max pooling: the forward remembers each window's argmax; the backward routes the
   gradient there (and adds it up where windows overlap).
2. Average pooling: the gradient is spread evenly over the window, padding included.
3. Adaptive average pooling: PyTorch's bin rule, with the bin edges printed for 5 -> 3
   and 2 -> 3 (bins overlap, and repeat when the output is larger than the input).
4. Batch norm forward: batch statistics in training, running statistics in eval.
5. Batch norm backward: derived by hand, checked against autograd and with gradcheck.
6. Running statistics: an exponential moving average with `momentum`, converging to
   the data's mean and (unbiased) variance (picture: the running mean and variance).

The engine behind it: minicoconv/ops/pool.py and minicoconv/ops/norm.py (forward and backward),
minicoconv/backend/cpu/pool_kernels.py, adaptive_pool_kernels.py and norm_kernels.py (Numba),
minicoconv/backend/reference/pool.py and norm.py (plain NumPy), minicoconv/nn/layers/norm.py.

Shapes: x (N, C, H, W) throughout; pooling works on each (n, c) plane on its own, batch
norm on each channel c over all its N*H*W values.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from pathlib import Path

import numba
import numpy as np

import minicoconv as mc
from minicoconv import nn
from minicoconv.lesson import check, new_figure, save_figure, section
from minicoconv.nn import functional as F
from minicoconv.testing import gradcheck


@contextlib.contextmanager
def one_numba_thread():
    """For gradcheck: hundreds of calls on tiny arrays, where waking Numba's thread pool costs more
    than the work (a lot more on a busy machine)."""
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def plane(t) -> np.ndarray:
    """The (0, 0) plane of an (N, C, H, W) tensor or array, for printing."""
    return (t.numpy() if isinstance(t, mc.Tensor) else t)[0, 0]


# ---------------------------------------------------------------------------------------
def max_pooling() -> None:
    section(1, "Max pooling: the gradient goes to the argmax")
    # Engine: MaxPool2d in minicoconv/ops/pool.py -> minicoconv/backend/cpu/pool_kernels.py (Numba),
    # minicoconv/backend/reference/pool.py (NumPy).
    xv = np.array([[1.0, 3, 2, 0], [4, 2, 1, 5], [0, 1, 7, 6], [2, 8, 3, 1]]).reshape(1, 1, 4, 4)
    x = mc.tensor(xv, requires_grad=True)
    y = F.max_pool2d(x, 2)                          # 2x2 windows, stride 2 (the default stride = kernel)
    print("x:\n", plane(x))
    print("max_pool2d(x, 2):\n", plane(y))
    check(np.array_equal(plane(y), [[4, 5], [8, 7]]), "each output is the largest value of its 2x2 window")

    # y = max(window) is, locally, y = x[argmax]: a copy of ONE input. Its derivative is 1 for the
    # winner and 0 for the others, so the backward sends each output's gradient to its window's
    # argmax (the forward kernel records the argmax for exactly this) and zero elsewhere.
    y.backward(mc.tensor(np.array([[10.0, 20], [30, 40]]).reshape(1, 1, 2, 2)))
    print("upstream gradient [[10, 20], [30, 40]] routed back to x:\n", plane(x.grad))
    want = np.zeros((4, 4))
    want[1, 0], want[1, 3], want[3, 1], want[2, 2] = 10, 20, 30, 40
    check(np.array_equal(plane(x.grad), want), "each gradient lands on its window's maximum, zeros elsewhere")

    # Overlapping windows (kernel 3, stride 1): the same pixel can win several windows, and then it
    # receives the SUM of their gradients (one input used several times).
    x.grad = None
    y = F.max_pool2d(x, 3, stride=1)
    y.sum().backward()
    print("3x3 windows, stride 1:  y =\n", plane(y), "\n  d sum(y) / dx =\n", plane(x.grad))
    check(plane(x.grad)[3, 1] == 2 and plane(x.grad)[2, 2] == 2, "8 and 7 each win two windows: gradient 2")

    # A tie has no derivative; like PyTorch, the first maximum in row-major order takes the gradient.
    tie = mc.tensor(np.ones((1, 1, 2, 2)), requires_grad=True)
    F.max_pool2d(tie, 2).sum().backward()
    check(np.array_equal(plane(tie.grad), [[1, 0], [0, 0]]), "on a tie the first maximum takes the gradient")

    # gradcheck away from ties (finite differences cannot cross a kink):
    rng = np.random.default_rng(0)
    xr = mc.tensor(rng.permutation(2 * 3 * 5 * 5).reshape(2, 3, 5, 5) * 0.1, requires_grad=True)
    with one_numba_thread():
        check(gradcheck(lambda t: F.max_pool2d(t, 3, 2, 1), xr), "gradcheck: max_pool2d(k=3, s=2, p=1) on tie-free x")


# ---------------------------------------------------------------------------------------
def average_pooling() -> None:
    section(2, "Average pooling: the gradient is shared evenly")
    # Engine: AvgPool2d in minicoconv/ops/pool.py -> minicoconv/backend/cpu/pool_kernels.py.
    x = mc.tensor(np.arange(16.0).reshape(1, 1, 4, 4), requires_grad=True)
    y = F.avg_pool2d(x, 2)
    print("avg_pool2d(x, 2):\n", plane(y))
    # y = (1/k^2) * sum(window): every input of the window gets 1/k^2 of the output's gradient.
    y.sum().backward()
    check(np.allclose(plane(x.grad), 0.25), "every pixel in exactly one 2x2 window gets 1/4")

    # With padding, PyTorch's default (count_include_pad=True) divides by k*k even where the
    # window hangs over the zero padding, so a border output averages in some zeros.
    x.grad = None
    y = F.avg_pool2d(x, 3, stride=1, padding=1)
    print("avg_pool2d(x, 3, stride=1, padding=1) -- padding counted:\n", np.round(plane(y), 3))
    check(np.isclose(plane(y)[0, 0], (0 + 1 + 4 + 5) / 9), "the corner output is (0+1+4+5)/9, not /4")
    y.sum().backward()
    print("d sum(y)/dx = (windows covering the pixel) / 9:\n", np.round(plane(x.grad) * 9, 3), "/ 9")
    check(np.isclose(plane(x.grad)[0, 0], 4 / 9) and np.isclose(plane(x.grad)[1, 1], 1.0),
          "a corner pixel is in 4 windows (4/9), an interior one in 9 (9/9)")
    rng = np.random.default_rng(1)
    xr = mc.tensor(rng.standard_normal((2, 2, 5, 4)), requires_grad=True)
    with one_numba_thread():
        check(gradcheck(lambda t: F.avg_pool2d(t, 3, 2, 1), xr), "gradcheck: avg_pool2d(k=3, s=2, p=1)")


# ---------------------------------------------------------------------------------------
def adaptive_bins(length: int, n_bins: int) -> list[tuple[int, int]]:
    """PyTorch's rule: bin j of an axis of length L into o bins is [floor(j L / o), ceil((j + 1) L / o))."""
    return [(math.floor(j * length / n_bins), math.ceil((j + 1) * length / n_bins)) for j in range(n_bins)]


def adaptive_pooling() -> None:
    section(3, "Adaptive average pooling: a fixed output size from any input size")
    # Engine: AdaptiveAvgPool2d in minicoconv/ops/pool.py -> minicoconv/backend/cpu/adaptive_pool_kernels.py.
    # You ask for the output size; the windows ("bins") follow from it. Bin j of an axis of length
    # L into o bins spans [floor(j L / o), ceil((j+1) L / o)). The bins cover the whole axis; they
    # overlap when o does not divide L, and when o > L several bins repeat the same pixels.
    for length, n_bins in ((5, 3), (2, 3), (6, 3), (7, 1)):
        bins = adaptive_bins(length, n_bins)
        print(f"  L = {length} -> o = {n_bins}: bins {bins}  sizes {[hi - lo for lo, hi in bins]}")
    check(adaptive_bins(5, 3) == [(0, 2), (1, 4), (3, 5)], "5 -> 3: bins overlap at pixels 1 and 3")
    check(adaptive_bins(2, 3) == [(0, 1), (0, 2), (1, 2)], "2 -> 3 (upsampling): the middle bin spans both pixels")

    # The same rule, by hand, against the engine (and PyTorch if it is installed):
    x = np.arange(2 * 5 * 2, dtype=np.float64).reshape(1, 2, 5, 2)      # H = 5, W = 2
    y = F.adaptive_avg_pool2d(mc.tensor(x), (3, 3)).numpy()
    by_hand = np.array([[x[0, :, r0:r1, c0:c1].mean(axis=(1, 2)) for c0, c1 in adaptive_bins(2, 3)]
                        for r0, r1 in adaptive_bins(5, 3)]).transpose(2, 0, 1)
    print("x plane 0 (5 x 2):\n", x[0, 0], "\nadaptive_avg_pool2d(x, (3, 3)) plane 0:\n", y[0, 0])
    check(np.allclose(y[0], by_hand), "the engine follows the rule: (5, 2) -> (3, 3)")
    try:
        import torch
    except ImportError:
        print("  (PyTorch not installed: skipping the comparison with torch)")
    else:
        theirs = torch.nn.functional.adaptive_avg_pool2d(torch.tensor(x), (3, 3)).numpy()
        check(np.allclose(y, theirs), "PyTorch gives the same (3, 3) output")

    # The backward spreads each output's gradient evenly over its bin (like average pooling with
    # variable windows); a pixel in two bins collects from both.
    xt = mc.tensor(x, requires_grad=True)
    F.adaptive_avg_pool2d(xt, (3, 1)).sum().backward()
    print("d sum(adaptive_avg_pool2d(x, (3, 1))) / dx, plane 0:\n", plane(xt.grad))
    check(np.isclose(plane(xt.grad)[1, 0], 1 / 4 + 1 / 6), "pixel row 1 is in bins 0 (4 pixels) and 1 (6 pixels)")
    with one_numba_thread():
        check(gradcheck(lambda t: F.adaptive_avg_pool2d(t, (3, 4)), mc.tensor(x, requires_grad=True)),
              "gradcheck: adaptive_avg_pool2d (5, 2) -> (3, 4)")


# ---------------------------------------------------------------------------------------
def batch_norm_forward() -> None:
    section(4, "Batch norm forward: training vs eval")
    # Engine: minicoconv/nn/layers/norm.py (BatchNorm2d, its buffers) and minicoconv/ops/norm.py ->
    # minicoconv/backend/cpu/norm_kernels.py (one fused pass per channel).
    # Per channel c, over its M = N*H*W values:
    #   training:  mu_c, var_c = mean and (biased) variance of THIS batch
    #   eval:      mu_c, var_c = the running estimates kept in buffers
    #   y = (x - mu_c) / sqrt(var_c + eps) * weight_c + bias_c
    rng = np.random.default_rng(2)
    x = mc.tensor(rng.standard_normal((8, 3, 4, 4)) * np.array([1.0, 5.0, 0.2]).reshape(1, 3, 1, 1)
                  + np.array([0.0, 10.0, -3.0]).reshape(1, 3, 1, 1))
    bn = nn.BatchNorm2d(3).double()
    print(bn, "| parameters:", [n for n, _ in bn.named_parameters()], "| buffers:", [n for n, _ in bn.named_buffers()])
    xv = x.numpy()
    print("per-channel mean of x:", np.round(xv.mean(axis=(0, 2, 3)), 3), " std:", np.round(xv.std(axis=(0, 2, 3)), 3))

    y = bn(x).numpy()                                   # training mode (the default)
    print("training: per-channel mean of y:", np.round(y.mean(axis=(0, 2, 3)), 6) + 0.0,  # + 0.0: no "-0."
          " std:", np.round(y.std(axis=(0, 2, 3)), 4))
    check(np.allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12) and np.allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-3),
          "training mode normalises each channel with the batch's own statistics")
    # One training step has moved the running statistics 10% (momentum 0.1) from (0, 1) towards the batch's:
    print("after one step: running_mean =", np.round(bn.running_mean.numpy(), 4),
          " running_var =", np.round(bn.running_var.numpy(), 4))

    bn.eval()
    y_eval = bn(x).numpy()
    rm, rv = bn.running_mean.numpy(), bn.running_var.numpy()
    want = (xv - rm.reshape(1, 3, 1, 1)) / np.sqrt(rv.reshape(1, 3, 1, 1) + bn.eps)
    check(np.allclose(y_eval, want, rtol=1e-12), "eval mode uses the running statistics instead")
    check(not np.allclose(y_eval, y), "... so the same input gives a different output than in training")
    # In eval mode each channel is an affine map a_c x + c_c: the form fused inference folds into a conv.
    a, c = bn.affine_params()
    check(np.allclose(y_eval, xv * a.reshape(1, 3, 1, 1) + c.reshape(1, 3, 1, 1), rtol=1e-12),
          "eval-mode BN is y = a_c * x + c_c per channel (bn.affine_params())")


# ---------------------------------------------------------------------------------------
def batch_norm_backward_by_hand(g, x, weight, eps):
    """dL/dx, dL/dweight, dL/dbias of training-mode batch norm, given g = dL/dy (NumPy, (N, C, H, W)).

    Per channel, with M values, x_hat = (x - mu) * r and r = 1/sqrt(var + eps):
      dbias   = sum(g)
      dweight = sum(g * x_hat)
      dx_hat  = g * weight
      mu and var depend on every x_i: d mu/dx_i = 1/M, d var/dx_i = 2 (x_i - mu)/M, hence
      dx      = r/M * (M dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat))
              = weight * r / M * (M g - dbias - x_hat * dweight)
    """
    axes, shape = (0, 2, 3), (1, -1, 1, 1)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    mu, var = x.mean(axis=axes), x.var(axis=axes)
    r = 1 / np.sqrt(var + eps)
    x_hat = (x - mu.reshape(shape)) * r.reshape(shape)
    dbias, dweight = g.sum(axis=axes), (g * x_hat).sum(axis=axes)
    dx = (weight * r / m).reshape(shape) * (m * g - dbias.reshape(shape) - x_hat * dweight.reshape(shape))
    return dx, dweight, dbias


def batch_norm_backward() -> None:
    section(5, "Batch norm backward, derived and checked")
    # Engine: the backward of minicoconv/ops/norm.py -> minicoconv/backend/cpu/norm_kernels.py;
    # minicoconv/backend/reference/norm.py writes the same formula in NumPy.
    # The derivation is in the docstring of batch_norm_backward_by_hand (read it first). The point
    # to notice: in training, every output depends on EVERY input of its channel through mu and
    # var, so dx is not just g * weight * r -- two correction terms remove the gradient's mean and
    # its component along x_hat. (In eval mode mu and var are constants and dx = g * weight * r.)
    rng = np.random.default_rng(3)
    xv, wv, bv = rng.standard_normal((4, 3, 2, 3)), rng.standard_normal(3), rng.standard_normal(3)
    g = rng.standard_normal(xv.shape)
    x, w, b = (mc.tensor(a, requires_grad=True) for a in (xv, wv, bv))
    F.batch_norm(x, None, None, w, b, training=True, eps=1e-5).backward(mc.tensor(g))
    dx, dw, db = batch_norm_backward_by_hand(g, xv, wv, 1e-5)
    for name, ours, auto in (("dx", dx, x.grad), ("dweight", dw, w.grad), ("dbias", db, b.grad)):
        check(np.allclose(ours, auto.numpy(), rtol=1e-10, atol=1e-12), f"{name} by hand equals the fused kernel's")

    # The fused Numba kernel against its obviously-correct composed version: BN built from tensor
    # ops (mean, var, sqrt) differentiates through them with no hand-written backward at all.
    def composed(x, w, b):
        mu = x.mean(axis=(0, 2, 3), keepdims=True)
        var = x.var(axis=(0, 2, 3), keepdims=True, correction=0)
        return (x - mu) / (var + 1e-5).sqrt() * w.reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1)

    x2, w2, b2 = (mc.tensor(a, requires_grad=True) for a in (xv, wv, bv))
    composed(x2, w2, b2).backward(mc.tensor(g))
    same = [np.allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10, atol=1e-12) for p, q in ((x, x2), (w, w2), (b, b2))]
    check(all(same), "the composed version's autograd gives the same three gradients")
    rm, rv = mc.tensor(rng.standard_normal(3)), mc.tensor(rng.uniform(0.5, 2.0, 3))
    with one_numba_thread():
        check(gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), x, w, b),
              "gradcheck: batch_norm in training mode, w.r.t. x, weight and bias")
        check(gradcheck(lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=False), x, w, b),
              "gradcheck: batch_norm in eval mode")


# ---------------------------------------------------------------------------------------
def running_statistics(steps: int, plots: Path | None = None) -> None:
    section(6, "Running statistics: an exponential moving average")
    # Engine: the running-statistics update in minicoconv/ops/norm.py (BatchNorm2d keeps the buffers,
    # minicoconv/nn/layers/norm.py; the CPU kernel is minicoconv/backend/cpu/norm_kernels.py).
    # After every training forward, per channel:
    #   running_mean = (1 - momentum) * running_mean + momentum * batch_mean
    #   running_var  = (1 - momentum) * running_var  + momentum * batch_var * M / (M - 1)
    # (the UNBIASED batch variance, as PyTorch). Note the convention: momentum is the weight of the
    # NEW value, the opposite of an optimizer's momentum. Old batches fade as (1 - momentum)^steps.
    rng = np.random.default_rng(4)
    true_mean, true_std = np.array([2.0, -1.0]), np.array([3.0, 0.5])
    bn = nn.BatchNorm2d(2, momentum=0.1).double()
    expected_mean, expected_var = np.zeros(2), np.ones(2)
    history = []
    print(f"data: mean {true_mean}, variance {true_std ** 2}; momentum 0.1, {steps} batches of (16, 2, 4, 4)")
    for step in range(1, steps + 1):
        batch = rng.standard_normal((16, 2, 4, 4)) * true_std.reshape(1, 2, 1, 1) + true_mean.reshape(1, 2, 1, 1)
        bn(mc.tensor(batch))
        m = batch.shape[0] * batch.shape[2] * batch.shape[3]
        expected_mean = 0.9 * expected_mean + 0.1 * batch.mean(axis=(0, 2, 3))
        expected_var = 0.9 * expected_var + 0.1 * batch.var(axis=(0, 2, 3)) * m / (m - 1)
        history.append((bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()))
        if step in (1, 2, 5, 10, 20, 40, steps):
            print(f"  step {step:3d}: running_mean {np.round(bn.running_mean.numpy(), 3)}  "
                  f"running_var {np.round(bn.running_var.numpy(), 3)}")
    check(np.allclose(bn.running_mean.numpy(), expected_mean, rtol=1e-12)
          and np.allclose(bn.running_var.numpy(), expected_var, rtol=1e-12),
          "the buffers follow the update rule above exactly")
    left = 0.9 ** steps
    print(f"the initial (0, 1) still weighs 0.9^{steps} = {left:.3g} in the estimate")
    check(np.allclose(bn.running_mean.numpy(), true_mean, atol=0.2 + 3 * left)
          and np.allclose(bn.running_var.numpy(), true_std ** 2, rtol=0.15 + 10 * left),
          "the running statistics approach the data's mean and variance")
    # The buffers are part of the model's state: saved by state_dict, converted by .to(dtype).
    state = bn.state_dict()
    check("running_mean" in state and "running_var" in state, "state_dict() includes the running statistics")
    if plots is not None:
        fig = new_figure(9, 3)
        axes = fig.subplots(1, 2)
        steps_axis = np.arange(1, steps + 1)
        for k, (ax, name, truth) in enumerate(zip(axes, ("running_mean", "running_var"),
                                                  (true_mean, true_std ** 2))):
            values = np.array([h[k] for h in history])
            for c in range(2):
                line = ax.plot(steps_axis, values[:, c], label=f"channel {c}")[0]
                ax.axhline(truth[c], color=line.get_color(), linestyle=":")
            ax.set_xlabel("training step")
            ax.set_title(f"{name} (dotted: the data's value)")
            ax.legend(fontsize=8)
        save_figure(fig, plots, "03_running_statistics.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps in section 6 (used by the test suite)")
    parser.add_argument("--plots", metavar="DIR", type=Path, help="write the picture (PNG) to DIR")
    args = parser.parse_args(argv)

    max_pooling()
    average_pooling()
    adaptive_pooling()
    batch_norm_forward()
    batch_norm_backward()
    running_statistics(steps=30 if args.quick else 80, plots=args.plots)
    print("\nDone: max/average/adaptive pooling and batch norm, forward, backward and running statistics.")


if __name__ == "__main__":
    main()
