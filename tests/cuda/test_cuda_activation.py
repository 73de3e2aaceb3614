"""The fused ReLU kernels and the gradient ownership test of the CUDA backend, against the CPU backend."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_helpers import assert_matches

from minicoconv.backend.cuda import device as dev

pytestmark = pytest.mark.cuda


def _values(dtype):
    v = np.array([[-2.0, -0.0, 0.0, 1e-30, 3.5], [np.nan, -np.inf, np.inf, -1e-30, 0.25]])
    return v.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_forward_matches_cpu(be, cpu, dtype):
    a = _values(dtype)
    assert_matches(be, be.relu_forward(be.asarray(a)), cpu.relu_forward(a))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_matches_cpu(be, cpu, dtype):
    y = cpu.relu_forward(_values(dtype))
    g = np.array([[1.0, 2.0, np.nan, 4.0, 5.0], [6.0, 7.0, np.nan, 9.0, -1.0]], dtype)
    got = be.relu_backward(be.asarray(g), be.asarray(y))
    assert_matches(be, got, cpu.relu_backward(g, y))
    assert not np.isnan(be.to_numpy(got)[0, 2]), "a NaN gradient where y == 0 must give 0, as PyTorch"


def test_relu_integer_and_mismatched_inputs_take_the_generic_form(be):
    a = np.array([-3, 0, 4], np.int64)
    assert_matches(be, be.relu_forward(be.asarray(a)), np.maximum(a, 0))
    g, y = np.ones((2, 3), np.float32), np.array([1.0, 0.0, 2.0], np.float32)  # y broadcasts
    assert_matches(be, be.relu_backward(be.asarray(g), be.asarray(y)), np.where(y > 0, g, 0).astype(np.float32))


def test_relu_rejects_host_arrays(be):
    with pytest.raises(ValueError, match="CUDA device array"):
        be.relu_forward(np.ones(3, np.float32))


def test_own_keeps_a_fresh_array_and_copies_a_shared_one(be):
    g = be.copy(be.asarray(np.arange(6, dtype=np.float32).reshape(2, 3)))  # made by the backend, as gradients are
    assert be.own(g) is g
    view = be.reshape(g, (6,))  # a reshape shares g's memory: g must not be kept as a .grad
    kept = be.own(g)
    assert kept is not g and dev.owns_memory(kept)
    assert_matches(be, kept, np.arange(6, dtype=np.float32).reshape(2, 3))
    del view
    part = be.getitem(g, (slice(0, 1),))  # a contiguous slice is a view: neither side owns the memory
    assert not dev.owns_memory(part) and not dev.owns_memory(g)
    assert be.own(part) is not part
