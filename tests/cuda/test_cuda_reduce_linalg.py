"""Reductions (sum, max, argmax), softmax and matmul: the CUDA backend against the CPU backend.

Rows shorter than a block use the thread-per-output kernel, longer ones the block
(shared-memory tree) kernel; the shapes below reach both.
"""

from __future__ import annotations

import numpy as np
import pytest
from cuda_helpers import assert_matches

pytestmark = pytest.mark.cuda
rng = np.random.default_rng(1)

AXES = [None, 0, 1, -1, (0, 2), (1, 2), (0, 1, 2), ()]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 4), (3, 1, 19)], ids=str)
def test_sum_and_max(be, cpu, shape, axis, keepdims):
    x = rng.standard_normal(shape).astype(np.float32)
    d = be.asarray(x)
    assert_matches(be, be.sum(d, axis=axis, keepdims=keepdims), cpu.sum(x, axis=axis, keepdims=keepdims))
    assert_matches(be, be.max(d, axis=axis, keepdims=keepdims), cpu.max(x, axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("axis", [None, 0, 1, 2])
def test_argmax_first_maximum_wins(be, cpu, axis):
    x = rng.integers(0, 3, (3, 4, 17)).astype(np.float64)  # many ties
    assert_matches(be, be.argmax(be.asarray(x), axis=axis), cpu.argmax(x, axis=axis))


@pytest.mark.parametrize("n", [5, 40])
def test_nan_is_the_maximum(be, cpu, n):
    x = rng.standard_normal((2, n))
    x[0, 3], x[1, n - 1], x[1, 2] = np.nan, np.nan, np.nan
    d = be.asarray(x)
    assert_matches(be, be.max(d, axis=1), cpu.max(x, axis=1))
    assert_matches(be, be.argmax(d, axis=1), cpu.argmax(x, axis=1))


def test_integer_and_bool_sums_are_int64(be, cpu):
    for x in (np.arange(12, dtype=np.int32).reshape(3, 4), rng.standard_normal((3, 20)) > 0):
        assert_matches(be, be.sum(be.asarray(x), axis=1), cpu.sum(x, axis=1))
        assert_matches(be, be.sum(be.asarray(x)), cpu.sum(x))


def test_empty_reductions(be, cpu):
    x = np.zeros((0, 3), np.float32)
    assert_matches(be, be.sum(be.asarray(x), axis=0), cpu.sum(x, axis=0))
    assert_matches(be, be.sum(be.asarray(x), axis=1), cpu.sum(x, axis=1))
    with pytest.raises(ValueError):
        be.max(be.asarray(x), axis=0)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax(be, cpu, fn, axis):
    x = (rng.standard_normal((2, 3, 4)) * 30).astype(np.float32)  # large logits: the max shift matters
    assert_matches(be, getattr(be, fn)(be.asarray(x), axis), getattr(cpu, fn)(x, axis), tol=1e-5)


@pytest.mark.parametrize("a_shape, b_shape", [
    ((3, 5), (5, 7)),             # several 4x4 tiles under the simulator, ragged edges
    ((1, 9), (9, 1)),
    ((2, 3, 5), (5, 2)),          # batch on one side
    ((2, 1, 3, 4), (3, 4, 2)),    # batch axes broadcast against each other
    ((4,), (4, 3)),               # 1-d operands, as np.matmul
    ((2, 4), (4,)),
    ((4,), (4,)),
    ((2, 0), (0, 3)),             # k = 0: zeros
], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul(be, cpu, a_shape, b_shape, dtype):
    a, b = rng.standard_normal(a_shape).astype(dtype), rng.standard_normal(b_shape).astype(dtype)
    assert_matches(be, be.matmul(be.asarray(a), be.asarray(b)), cpu.matmul(a, b))


def test_matmul_shape_error(be):
    with pytest.raises(ValueError, match="not aligned"):
        be.matmul(be.asarray(np.ones((2, 3))), be.asarray(np.ones((4, 2))))
