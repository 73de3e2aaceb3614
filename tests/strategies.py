"""Hypothesis strategies and small helpers shared by the test modules.

Strategies return NumPy arrays or shapes, never tensors, so a test decides the dtype,
layout and ``requires_grad`` of what it builds. Import them with
``from strategies import arrays`` (``tests/`` is on ``sys.path`` once pytest has loaded
``tests/conftest.py``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minicoconv as mc


# ---- shapes --------------------------------------------------------------------------
def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4) -> st.SearchStrategy:
    """Array shapes, e.g. (), (3,), (2, 1, 4). Small by default: gradcheck costs 2 forwards per element."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcast_pairs(min_dims: int = 0, max_dims: int = 3, max_side: int = 4) -> st.SearchStrategy:
    """Pairs of shapes that broadcast together, e.g. ((3, 1), (1, 4)) or ((2, 3), ())."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=2, min_dims=min_dims, max_dims=max_dims, max_side=max_side
    ).map(lambda b: b.input_shapes)


def matmul_shapes(max_dims: int = 2, max_side: int = 3) -> st.SearchStrategy:
    """Operand shapes np.matmul accepts: 1-d operands and broadcast batch dims included."""
    return hnp.mutually_broadcastable_shapes(
        signature=np.matmul.signature, max_dims=max_dims, max_side=max_side
    ).map(lambda b: b.input_shapes)


@st.composite
def expand_targets(draw, shape: tuple) -> tuple:
    """A shape `shape` can be broadcast to: size-1 dims stretched, leading dims added."""
    lead = draw(st.lists(st.integers(1, 3), max_size=2))
    body = [draw(st.integers(1, 3)) if n == 1 else n for n in shape]
    return (*lead, *body)


def axes(ndim: int) -> st.SearchStrategy:
    """An `axis` argument for a tensor with `ndim` dims: None, an int, or a tuple (negatives included)."""
    single = st.integers(-ndim, ndim - 1) if ndim else st.nothing()
    return st.none() | single | hnp.valid_tuple_axes(ndim)


# ---- values --------------------------------------------------------------------------
def floats(lo: float = -2.0, hi: float = 2.0, min_abs: float = 0.0) -> st.SearchStrategy:
    """Finite floats in [lo, hi] with |x| >= min_abs (keeps away from kinks such as |x| at 0)."""
    if min_abs <= 0:
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    parts = []
    if hi >= min_abs:
        parts.append(st.floats(max(lo, min_abs), hi, allow_subnormal=False))
    if lo <= -min_abs:
        parts.append(st.floats(lo, min(hi, -min_abs), allow_subnormal=False))
    return st.one_of(*parts)


def arrays(shape, lo: float = -2.0, hi: float = 2.0, min_abs: float = 0.0, dtype=np.float64) -> st.SearchStrategy:
    """Arrays of `shape` (a tuple or a strategy of tuples) with bounded finite values."""
    return hnp.arrays(dtype, shape, elements=floats(lo, hi, min_abs).map(float))


@st.composite
def distinct_arrays(draw, shape: tuple, gap: float = 0.1) -> np.ndarray:
    """float64 arrays whose values all differ by at least `gap` (no ties for max/min).

    The gap must exceed gradcheck's step (1e-6) so a finite difference never swaps the order.
    """
    n = int(np.prod(shape, dtype=np.int64))
    order = draw(st.permutations(range(n)))
    offset = draw(st.floats(-1.0, 1.0))
    return (np.array(order, dtype=np.float64).reshape(shape) - n / 2) * gap * draw(st.sampled_from([1, 3])) + offset


def scalars(lo: float = -3.0, hi: float = 3.0, min_abs: float = 0.0) -> st.SearchStrategy:
    """Python floats and ints, as a user would write them in `x * 2` or `0.5 + x`."""
    ints = st.integers(int(np.ceil(lo)), int(np.floor(hi))).filter(lambda v: abs(v) >= min_abs)
    return floats(lo, hi, min_abs) | ints


# ---- layouts -------------------------------------------------------------------------
#: the memory layouts a test input may have: contiguous, Fortran order, a strided view
LAYOUTS = ("C", "F", "strided")
layouts = st.sampled_from(LAYOUTS)


def with_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """The same values as `array`, in memory laid out as `layout` (see LAYOUTS)."""
    if layout in ("C", "F"):  # (np.ascontiguousarray would turn a 0-d array into a 1-d one)
        return np.array(array, order=layout)
    if layout == "strided" and array.ndim == 0:
        return array.copy()  # a 0-d array has no strides to play with
    if layout == "strided":  # every other element of an array twice as long in each dim
        big = np.zeros(tuple(2 * n for n in array.shape), dtype=array.dtype)
        view = big[tuple(slice(None, None, 2) for _ in array.shape)]
        view[...] = array
        return view
    raise ValueError(f"unknown layout {layout!r}")


def leaf(array: np.ndarray, layout: str = "C", requires_grad: bool = True, dtype=None) -> mc.Tensor:
    """A leaf tensor over `array` in the given layout (the Tensor keeps the view; no copy)."""
    array = np.asarray(array, dtype=dtype)
    return mc.Tensor(with_layout(array, layout), dtype=array.dtype, requires_grad=requires_grad)


# ---- fixtures ------------------------------------------------------------------------
