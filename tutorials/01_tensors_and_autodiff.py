"""Tutorial 01: tensors and automatic differentiation.

How to run it, from the repository root:

    python tutorials/01_tensors_and_autodiff.py           # the whole lesson (a few seconds)
    python tutorials/01_tensors_and_autodiff.py --quick --plots out   # fewer steps, a picture in out/ (the tests)

Or from a notebook: `main(["--quick"])`, or call the section functions one by one.

What you will learn, one printed section each:

1. Tensors, dtypes and broadcasting: what a `Tensor` holds and how shapes combine.
2. The recorded graph: every op leaves a node (`t._ctx`) pointing at its inputs.
3. `backward()` and `.grad`: reverse-mode differentiation, checked against calculus by hand.
4. Broadcasting in reverse: why the gradient of a (1, 4) bias added to (3, 4) sums over rows.
5. A tiny learning loop: fit a line with plain gradient descent on `p.data` (picture: the loss).
6. Gradient checking: `minicoconv.testing.gradcheck`, and what it says about a broken op.

Read the code alongside the output: each printed line is produced by the code just above it.
The engine behind it: minicoconv/tensor.py (the Tensor), minicoconv/autograd/function.py (an op's
forward and backward side by side), minicoconv/autograd/engine.py (the backward walk),
minicoconv/ops/ (every differentiable op) and minicoconv/testing.py (gradcheck).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import minicoconv as mc
from minicoconv.autograd import Function
from minicoconv.lesson import check, new_figure, save_figure, section
from minicoconv.testing import GradcheckError, gradcheck


# ---------------------------------------------------------------------------------------
def tensors_and_broadcasting() -> None:
    section(1, "Tensors, dtypes and broadcasting")
    # Engine: minicoconv/tensor.py (Tensor), creation.py (tensor, zeros, randn), dtypes.py (the rules).

    # A Tensor wraps an n-d array (a NumPy array on the CPU, in `.data`) plus autodiff state.
    a = mc.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    print("a =", a)
    print("a.shape =", a.shape, "| a.dtype =", a.dtype, "| a.device =", a.device)

    # dtype rules, as in PyTorch: Python floats -> float32, Python ints -> int64,
    # and a NumPy array keeps its own dtype (so float64 data stays float64).
    print("tensor(1.5).dtype            =", mc.tensor(1.5).dtype)
    print("tensor([1, 2]).dtype         =", mc.tensor([1, 2]).dtype)
    print("tensor(np.zeros(2)).dtype    =", mc.tensor(np.zeros(2)).dtype)
    check(mc.tensor(1.5).dtype == mc.float32, "Python floats become float32 (the training dtype)")

    # Python scalars adopt the tensor's dtype, so float32 stays float32 through arithmetic.
    check((a * 2.5 + 1).dtype == mc.float32, "a * 2.5 + 1 is still float32")

    # Mixing float32 and float64 tensors is refused: convert explicitly with .to(dtype).
    try:
        a + mc.tensor(np.ones((2, 3)))
    except TypeError as err:
        print("a + float64 tensor  ->", err)

    # Broadcasting (NumPy's rule): align shapes on the right; a dim of size 1 stretches.
    col = mc.tensor([[10.0], [20.0], [30.0]])  # (3, 1)
    row = mc.tensor([[1.0, 2.0, 3.0, 4.0]])    # (1, 4)
    grid = col + row                           # (3, 1) + (1, 4) -> (3, 4)
    print(f"(3, 1) + (1, 4) -> {grid.shape}:\n{grid.numpy()}")
    check(grid.shape == (3, 4) and grid.numpy()[2, 3] == 34.0, "broadcasting stretches both operands")


# ---------------------------------------------------------------------------------------
def describe(t: mc.Tensor, names: dict) -> str:
    """A one-line label for a tensor: its name if we gave it one, else what made it."""
    kind = names.get(id(t)) or (t._ctx.fn.__name__ if t._ctx is not None else "constant")
    leaf = " (leaf)" if t.is_leaf else ""
    return f"{kind}{leaf} shape={t.shape}"


def print_graph(t: mc.Tensor, names: dict, prefix: str = "", last: bool = True, top: bool = True) -> None:
    """Print the graph that produced `t` as a tree, root first (recursion is fine: it is tiny)."""
    branch = "" if top else ("└── " if last else "├── ")
    print(prefix + branch + describe(t, names))
    if t._ctx is None:
        return
    # ctx.inputs has one entry per positional argument of the op; non-tensors (Python
    # scalars, axes, keepdims flags) are recorded as None and are not part of the graph.
    parents = [p for p in t._ctx.inputs if p is not None]
    child_prefix = prefix + ("" if top else ("    " if last else "│   "))
    for i, p in enumerate(parents):
        print_graph(p, names, child_prefix, last=i == len(parents) - 1, top=False)


def the_recorded_graph() -> None:
    section(2, "The recorded graph")
    # Engine: Function.apply records a Context (minicoconv/autograd/function.py); no_grad is in
    # minicoconv/autograd/grad_mode.py.

    x = mc.tensor([0.5, -1.0, 2.0], requires_grad=True)
    w = mc.tensor([1.5, 0.5, -0.25], requires_grad=True)
    b = mc.tensor(0.1, requires_grad=True)
    y = (x * w + b).tanh().sum()

    # Every op whose inputs require gradients records a Context on its output, `y._ctx`:
    # the Function that ran (`ctx.fn`) and the input tensors (`ctx.inputs`). Nothing else
    # is needed to run the computation backwards.
    print("y._ctx.fn.__name__ =", y._ctx.fn.__name__)
    print("y._ctx.inputs[0] was made by", y._ctx.inputs[0]._ctx.fn.__name__)
    print("\nThe whole graph of y = sum(tanh(x * w + b)):")
    print_graph(y, {id(x): "x", id(w): "w", id(b): "b"})

    # Leaves are tensors we created; they have no _ctx. Ops under no_grad() record nothing.
    with mc.no_grad():
        z = (x * w).sum()
    check(x.is_leaf and not y.is_leaf, "x is a leaf, y is not")
    check(z._ctx is None and not z.requires_grad, "inside no_grad() nothing is recorded")


# ---------------------------------------------------------------------------------------
def backward_and_grad() -> None:
    section(3, "backward() and .grad")
    # Engine: minicoconv/autograd/engine.py (topological order, one backward per node) and each
    # op's backward in minicoconv/ops/ (elementwise.py holds tanh, mul, add).

    # Same function as in section 2, in float64 so we can compare with calculus exactly.
    xv, wv, bv = np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.5, -0.25]), 0.1
    x = mc.tensor(xv, requires_grad=True)
    w = mc.tensor(wv, requires_grad=True)
    b = mc.tensor(bv, dtype=mc.float64, requires_grad=True)
    y = (x * w + b).tanh().sum()

    # backward() walks the graph from y to the leaves, applying the chain rule at each node,
    # and stores dy/d(leaf) in leaf.grad (with the leaf's shape and dtype).
    y.backward()

    # By hand: y = sum_i tanh(u_i) with u_i = x_i w_i + b, and tanh' = 1 - tanh^2, so
    #   dy/dx_i = w_i (1 - tanh(u_i)^2),  dy/dw_i = x_i (1 - tanh(u_i)^2),  dy/db = sum_i (1 - tanh(u_i)^2)
    s = 1 - np.tanh(xv * wv + bv) ** 2
    for name, got, want in [("x", x.grad, wv * s), ("w", w.grad, xv * s), ("b", b.grad, s.sum())]:
        print(f"d y / d {name}: engine {np.round(got.numpy(), 6)}  by hand {np.round(want, 6)}")
        check(np.allclose(got.numpy(), want, rtol=1e-12), f"engine gradient of {name} equals the hand derivation")

    # A tensor used twice gets the sum of both contributions: d(x*x + x)/dx = 2x + 1.
    x.grad = None  # gradients accumulate across backward() calls: reset them first
    (x * x + x).sum().backward()
    print("d/dx sum(x*x + x) =", x.grad.numpy(), "= 2x + 1")
    check(np.allclose(x.grad.numpy(), 2 * xv + 1), "uses of the same tensor add up")


# ---------------------------------------------------------------------------------------
def broadcasting_in_reverse() -> None:
    section(4, "Broadcasting in reverse: gradients of broadcast operands")
    # Engine: the one place that sums gradients back to an input's shape is in
    # minicoconv/autograd/engine.py.

    x = mc.tensor(np.arange(12.0).reshape(3, 4))                    # a batch of 3 rows, constant
    bias = mc.tensor(np.zeros((1, 4)), requires_grad=True)          # one bias per column
    c = mc.tensor(np.array([[1.0, 0, 0, 2], [1, 1, 0, 2], [1, 0, 3, 2]]))
    loss = ((x + bias) * c).sum()                                   # d loss / d (x + bias) = c
    loss.backward()

    # The forward pass copied the single bias row to all 3 rows; each copy influenced the loss,
    # so by the chain rule the bias gradient is the SUM of the row gradients: c.sum(axis=0).
    # The engine does this "un-broadcasting" in one place for every op, so bias.grad always has
    # bias's own shape, (1, 4), never the (3, 4) of the output.
    print("gradient reaching x + bias (3, 4):\n", c.numpy())
    print("bias.grad (1, 4):", bias.grad.numpy(), "= column sums")
    check(bias.grad.shape == (1, 4), "bias.grad has the bias's shape")
    check(np.array_equal(bias.grad.numpy(), c.numpy().sum(axis=0, keepdims=True)), "it is summed over the rows")


# ---------------------------------------------------------------------------------------
def tiny_learning_loop(steps: int, plots: Path | None = None) -> None:
    section(5, "A tiny learning loop: fitting a line by gradient descent")
    # Engine: the ops used here are in minicoconv/ops/elementwise.py and reduce.py; minicoconv.optim.SGD
    # (minicoconv/optim/sgd.py) does this update for whole models.

    # Data: y = 3x - 2 plus a little noise. mc.manual_seed makes the run reproducible.
    mc.manual_seed(0)
    x = mc.rand(64, 1) * 4 - 2
    y = x * 3.0 - 2.0 + mc.randn(64, 1) * 0.1

    # Parameters are leaves that require gradients.
    w = mc.zeros(1, requires_grad=True)
    b = mc.zeros(1, requires_grad=True)
    lr = 0.03

    losses = []
    for step in range(steps):
        loss = ((x * w + b - y) ** 2).mean()  # mean squared error
        losses.append(loss.item())
        if step % max(steps // 6, 1) == 0 or step == steps - 1:
            print(f"  step {step:3d}  w {w.item():+.3f}  b {b.item():+.3f}  loss {loss.item():.5f}")
        w.grad = b.grad = None                # forget last step's gradients (they accumulate)
        loss.backward()
        # The update itself must not be recorded or differentiated: change the raw arrays.
        for p in (w, b):
            p.data -= lr * p.grad.data

    check(losses[-1] < 0.05 * losses[0], f"the loss fell from {losses[0]:.3f} to {losses[-1]:.4f}")
    check(abs(w.item() - 3) < 0.3 and abs(b.item() + 2) < 0.3, "w is near 3 and b near -2")
    if plots is not None:
        fig = new_figure(5, 3)
        ax = fig.subplots()
        ax.semilogy(losses)
        ax.set_xlabel("step")
        ax.set_ylabel("mean squared error")
        ax.set_title("fitting y = 3x - 2 by gradient descent")
        save_figure(fig, plots, "01_line_fit_loss.png")


# ---------------------------------------------------------------------------------------
class BrokenSquare(Function):
    """y = a * a with a deliberately wrong backward: it forgets the factor 2."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * a

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return g * a  # should be g * 2a


