"""Expert mixing (F.expert_weighted_sum, F.expert_scale): the CUDA backend against the CPU backend."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_helpers import assert_matches

import minicoconv as mc
from minicoconv.backend import Backend
from minicoconv.nn import functional as F
from minicoconv.testing import gradcheck

pytestmark = pytest.mark.cuda
rng = np.random.default_rng(7)

# (N, G, n, D, H, W): H*W below and above the simulator's 8 threads (per-thread and per-block dot products)
SHAPES = {"short-rows": (2, 2, 3, 2, 1, 3), "long-rows": (2, 1, 2, 3, 3, 4), "depthwise": (1, 3, 2, 1, 2, 5)}


def case(name, dtype):
    n_batch, n_groups, n_exp, depth, height, width = SHAPES[name]
    stacked = rng.standard_normal((n_batch, n_groups * n_exp * depth, height, width)).astype(dtype)
    plain = rng.standard_normal((n_batch, n_groups * depth, height, width)).astype(dtype)
    r = rng.uniform(0.0, 1.0, (n_batch, n_groups, n_exp, depth)).astype(dtype)
    return stacked, plain, r


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(SHAPES))
def test_expert_weighted_sum(be, cpu, name, dtype):
    z, gy, r = case(name, dtype)
    assert_matches(be, be.expert_weighted_sum_forward(be.asarray(z), be.asarray(r)),
                   cpu.expert_weighted_sum_forward(z, r))
    got = be.expert_weighted_sum_backward(be.asarray(gy), be.asarray(z), be.asarray(r))
    for g, expected in zip(got, cpu.expert_weighted_sum_backward(gy, z, r)):
        assert_matches(be, g, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(SHAPES))
def test_expert_scale(be, cpu, name, dtype):
    gxs, x, r = case(name, dtype)
    assert_matches(be, be.expert_scale_forward(be.asarray(x), be.asarray(r)), cpu.expert_scale_forward(x, r))
    got = be.expert_scale_backward(be.asarray(gxs), be.asarray(x), be.asarray(r))
    for g, expected in zip(got, cpu.expert_scale_backward(gxs, x, r)):
        assert_matches(be, g, expected)


@pytest.mark.parametrize("need", [(True, False), (False, True)], ids=["first", "dr"])
def test_backward_only_what_is_needed(be, cpu, need):
    stacked, plain, r = case("short-rows", np.float64)
    args = [be.asarray(a) for a in (plain, stacked, r)]
    for got, expected, wanted in zip(be.expert_weighted_sum_backward(*args, *need),
                                     cpu.expert_weighted_sum_backward(plain, stacked, r, *need), need):
        assert (got is None) == (not wanted)
        if wanted:
            assert_matches(be, got, expected)


def test_generic_forms_on_the_device(be, cpu):
    """`Backend`'s generic forms (broadcasting array ops) also run on the CUDA backend's arrays."""
    stacked, plain, r = case("long-rows", np.float64)
    for name, args in [("expert_weighted_sum_forward", (stacked, r)), ("expert_scale_backward", (stacked, plain, r))]:
        got = getattr(Backend, name)(be, *(be.asarray(a) for a in args))
        expected = getattr(cpu, name)(*args)
        if not isinstance(got, tuple):  # forwards give one array, backwards a pair
            got, expected = (got,), (expected,)
        for g, e in zip(got, expected):
            assert_matches(be, g, e)


def test_gradcheck_on_the_device():
    z, x, r = case("long-rows", np.float64)
    r4 = mc.tensor(r, requires_grad=True, device="cuda")
    gradcheck(F.expert_weighted_sum, mc.tensor(z, requires_grad=True, device="cuda"), r4,
              name="expert_weighted_sum on cuda")
    gradcheck(F.expert_scale, mc.tensor(x, requires_grad=True, device="cuda"), r4, name="expert_scale on cuda")


def test_bad_shapes_are_a_value_error(be):
    z, x, r = case("short-rows", np.float64)
    with pytest.raises(ValueError, match="expected z of shape"):
        be.expert_weighted_sum_forward(be.asarray(z[:, :-1]), be.asarray(r))
    with pytest.raises(ValueError, match="expected x of dtype float64"):
        be.expert_scale_forward(be.asarray(x.astype(np.float32)), be.asarray(r))
    with pytest.raises(ValueError, match="CUDA device array"):
        be.expert_scale_forward(x, be.asarray(r))
