"""Shared pieces of the CPU pooling and batch-norm kernel tests: finite differences,
non-contiguous views, gradients through PyTorch (its fixture is the suite's, in conftest.py), and
the shared inputs."""

import numba
import numpy as np
from hypothesis import settings

EXAMPLES = settings(max_examples=30, deadline=None)


def numeric_grad(f, a, h=1e-6):
    """Central differences of the scalar f() with respect to the array a (changed in place).

    The thousands of tiny kernel calls run on one Numba thread: a parallel launch waits
    for every worker, which is slow when another process holds a core.
    """
    grad = np.empty_like(a)
    flat = a.reshape(-1)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + h
            f_plus = f()
            flat[k] = old - h
            f_minus = f()
            flat[k] = old
            grad.reshape(-1)[k] = (f_plus - f_minus) / (2 * h)
    finally:
        numba.set_num_threads(threads)
    return grad


def maybe_strided(x, strided):
    """The same values as x, as a non-contiguous view when strided."""
    if not strided:
        return x
    big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype)
    big[..., ::2] = x
    return big[..., ::2]


F32 = {"rtol": 1e-5, "atol": 1e-5}


def torch_grad(torch, fn, cotangent, *arrays):
    """Forward fn on torch leaves made from arrays; return output and input gradients."""
    leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*leaves)
    out.backward(torch.from_numpy(cotangent))
    return out.detach().numpy(), [t.grad.numpy() for t in leaves]


X = np.zeros((2, 3, 6, 6), np.float32)


C3 = np.ones(3, np.float32)
