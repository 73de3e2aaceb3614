"""Gradient checking against central finite differences.

For a function f of tensors and a random cotangent R of f's output shape,
the analytic gradient of <f(x), R> with respect to each input is compared
with the central difference

    d<f, R>/dx_j  ~=  (<f(x + eps e_j), R> - <f(x - eps e_j), R>) / (2 eps)

element by element, in float64. Using a random R (not just sum) checks every
output component's contribution.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .autograd import no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with finite differences."""


def gradcheck(fn: Callable[..., Tensor], *inputs: Tensor, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-4, seed: int = 0, name: str | None = None) -> bool:
    """Check the gradient of `fn` w.r.t. every input that requires grad.

    Inputs must be float64 tensors. Raises `GradcheckError` naming the op, the
    input, the worst element and both values; returns True when all agree
    within |analytic - numeric| <= atol + rtol * |numeric|.
    """
    name = name or _describe(fn)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError(f"gradcheck({name}): no input requires grad")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck({name}): input {i} is {inputs[i].dtype}; use float64 "
                            "(float32 finite differences are too coarse to check against)")
        inputs[i].grad = None

    out = fn(*inputs)
    rng = np.random.default_rng(seed)
    cotangent = rng.standard_normal(out.shape)
    out.backward(Tensor(cotangent, dtype=out.dtype, device=out.device))

    for i in checked:
        x = inputs[i]
        analytic = np.zeros(x.shape) if x.grad is None else x.grad.numpy()
        numeric = _numeric_grad(fn, inputs, i, cotangent, eps)
        err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if err.size and err.max() > 0:
            j = np.unravel_index(np.argmax(err), err.shape)
            raise GradcheckError(
                f"gradcheck({name}): gradient of input {i} (shape {x.shape}) is wrong at index "
                f"{tuple(int(k) for k in j)}: analytic {analytic[j]:.8g}, numeric {numeric[j]:.8g} "
                f"(max abs diff {np.abs(analytic - numeric).max():.3g}, atol={atol}, rtol={rtol})"
            )
    return True


def _describe(fn) -> str:
    """A name for messages: `SomeOp.apply` is named after its Function class."""
    owner = getattr(fn, "__self__", None)
    return owner.__name__ if isinstance(owner, type) else getattr(fn, "__name__", "function")


def _numeric_grad(fn, inputs, i, cotangent, eps) -> np.ndarray:
    x = inputs[i]
    base = x.numpy().astype(np.float64).copy()
    grad = np.zeros_like(base)
    flat, gflat = base.reshape(-1), grad.reshape(-1)

    def value() -> float:
        args = list(inputs)
        args[i] = Tensor(base, dtype=np.float64, device=x.device)
        return float(np.sum(fn(*args).numpy() * cotangent))

    with no_grad():
        for j in range(flat.size):
            orig = flat[j]
            flat[j] = orig + eps
            plus = value()
            flat[j] = orig - eps
            minus = value()
            flat[j] = orig
            gflat[j] = (plus - minus) / (2 * eps)
    return grad
