"""Free-function forms of the tensor ops (`minicoconv.exp(x)`, `minicoconv.cat([...])`, ...)."""

from __future__ import annotations

from collections.abc import Sequence

from .ops import elementwise as E
from .ops import shape as S
from .ops.reduce import normalize_axis
from .tensor import Tensor


def exp(x: Tensor) -> Tensor: return x.exp()
def log(x: Tensor) -> Tensor: return x.log()
def sqrt(x: Tensor) -> Tensor: return x.sqrt()
def abs(x: Tensor) -> Tensor: return x.abs()  # noqa: A001 - PyTorch's name
def relu(x: Tensor) -> Tensor: return x.relu()
def sigmoid(x: Tensor) -> Tensor: return x.sigmoid()
def tanh(x: Tensor) -> Tensor: return x.tanh()
def maximum(a: Tensor, b) -> Tensor: return a.maximum(b)
def minimum(a: Tensor, b) -> Tensor: return a.minimum(b)
def matmul(a: Tensor, b: Tensor) -> Tensor: return a.matmul(b)
def softmax(x: Tensor, axis: int = -1) -> Tensor: return x.softmax(axis)
def log_softmax(x: Tensor, axis: int = -1) -> Tensor: return x.log_softmax(axis)


def where(cond: Tensor, a, b) -> Tensor:
    """Elementwise `a if cond else b`; a or b may be Python scalars."""
    ref = a if isinstance(a, Tensor) else b
    if not isinstance(ref, Tensor):
        raise TypeError("where: at least one of a and b must be a Tensor")
    cond_data = cond.data if isinstance(cond, Tensor) else ref._backend.asarray(cond)
    if cond_data.dtype != bool:
        raise TypeError(f"where: condition must be boolean, got {cond_data.dtype}")
    a, b = ref._lift(a), ref._lift(b)  # after lifting, so NumPy arrays are checked too
    for name, v in (("a", a), ("b", b)):
        if isinstance(v, Tensor) and v.dtype != ref.dtype:
            raise TypeError(f"where: dtype mismatch {ref.dtype} and {v.dtype} ({name})")
    return E.Where.apply(Tensor._from_array(cond_data, ref._backend), a, b)


def cat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis (all other dims must agree)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: needs at least one tensor")
    first = tensors[0]
    axis = normalize_axis(axis, first.ndim, "cat")[0]
    for t in tensors[1:]:
        if t.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis):
            raise ValueError(f"cat: shapes {first.shape} and {t.shape} differ outside axis {axis}")
    return S.Concatenate.apply(*tensors, axis)


concatenate = cat


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join same-shaped tensors along a new axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: shapes {tensors[0].shape} and {t.shape} differ")
    axis = normalize_axis(axis, tensors[0].ndim + 1, "stack")[0]
    return cat([t.unsqueeze(axis) for t in tensors], axis)


def pad(x: Tensor, pad_width, value: float = 0.0) -> Tensor:
    return x.pad(pad_width, value)
