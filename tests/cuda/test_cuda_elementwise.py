"""Elementwise ops, where, casts and fills: the CUDA backend against the CPU backend.

Operands cover NumPy broadcasting, Python scalars on either side (NumPy 2's weak
scalars: float32 stays float32), 0-d arrays and mixed dtypes.
"""

from __future__ import annotations

import numpy as np
import pytest
from cuda_helpers import assert_matches

pytestmark = pytest.mark.cuda

BINARY = ["add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "greater", "less", "equal"]
UNARY = ["negative", "exp", "log", "sqrt", "abs", "sign", "tanh", "sigmoid"]
rng = np.random.default_rng(0)


def values(shape, dtype=np.float32, positive=False):
    v = rng.uniform(0.5, 2.0, shape) if positive else rng.uniform(-2.0, 2.0, shape)
    return np.asarray(v).astype(dtype)


# (a, b) operand pairs; strings name Python scalars
PAIRS = {
    "same-shape": lambda dt: (values((2, 3), dt), values((2, 3), dt)),
    "row": lambda dt: (values((2, 3), dt), values((3,), dt)),
    "both-stretch": lambda dt: (values((2, 1, 3), dt), values((4, 1), dt)),
    "0-d": lambda dt: (values((), dt), values((2, 2), dt)),
    "array-scalar": lambda dt: (values((3, 2), dt), 1.5),
    "scalar-array": lambda dt: (2, values((5,), dt)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pair", list(PAIRS))
@pytest.mark.parametrize("name", BINARY)
def test_binary(be, cpu, name, pair, dtype):
    a, b = PAIRS[pair](dtype)
    if name == "power":  # keep the base positive (fractional powers of negatives are nan)
        a = np.abs(a) + 0.5 if isinstance(a, np.ndarray) else a
    dev = [x if np.isscalar(x) else be.asarray(x) for x in (a, b)]
    assert_matches(be, getattr(be, name)(*dev), getattr(cpu, name)(a, b))


@pytest.mark.parametrize("a, b", [
    (np.arange(1, 7).reshape(2, 3), 2.5),                        # int64 with a float scalar -> float64
    (np.arange(1, 7).reshape(2, 3), np.arange(1, 4, dtype=np.int32)),
    (np.array([True, False]), np.array([1.5, 2.5], dtype=np.float32)),
    (np.arange(1, 5, dtype=np.float32), np.arange(1, 5, dtype=np.float64)),
])
@pytest.mark.parametrize("name", ["add", "multiply", "divide", "maximum", "greater", "equal"])
def test_binary_dtype_promotion(be, cpu, name, a, b):
    assert_matches(be, getattr(be, name)(be.asarray(a), be.asarray(b)), getattr(cpu, name)(a, b))


def test_bool_operands(be, cpu):
    mask = np.array([True, False, True])
    assert_matches(be, be.equal(be.asarray(mask), False), cpu.equal(mask, False))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", UNARY)
def test_unary(be, cpu, name, dtype):
    x = values((3, 4), dtype, positive=name in ("log", "sqrt"))
    assert_matches(be, getattr(be, name)(be.asarray(x)), getattr(cpu, name)(x))


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sign", "abs", "sigmoid", "tanh"])
def test_unary_edge_values(be, cpu, name):
    """NumPy's answers at the domain edges: log(0) = -inf, sqrt(-1) = nan, exp(1000) = inf, nan stays nan."""
    x = np.array([0.0, -1.0, 1000.0, -1000.0, np.inf, -np.inf, np.nan])
    with np.errstate(all="ignore"):
        expected = getattr(cpu, name)(x)
    assert_matches(be, getattr(be, name)(be.asarray(x)), expected)


def test_unary_of_integers_gives_floats(be, cpu):
    x = np.arange(1, 5)
    assert_matches(be, be.exp(be.asarray(x)), cpu.exp(x))
    assert_matches(be, be.negative(be.asarray(x)), cpu.negative(x))


@pytest.mark.parametrize("case", ["arrays", "scalar-branch", "0-d-branch", "broadcast-cond", "scalar-cond"])
def test_where(be, cpu, case):
    cond = values((2, 3)) > 0
    a, b = values((2, 3)), values((3,))
    if case == "scalar-branch":
        b = 0.0
    elif case == "0-d-branch":
        a = np.zeros((), np.float32)
    elif case == "broadcast-cond":
        cond = values((3,)) > 0
    elif case == "scalar-cond":
        cond = True
    dev = [x if np.isscalar(x) else be.asarray(x) for x in (cond, a, b)]
    assert_matches(be, be.where(*dev), cpu.where(cond, a, b))


@pytest.mark.parametrize("src, dst", [(np.float32, np.float64), (np.float64, np.float32), (np.bool_, np.float32),
                                      (np.float32, np.int64), (np.int64, np.float32), (np.float32, np.bool_)])
def test_astype(be, cpu, src, dst):
    x = (values((2, 3)) * 3).astype(src)
    assert_matches(be, be.astype(be.asarray(x), dst), cpu.astype(x, dst))


def test_astype_same_dtype_is_no_copy(be):
    a = be.asarray(values((2,)))
    assert be.astype(a, np.float32) is a


def test_full_zeros_copy(be, cpu):
    assert_matches(be, be.full((2, 3), 1.5, dtype=np.float32), cpu.full((2, 3), 1.5, dtype=np.float32))
    assert_matches(be, be.full((), 7), cpu.full((), 7))
    assert_matches(be, be.zeros((), dtype=np.float64), cpu.zeros((), dtype=np.float64))
    assert_matches(be, be.zeros((0, 2)), cpu.zeros((0, 2)))
    a = be.asarray(values((3,)))
    b = be.copy(a)
    assert b is not a
    assert_matches(be, b, be.to_numpy(a))


def test_broadcast_error_is_numpys(be):
    with pytest.raises(ValueError):
        be.add(be.asarray(values((2, 3))), be.asarray(values((4,))))
