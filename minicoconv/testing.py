"""Gradient checking against central finite differences.

For a function f of tensors and a random cotangent R of f's output shape,
the analytic gradient of <f(x), R> with respect to each input is compared
with the central difference

    d<f, R>/dx_j  ~=  (<f(x + eps e_j), R> - <f(x - eps e_j), R>) / (2 eps)

element by element, in float64. Using a random R (not just sum) checks every
output component's contribution.

`gradcheck` checks a function of tensors; `gradcheck_module` checks a layer
(any `nn.Module`) with respect to its inputs and every trainable parameter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from .autograd import no_grad
from .tensor import Tensor

if TYPE_CHECKING:  # only for the annotation: minicoconv.nn imports far more than this module needs
    from .nn.module import Module


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


def gradcheck_module(module: Module, *inputs: Tensor, eps: float = 1e-6, atol: float = 1e-5,
                     rtol: float = 1e-4, seed: int = 0, allow_unused: bool = False) -> bool:
    """Check ``module(*inputs)``'s gradient w.r.t. the inputs and every trainable parameter.

    The module must be float64 (call ``module.double()``). Inputs that require
    grad are checked; each parameter with ``requires_grad`` is perturbed
    element by element like an input: `gradcheck` is called with fresh copies of
    the parameters, which are swapped into their modules for one forward (a
    layer's ``forward`` reads ``self.weight``), so the module is left exactly as
    it was. The module's mode is the caller's choice (``train()`` checks batch
    statistics, ``eval()`` running ones).

    A parameter that backward never reaches would pass vacuously (0 == 0), so
    it is an error unless ``allow_unused=True`` (for example, routing that a
    layer does not use in its current mode). Raises `GradcheckError`; returns True.
    """
    named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    wrong = [name for name, p in named if p.dtype != np.float64]
    if wrong:
        raise TypeError(f"gradcheck_module({type(module).__name__}): parameters {wrong[:4]} are not float64; "
                        "call module.double() first")
    names = [name for name, _ in named]
    params = [Tensor(p.numpy().copy(), dtype=np.float64, device=p.device, requires_grad=True) for _, p in named]
    n_in = len(inputs)

    def forward(*args: Tensor) -> Tensor:
        with _swapped(module, dict(zip(names, args[n_in:]))):
            return module(*args[:n_in])

    label = f"{type(module).__name__}({module.extra_repr()}) inputs [{', '.join(['x'] * n_in + names)}]"
    gradcheck(forward, *inputs, *params, eps=eps, atol=atol, rtol=rtol, seed=seed, name=label)
    unused = [name for name, p in zip(names, params) if p.grad is None]
    if unused and not allow_unused:
        raise GradcheckError(f"gradcheck_module({label}): backward never reached parameters {unused} "
                             "(their check would pass vacuously; pass allow_unused=True if that is intended)")
    return True


@contextlib.contextmanager
def _swapped(module: Module, tensors: dict[str, Tensor]) -> Iterator[None]:
    """Replace parameters (by dotted name) with other tensors for one block; restore afterwards."""
    owners = dict(module.named_modules())
    saved = []
    try:
        for name, t in tensors.items():
            prefix, _, attr = name.rpartition(".")
            owner = owners[prefix]
            saved.append((owner, attr, getattr(owner, attr)))
            object.__setattr__(owner, attr, t)  # only the attribute: the parameter registry keeps the original
        yield
    finally:
        for owner, attr, t in reversed(saved):
            object.__setattr__(owner, attr, t)


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
