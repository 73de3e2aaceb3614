"""`Tensor`: an n-d array on a device, with reverse-mode autodiff.

A tensor holds a backend array in `.data` (a NumPy array on "cpu"; note that
PyTorch's `.data` is a Tensor, ours is the raw array) and, when it was computed
by a recorded op, the op's `Context` in `._ctx`. Every method here either reads
metadata or calls one `Function` from `minicoconv.ops`; composed ops (mean, var,
stack, ...) are written in terms of those primitives, so they need no backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import dtypes
from .autograd import engine
from .backend import Backend, get_backend
from .ops import elementwise as E
from .ops import linalg as L
from .ops import reduce as R
from .ops import shape as S
from .ops import softmax as SM

Axis = int | Sequence[int] | None


class Tensor:
    """n-d array with gradient tracking. Create with `minicoconv.tensor(...)`."""

    __slots__ = ("data", "requires_grad", "grad", "_ctx", "_backend", "_retains_grad", "__weakref__")
    __array_priority__ = 1000  # so `ndarray + Tensor` calls Tensor.__radd__

    def __init__(self, data: Any, requires_grad: bool = False, dtype=None, device: str = "cpu"):
        backend = get_backend(device)
        if isinstance(data, Tensor):
            data = data.numpy()
        if dtype is None and not isinstance(data, np.ndarray | np.generic):
            probe = np.asarray(data)
            dtype = dtypes.float32 if probe.dtype.kind == "f" else probe.dtype
        array = np.asarray(data, dtype=dtypes.resolve(dtype) if dtype is not None else None)
        dtypes.resolve(array.dtype)
        self._init(backend.asarray(array), backend, requires_grad)

    def _init(self, data: Any, backend: Backend, requires_grad: bool) -> None:
        if requires_grad and not dtypes.is_floating(data.dtype):
            raise TypeError(f"only floating-point tensors can require gradients, got {data.dtype}")
        self.data = data
        self.requires_grad = requires_grad
        self.grad: Tensor | None = None
        self._ctx = None
        self._backend = backend
        self._retains_grad = False

    @classmethod
    def _from_array(cls, data: Any, backend: Backend, requires_grad: bool = False) -> Tensor:
        """Wrap a backend array without copying or checking (used by ops)."""
        t = object.__new__(cls)
        t._init(data, backend, requires_grad)
        return t

    # ---- metadata -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def device(self) -> str:
        return self._backend.name

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    def numel(self) -> int:
        return int(self.data.size)

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = "" if self.dtype == dtypes.float32 else f", dtype={self.dtype}"
        extra += ", requires_grad=True" if self.requires_grad else ""
        extra += f", device='{self.device}'" if self.device != "cpu" else ""
        return f"tensor({body}{extra})"

    # ---- conversion ----------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (a copy when the tensor is not on the CPU)."""
        return self._backend.to_numpy(self.data)

    def item(self) -> float | int | bool:
        if self.numel() != 1:
            raise ValueError(f"item(): tensor has {self.numel()} elements, expected 1")
        return self.numpy().reshape(()).item()

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def detach(self) -> Tensor:
        """The same data, cut off from the graph."""
        return Tensor._from_array(self.data, self._backend)

    def to(self, device: str | None = None, dtype=None) -> Tensor:
        """Move to `device` and/or convert to `dtype` (differentiable); `x.to(float64)` works too, as PyTorch."""
        if device is not None and not isinstance(device, str | Backend):
            device, dtype = None, device
        out = self
        if dtype is not None and dtypes.resolve(dtype) != self.dtype:
            out = self._cast(dtypes.resolve(dtype))
        if device is not None and get_backend(device) is not self._backend:
            from .ops.device import ToDevice

            out = ToDevice.apply(out, get_backend(device))
        return out

    def float(self) -> Tensor:
        return self.to(dtype=dtypes.float32)

    def double(self) -> Tensor:
        return self.to(dtype=dtypes.float64)

    def _cast(self, dtype: np.dtype) -> Tensor:
        if dtypes.is_floating(self.dtype) and dtypes.is_floating(dtype):
            return E.Cast.apply(self, dtype)
        return Tensor._from_array(self._backend.astype(self.data, dtype), self._backend)

    # ---- autodiff ------------------------------------------------------------
    def backward(self, grad: Tensor | None = None) -> None:
        """Accumulate d(self)/d(leaf) into `.grad` of every leaf that requires it.

        `grad` (the upstream gradient) may be omitted only for a one-element tensor.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input of the computation had requires_grad=True)")
        if grad is None:
            if self.numel() != 1:
                raise RuntimeError(f"backward() on a non-scalar tensor of shape {self.shape} "
                                   "needs an explicit gradient of the same shape")
            g = self._backend.full(self.shape, 1, dtype=self.dtype)
        else:
            g = grad.data if isinstance(grad, Tensor) else self._backend.asarray(grad, dtype=self.dtype)
            if tuple(g.shape) != self.shape or g.dtype != self.dtype:
                raise ValueError(f"backward(): gradient has shape {tuple(g.shape)} and dtype {g.dtype}, "
                                 f"expected {self.shape} and {self.dtype}")
        engine.backward(self, g)

    def retain_grad(self) -> Tensor:
        """Keep `.grad` for this non-leaf tensor too."""
        self._retains_grad = True
        return self

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if flag and not dtypes.is_floating(self.dtype):
            raise TypeError(f"only floating-point tensors can require gradients, got {self.dtype}")
        self.requires_grad = flag
        return self

    # ---- arithmetic ----------------------------------------------------------
    def _lift(self, other: Any) -> Any:
        """Python scalars and arrays become arrays of this tensor's dtype and device."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, np.ndarray):  # arrays keep their dtype, so mismatches are caught
            return Tensor(other, dtype=other.dtype, device=self.device)
        if dtypes.is_floating(self.dtype) or not isinstance(other, float):
            return self._backend.asarray(other, dtype=self.dtype)
        return self._backend.asarray(other)

    def __add__(self, o): return E.Add.apply(self, self._lift(o))
    def __radd__(self, o): return E.Add.apply(self._lift(o), self)
    def __sub__(self, o): return E.Sub.apply(self, self._lift(o))
    def __rsub__(self, o): return E.Sub.apply(self._lift(o), self)
    def __mul__(self, o): return E.Mul.apply(self, self._lift(o))
    def __rmul__(self, o): return E.Mul.apply(self._lift(o), self)
    def __truediv__(self, o): return E.Div.apply(self, self._lift(o))
    def __rtruediv__(self, o): return E.Div.apply(self._lift(o), self)
    def __pow__(self, o): return E.Pow.apply(self, self._lift(o))
    def __rpow__(self, o): return E.Pow.apply(self._lift(o), self)
    def __neg__(self): return E.Neg.apply(self)
    def __matmul__(self, o): return self.matmul(o)
    def __rmatmul__(self, o): return self._lift_tensor(o).matmul(self)

    def _lift_tensor(self, o: Any) -> Tensor:
        """`_lift`, always as a Tensor (it gives a Tensor for ndarrays, a raw array otherwise)."""
        o = self._lift(o)
        return o if isinstance(o, Tensor) else Tensor._from_array(o, self._backend)

    # comparisons give boolean tensors and are not differentiable
    def _compare(self, fn, o):
        o = o.data if isinstance(o, Tensor) else o
        return Tensor._from_array(fn(self.data, o), self._backend)

    def __gt__(self, o): return self._compare(self._backend.greater, o)
    def __lt__(self, o): return self._compare(self._backend.less, o)
    def __ge__(self, o): return ~(self < o)
    def __le__(self, o): return ~(self > o)
    def eq(self, o): return self._compare(self._backend.equal, o)

    def __invert__(self):
        if self.dtype != dtypes.bool_:
            raise TypeError(f"~ needs a boolean tensor, got {self.dtype}")
        return Tensor._from_array(self._backend.equal(self.data, False), self._backend)

    __hash__ = object.__hash__

    def exp(self): return E.Exp.apply(self)
    def log(self): return E.Log.apply(self)
    def sqrt(self): return E.Sqrt.apply(self)
    def abs(self): return E.Abs.apply(self)
    def relu(self): return E.ReLU.apply(self)
    def sigmoid(self): return E.Sigmoid.apply(self)
    def tanh(self): return E.Tanh.apply(self)
    def maximum(self, o): return E.Maximum.apply(self, self._lift(o))
    def minimum(self, o): return E.Minimum.apply(self, self._lift(o))

    def matmul(self, other: Tensor) -> Tensor:
        """Matrix product as NumPy's matmul: 1-d operands are promoted, then squeezed."""
        other = self._lift_tensor(other)
        if self.ndim == 0 or other.ndim == 0:
            raise ValueError(f"matmul: 0-d operand (shapes {self.shape} and {other.shape})")
        if self.shape[-1] != other.shape[-2 if other.ndim > 1 else 0]:  # name the shapes the caller gave
            raise ValueError(f"matmul: shapes {self.shape} and {other.shape} are not aligned "
                             f"(need (..., m, k) @ (..., k, n))")
        a = self.reshape(1, -1) if self.ndim == 1 else self
        b = other.reshape(-1, 1) if other.ndim == 1 else other
        out = L.MatMul.apply(a, b)
        if self.ndim == 1:
            out = out.reshape(*out.shape[:-2], out.shape[-1])
        if other.ndim == 1:
            out = out.reshape(out.shape[:-1])
        return out

    # ---- reductions ----------------------------------------------------------
    def sum(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        return R.Sum.apply(self, R.normalize_axis(axis, self.ndim, "sum"), keepdims)

    def mean(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        axes = R.normalize_axis(axis, self.ndim, "mean")
        return self.sum(axes, keepdims) / _count(self.shape, axes)

    def max(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        axes = R.normalize_axis(axis, self.ndim, "max")
        if self.numel() == 0:
            raise ValueError("max: empty tensor has no maximum")
        return R.Max.apply(self, axes, keepdims)

    def min(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        axes = R.normalize_axis(axis, self.ndim, "min")  # checked here, so errors say "min", not "max"
        if self.numel() == 0:
            raise ValueError("min: empty tensor has no minimum")
        return -((-self).max(axes, keepdims))

    def var(self, axis: Axis = None, keepdims: bool = False, correction: int = 1) -> Tensor:
        """Variance; correction=1 (default, as PyTorch) divides by n - 1."""
        axes = R.normalize_axis(axis, self.ndim, "var")
        centered = self - self.mean(axes, keepdims=True)
        return (centered * centered).sum(axes, keepdims) / max(_count(self.shape, axes) - correction, 0)

    def argmax(self, axis: int | None = None) -> Tensor:
        return Tensor._from_array(self._backend.argmax(self.data, axis=axis), self._backend)

    def softmax(self, axis: int = -1) -> Tensor:
        return SM.Softmax.apply(self, R.normalize_axis(axis, self.ndim, "softmax")[0])

    def log_softmax(self, axis: int = -1) -> Tensor:
        return SM.LogSoftmax.apply(self, R.normalize_axis(axis, self.ndim, "log_softmax")[0])

    # ---- shape ---------------------------------------------------------------
    def reshape(self, *shape) -> Tensor:
        shape = _shape_arg(shape)
        target = _infer_shape(shape, self.numel(), self.shape)
        return self if target == self.shape else S.Reshape.apply(self, target)

    view = reshape

    def flatten(self, start_dim: int = 0) -> Tensor:
        return self.reshape(*self.shape[:start_dim], -1)

    def permute(self, *axes) -> Tensor:
        axes, n = _shape_arg(axes), self.ndim
        if len(axes) != n or any(not -n <= a < n for a in axes) or len({a % n for a in axes}) != n:
            raise ValueError(f"permute: {axes} is not a permutation of the {n} axes of {self.shape}")
        return S.Permute.apply(self, tuple(a % n for a in axes))

    def transpose(self, dim0: int = -2, dim1: int = -1) -> Tensor:
        dim0, dim1 = (R.normalize_axis(d, self.ndim, "transpose")[0] for d in (dim0, dim1))
        axes = list(range(self.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return self.permute(*axes)

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.ndim)))

    def expand(self, *shape) -> Tensor:
        """Broadcast to `shape` (-1 keeps a dim) without copying."""
        shape = _shape_arg(shape)
        lead = len(shape) - self.ndim
        target = tuple(self.shape[i - lead] if n == -1 and i >= lead else n for i, n in enumerate(shape))
        try:
            np.broadcast_shapes(self.shape, target)  # raises for a -1 left in a new leading dim
            if lead < 0 or any(a not in (1, b) for a, b in zip(self.shape, target[lead:])):
                raise ValueError
        except ValueError:
            raise ValueError(f"expand: cannot broadcast shape {self.shape} to {shape}") from None
        return self if target == self.shape else S.Expand.apply(self, target)

    broadcast_to = expand

    def unsqueeze(self, dim: int) -> Tensor:
        dim = R.normalize_axis(dim, self.ndim + 1, "unsqueeze")[0]
        return self.reshape(*self.shape[:dim], 1, *self.shape[dim:])

    def squeeze(self, dim: int | None = None) -> Tensor:
        if dim is None:
            return self.reshape(*[n for n in self.shape if n != 1])
        dim = R.normalize_axis(dim, self.ndim, "squeeze")[0]
        if self.ndim == 0:
            return self
        return self if self.shape[dim] != 1 else self.reshape(*self.shape[:dim], *self.shape[dim + 1:])

    def __getitem__(self, index) -> Tensor:
        return S.GetItem.apply(self, _index_arg(index, self._backend))

    def pad(self, pad_width: Sequence[tuple[int, int]], value: float = 0.0) -> Tensor:
        """Constant padding; `pad_width` has one (before, after) pair per axis, as np.pad."""
        pad_width = tuple((int(b), int(a)) for b, a in pad_width)
        if len(pad_width) != self.ndim or any(b < 0 or a < 0 for b, a in pad_width):
            raise ValueError(f"pad: need {self.ndim} non-negative (before, after) pairs, got {pad_width}")
        return S.Pad.apply(self, pad_width, value)


# ---- helpers -----------------------------------------------------------------
def _count(shape: tuple, axes: tuple) -> int:
    n = 1
    for a in axes:
        n *= shape[a]
    return n


def _shape_arg(shape: tuple) -> tuple[int, ...]:
    """Accept f(2, 3) and f((2, 3)) alike."""
    if len(shape) == 1 and isinstance(shape[0], list | tuple):
        shape = shape[0]
    return tuple(int(n) for n in shape)


def _infer_shape(shape: tuple, size: int, old: tuple) -> tuple[int, ...]:
    if shape.count(-1) > 1 or any(n < -1 for n in shape):
        raise ValueError(f"reshape: invalid shape {shape}")
    known = _count(shape, tuple(i for i, n in enumerate(shape) if n != -1))
    if -1 in shape:
        if known == 0 or size % known:
            raise ValueError(f"reshape: cannot reshape {old} ({size} elements) to {shape}")
        shape = tuple(size // known if n == -1 else n for n in shape)
    if _count(shape, tuple(range(len(shape)))) != size:
        raise ValueError(f"reshape: cannot reshape {old} ({size} elements) to {shape}")
    return shape


def _index_arg(index: Any, backend: Backend) -> Any:
    """Tensors inside an index become backend arrays; lists become integer arrays."""
    items = index if isinstance(index, tuple) else (index,)
    out = []
    for item in items:
        if isinstance(item, Tensor):
            item = item.data
        elif isinstance(item, list):
            item = backend.asarray(item)
        out.append(item)
    return tuple(out)
