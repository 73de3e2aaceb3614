"""reshape, transpose, broadcast_to, getitem, scatter_add, concatenate, pad: CUDA against CPU."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_helpers import assert_matches

pytestmark = pytest.mark.cuda
rng = np.random.default_rng(2)
X = rng.standard_normal((3, 4, 5)).astype(np.float32)


def test_reshape_is_a_view(be, cpu):
    d = be.asarray(X)
    r = be.reshape(d, (4, -1))
    assert_matches(be, r, cpu.reshape(X, (4, -1)))
    with pytest.raises(ValueError):
        be.reshape(d, (7, -1))


@pytest.mark.parametrize("axes", [(1, 0, 2), (2, 1, 0), (0, 2, 1), None, (0, 1, 2)], ids=str)
def test_transpose(be, cpu, axes):
    assert_matches(be, be.transpose(be.asarray(X), axes), cpu.transpose(X, axes))


def test_transpose_moving_size_one_axes_is_a_view(be, cpu):
    x = X.reshape(3, 1, 20)
    assert_matches(be, be.transpose(be.asarray(x), (1, 0, 2)), cpu.transpose(x, (1, 0, 2)))


@pytest.mark.parametrize("src, dst", [((4, 1), (2, 4, 3)), ((), (2, 2)), ((3,), (3,)), ((1, 5), (4, 5))], ids=str)
def test_broadcast_to(be, cpu, src, dst):
    x = rng.standard_normal(src)
    assert_matches(be, be.broadcast_to(be.asarray(x), dst), cpu.broadcast_to(x, dst))


def _index(kind, be):
    """An index in NumPy form, and the same with its arrays on the device (as Tensor indexing passes them)."""
    ints = np.array([2, 0, 2, -1])
    mask = X[:, :, 0] > 0
    return {
        "int": (1,),
        "slice": (slice(None), slice(1, 3)),
        "step": (slice(None, None, -1), slice(0, 4, 2), slice(None, None, 3)),
        "mixed": (-1, slice(None), 2),
        "newaxis-ellipsis": (None, Ellipsis, 1),
        "leading-slice": (slice(1, 3),),                  # contiguous: a view
        "empty": (slice(2, 2),),
        "int-array": (ints,),
        "device-int-array": (be.asarray(ints),),
        "two-arrays": (np.array([0, 2]), slice(None), np.array([1, 4])),  # separated: axes go first
        "bool-mask": (mask,),
        "device-bool-mask": (be.asarray(mask),),
        "list": ([0, 0, 1],),
    }[kind]


KINDS = ["int", "slice", "step", "mixed", "newaxis-ellipsis", "leading-slice", "empty", "int-array",
         "device-int-array", "two-arrays", "bool-mask", "device-bool-mask", "list"]


def _host(index, be):
    return tuple(be.to_numpy(i) if hasattr(i, "copy_to_host") else i for i in index)


@pytest.mark.parametrize("kind", KINDS)
def test_getitem(be, cpu, kind):
    index = _index(kind, be)
    assert_matches(be, be.getitem(be.asarray(X), index), cpu.getitem(X, _host(index, be)))


@pytest.mark.parametrize("kind", KINDS)
def test_scatter_add(be, cpu, kind):
    index = _index(kind, be)
    values = cpu.getitem(X, _host(index, be)) + 1
    assert_matches(be, be.scatter_add(X.shape, index, be.asarray(values)),
                   cpu.scatter_add(X.shape, _host(index, be), values))


def test_scatter_add_accumulates_repeats_and_broadcasts(be, cpu):
    rows, cols = np.array([0, 1, 1, 0]), np.array([2, 0, 0, 2])
    for values in (np.arange(4, dtype=np.float64), np.float64(1.0) + np.zeros(())):
        got = be.scatter_add((2, 3), (be.asarray(rows), be.asarray(cols)), be.asarray(values))
        assert_matches(be, got, cpu.scatter_add((2, 3), (rows, cols), values))


def test_getitem_errors_are_numpys(be):
    d = be.asarray(X)
    with pytest.raises(IndexError):
        be.getitem(d, (3,))
    with pytest.raises(IndexError):
        be.getitem(d, (0, 0, 0, 0))
    with pytest.raises(IndexError):
        be.getitem(d, (np.array([5]),))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate(be, cpu, axis):
    parts = [X, X * 2]
    if axis == 1:
        parts.append(X[:, :2])
    assert_matches(be, be.concatenate([be.asarray(p) for p in parts], axis=axis), cpu.concatenate(parts, axis=axis))


def test_concatenate_promotes_dtypes(be, cpu):
    a, b = np.ones((2, 2), np.float32), np.zeros((1, 2), np.float64)
    assert_matches(be, be.concatenate([be.asarray(a), be.asarray(b)]), cpu.concatenate([a, b]))


@pytest.mark.parametrize("pad_width, value", [(((0, 0), (1, 2), (0, 1)), 0.0), (((1, 1), (0, 0), (2, 2)), -1.5)])
def test_pad(be, cpu, pad_width, value):
    assert_matches(be, be.pad(be.asarray(X), pad_width, value), cpu.pad(X, pad_width, value))