def gradient_checking() -> None:
    section(6, "Gradient checking")
    # Engine: minicoconv/testing.py (gradcheck, and gradcheck_module for a layer's parameters).

    # gradcheck compares each analytic gradient with central finite differences,
    #   d<f(x), R>/dx_j ~ (<f(x + eps e_j), R> - <f(x - eps e_j), R>) / (2 eps),
    # for a random cotangent R, in float64 (float32 is too coarse for finite differences).
    x = mc.tensor(np.array([[0.3, -1.2, 0.8], [2.0, 0.1, -0.5]]), requires_grad=True)
    w = mc.tensor(np.array([[1.0, -0.5], [0.25, 2.0], [-1.5, 0.75]]), requires_grad=True)

    def layer(x, w):
        return (x @ w).sigmoid().log_softmax(axis=1)

    check(gradcheck(layer, x, w), "gradcheck passes for log_softmax(sigmoid(x @ w))")

    # Now the broken op. gradcheck raises GradcheckError naming the op, the input, the worst
    # element and both values: the analytic one is half the numeric one, the missing factor 2.
    try:
        gradcheck(BrokenSquare.apply, x)
    except GradcheckError as err:
        print("GradcheckError:", err)
        check("BrokenSquare" in str(err) and "input 0" in str(err), "the message names the op and the input")
    else:
        raise SystemExit("gradcheck should have caught BrokenSquare")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer training steps (used by the test suite)")
    parser.add_argument("--plots", metavar="DIR", type=Path, help="write the picture (PNG) to DIR")
    args = parser.parse_args(argv)

    tensors_and_broadcasting()
    the_recorded_graph()
    backward_and_grad()
    broadcasting_in_reverse()
    tiny_learning_loop(steps=80 if args.quick else 200, plots=args.plots)
    gradient_checking()
    print("\nDone: tensors, graphs, backward, un-broadcasting, a training loop and gradcheck.")


if __name__ == "__main__":
    main()
