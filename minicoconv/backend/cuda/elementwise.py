"""Elementwise kernels: unary math, broadcasting binary ops, where, casts and fills.

One thread per output element (grid-stride). Output element i, in C order of the
broadcast shape, reads operand k at

    strided_offset(i, shape, strides_k)        (strides_k = 0 along broadcast axes)

after `layout.coalesce` has merged the axes that all operands walk contiguously (two
same-shape arrays collapse to one axis: one division per element). An operand may
instead be a Python scalar, passed to the kernel by value (`value`, `is_array=False`),
so `x * 2` costs no host-to-device copy.

Dtypes follow NumPy 2 exactly: the result dtype is what the NumPy ufunc gives for
the same operand dtypes (Python scalars are "weak": float32 * 2.0 stays float32).
Array operands of another dtype are first cast to the *compute* dtype (one cast kernel;
only mixed-dtype calls pay it, and the ops never make them), scalars are converted on
the host, and each scalar function is compiled per compute dtype with its constants of
that dtype, so float32 math stays float32 on the GPU.

log, sqrt and exp handle their domain edges explicitly (log(0) = -inf, sqrt(-1) = nan,
exp(1000) = inf) so that the simulator, which runs the same code as Python's `math`
(which raises there), gives NumPy's answers too.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from numba import cuda

from . import device as dev
from .indexing import strided_offset
from .layout import broadcast_strides, coalesce

_offset = strided_offset.device
_EXP_MAX = 709.0  # exp(x) overflows float64 above ~709.78


# ---- scalar functions, made per compute type t (constants are of type t) ---------------
def _negative(t): return lambda x: -x
def _abs(t): return lambda x: abs(x)
def _tanh(t): return lambda x: math.tanh(x)
def _identity(t): return lambda x: x


def _exp(t):
    inf = t(np.inf)

    def f(x):
        return inf if x > _EXP_MAX else math.exp(x)
    return f


def _log(t):
    nan, inf = t(np.nan), t(np.inf)

    def f(x):
        if x > 0 or x != x:
            return math.log(x)
        return -inf if x == 0 else nan
    return f


def _sqrt(t):
    nan = t(np.nan)

    def f(x):
        return math.sqrt(x) if x >= 0 else nan
    return f


def _sign(t):
    zero, one = t(0), t(1)

    def f(x):
        if x > 0:
            return one
        if x < 0:
            return -one
        return zero if x == 0 else x  # NaN stays NaN
    return f


def _sigmoid(t):
    half, one = t(0.5), t(1)

    def f(x):  # 1/(1+exp(-x)) overflows for large -x; the tanh form does not
        return half * (math.tanh(half * x) + one)
    return f


def _add(t): return lambda x, y: x + y
def _subtract(t): return lambda x, y: x - y
def _multiply(t): return lambda x, y: x * y
def _divide(t): return lambda x, y: x / y
def _power(t): return lambda x, y: x ** y
def _greater(t): return lambda x, y: x > y
def _less(t): return lambda x, y: x < y
def _equal(t): return lambda x, y: x == y


def _maximum(t):
    def f(x, y):  # NaN propagates, as np.maximum
        if x != x or y != y:
            return x if x != x else y
        return x if x >= y else y
    return f


def _minimum(t):
    def f(x, y):
        if x != x or y != y:
            return x if x != x else y
        return x if x <= y else y
    return f


def _select(t): return lambda c, x, y: x if c else y


#: name -> (NumPy function giving the result dtype, scalar function factory)
UNARY = {"negative": (np.negative, _negative), "exp": (np.exp, _exp), "log": (np.log, _log),
         "sqrt": (np.sqrt, _sqrt), "abs": (np.abs, _abs), "sign": (np.sign, _sign),
         "tanh": (np.tanh, _tanh), "sigmoid": (np.tanh, _sigmoid)}
BINARY = {"add": (np.add, _add), "subtract": (np.subtract, _subtract), "multiply": (np.multiply, _multiply),
          "divide": (np.divide, _divide), "power": (np.power, _power), "maximum": (np.maximum, _maximum),
          "minimum": (np.minimum, _minimum), "greater": (np.greater, _greater), "less": (np.less, _less),
          "equal": (np.equal, _equal)}
COMPARISONS = ("greater", "less", "equal")


# ---- kernels ------------------------------------------------------------------------------
@cache
def _unary_kernel(name: str, dtype: np.dtype):
    op = cuda.jit(device=True)(UNARY[name][1](dtype.type) if name in UNARY else _identity(dtype.type))

    @cuda.jit
    def kernel(a, out):
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            out[i] = op(a[i])
    return kernel


@cache
def _binary_kernel(name: str, dtype: np.dtype):
    op = cuda.jit(device=True)(BINARY[name][1](dtype.type))

    @cuda.jit
    def kernel(out, shape, a, a_strides, a_value, a_is_array, b, b_strides, b_value, b_is_array):
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            x = a[_offset(i, shape, a_strides)] if a_is_array else a_value
            y = b[_offset(i, shape, b_strides)] if b_is_array else b_value
            out[i] = op(x, y)
    return kernel


@cache
def _where_kernel(dtype: np.dtype):
    op = cuda.jit(device=True)(_select(dtype.type))

    @cuda.jit
    def kernel(out, shape, c, c_strides, c_value, c_is_array, a, a_strides, a_value, a_is_array,
               b, b_strides, b_value, b_is_array):
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            cond = c[_offset(i, shape, c_strides)] if c_is_array else c_value
            x = a[_offset(i, shape, a_strides)] if a_is_array else a_value
            y = b[_offset(i, shape, b_strides)] if b_is_array else b_value
            out[i] = op(cond, x, y)
    return kernel


@cuda.jit
def _fill_kernel(out, value):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = value


# ---- host side ----------------------------------------------------------------------------
def _is_scalar(x) -> bool:
    return isinstance(x, int | float | bool | np.generic)


def _dtype_probe(x):
    """What NumPy's dtype rules see: Python scalars stay weak, everything else is its dtype."""
    return x if isinstance(x, int | float | bool) else np.empty(0, dtype=x.dtype)


