"""`Function`: one differentiable op, its forward and backward side by side.

A subclass implements two static methods on raw backend arrays:

    forward(ctx, *inputs, **options) -> array
    backward(ctx, grad) -> one gradient (or None) per positional input

`Function.apply` unwraps tensors, checks that they share a device (and a dtype,
unless the op says otherwise), runs `forward`, and, when gradients are wanted,
records a `Context` node on the output. Positional inputs that are not tensors
(Python scalars, index tuples) are passed through and get no gradient.

`backward` returns gradients shaped like the op's *output* broadcast; the engine
(`autograd.engine`) sums them back to each input's shape, once, for every op.
It returns arrays it does not keep, or its incoming `grad` itself (or views of it): the
engine may add into the former in place and never writes to the latter.
"""

from __future__ import annotations

from typing import Any

from .grad_mode import is_grad_enabled


class Context:
    """What one recorded op keeps for its backward pass.

    Attributes: `fn` (the Function class), `backend`, `needs_input_grad` (one
    bool per positional input), `inputs` (the input tensors, None for
    non-tensors), `saved` (arrays from `save_for_backward`), plus any attribute
    `forward` chooses to set.
    """

    def __init__(self, fn: type, backend: Any, needs_input_grad: tuple[bool, ...]):
        self.fn = fn
        self.backend = backend
        self.needs_input_grad = needs_input_grad
        self.inputs: tuple | None = None
        self.saved: tuple = ()
        self.freed = False

    def save_for_backward(self, *arrays: Any) -> None:
        self.saved = arrays

    def free(self) -> None:
        """Drop everything held for backward (done once backward has used it)."""
        self.__dict__.update(inputs=None, saved=(), freed=True)
        for name in [k for k in self.__dict__ if k not in _CONTEXT_FIELDS]:
            del self.__dict__[name]


_CONTEXT_FIELDS = {"fn", "backend", "needs_input_grad", "inputs", "saved", "freed"}


class Function:
    """Base class of differentiable ops (PyTorch's `autograd.Function` shape)."""

    #: whether all tensor inputs must share one dtype (False for ops that take
    #: integer indices or boolean masks as tensors)
    same_dtype = True

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError  # every subclass defines it

    @staticmethod
    def backward(ctx: Context, grad: Any) -> Any:
        raise NotImplementedError  # every subclass defines it

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any):
        from ..tensor import Tensor

        tensors = [a for a in args if isinstance(a, Tensor)]
        first = tensors[0]
        for t in tensors[1:]:
            if t.device != first.device:
                raise RuntimeError(
                    f"{cls.__name__}: tensors on different devices: {first.device} and "
                    f"{t.device}; move them with .to(device) first"
                )
            if cls.same_dtype and t.dtype != first.dtype:
                raise TypeError(
                    f"{cls.__name__}: dtype mismatch {first.dtype} and {t.dtype} "
                    f"(shapes {first.shape} and {t.shape}); convert explicitly with .to(dtype)"
                )
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        track = any(needs) and is_grad_enabled()
        ctx = Context(cls, first._backend, needs)
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        out = cls.forward(ctx, *raw, **kwargs)
        # an op that moves data (ToDevice) names the backend of its output in ctx.out_backend
        backend = getattr(ctx, "out_backend", first._backend)
        if getattr(out, "ndim", None) == 0:
            out = backend.asarray(out)  # NumPy gives scalars for 0-d results; a tensor holds an array
        result = Tensor._from_array(out, backend, requires_grad=track)
        if track:
            ctx.inputs = tuple(a if isinstance(a, Tensor) else None for a in args)
            result._ctx = ctx
        return result