def result_dtype(fn, *operands) -> np.dtype:
    """The dtype NumPy's `fn(*operands)` would have (raises NumPy's errors for bad dtypes)."""
    return np.dtype(fn(*[_dtype_probe(x) for x in operands]).dtype)


def _as_array(x, dtype):
    """A device array of `dtype` holding x (host arrays are copied to the device)."""
    if not dev.is_device_array(x):
        x = dev.to_device(np.asarray(x))
    return x if x.dtype == dtype else astype(x, dtype)


def _prepare(operands, dtypes):
    """Broadcast shape and, per operand, the kernel arguments (array, strides, value, is_array).

    Returns (out_shape, coalesced shape, flat argument list); operand k is converted to dtypes[k].
    """
    shapes = [tuple(x.shape) for x in operands if not _is_scalar(x)]
    out_shape = tuple(np.broadcast_shapes(*shapes)) if shapes else ()
    arrays = [None if _is_scalar(x) else _as_array(x, dtype) for x, dtype in zip(operands, dtypes)]
    strides = [(0,) * len(out_shape) if a is None else broadcast_strides(tuple(a.shape), out_shape) for a in arrays]
    shape, strides = coalesce(out_shape, *strides)
    args = []
    for x, a, s, dtype in zip(operands, arrays, strides, dtypes):
        if a is None:
            args += [dev.placeholder(dtype), s, dtype.type(x), False]
        else:
            args += [dev.flat(a), s, dtype.type(0), True]
    return out_shape, shape, args


def unary(name: str, a):
    dtype = result_dtype(UNARY[name][0], a)
    a = _as_array(a, dtype)
    out = dev.empty(a.shape, dtype)
    dev.launch(_unary_kernel(name, dtype), a.size, dev.flat(a), dev.flat(out))
    return out


def binary(name: str, a, b):
    out_dtype = result_dtype(BINARY[name][0], a, b)
    dtype = np.result_type(_dtype_probe(a), _dtype_probe(b)) if name in COMPARISONS else out_dtype
    out_shape, shape, args = _prepare((a, b), (dtype, dtype))
    out = dev.empty(out_shape, out_dtype)
    dev.launch(_binary_kernel(name, dtype), out.size, dev.flat(out), shape, *args)
    return out


def where(cond, a, b):
    """np.where(cond, a, b) with broadcasting; cond is read as bool."""
    dtype = result_dtype(np.where, np.empty(0, bool), a, b)
    out_shape, shape, args = _prepare((cond, a, b), (np.dtype(bool), dtype, dtype))
    out = dev.empty(out_shape, dtype)
    dev.launch(_where_kernel(dtype), out.size, dev.flat(out), shape, *args)
    return out


def astype(a, dtype):
    """a converted to `dtype` (a itself when it already has it, as NumPy's copy=False)."""
    dtype = np.dtype(dtype)
    if a.dtype == dtype:
        return a
    out = dev.empty(a.shape, dtype)
    dev.launch(_unary_kernel("cast", a.dtype), a.size, dev.flat(a), dev.flat(out))
    return out


def fill(out, value):
    """Set every element of `out` to `value` (converted to out's dtype); returns out."""
    dev.launch(_fill_kernel, out.size, dev.flat(out), out.dtype.type(value))
    return out
