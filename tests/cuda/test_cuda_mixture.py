"""Mixtures of expert kernels (aggregate_kernels, mixture_conv2d_*): the CUDA backend's generic
forms (backend/base.py) against the CPU backend's kernels, and the dynamic conv op on either path."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_helpers import assert_matches

import minicoconv as mc
import minicoconv.ops.dynamic_conv as dynamic_conv_op

pytestmark = pytest.mark.cuda
rng = np.random.default_rng(11)
ARGS = ((1, 1), (1, 1), (1, 1))


def case(per_channel, dtype, batch=3, experts=2, cin=2, cout=3, size=(2, 3)):
    x = rng.standard_normal((batch, cin, *size)).astype(dtype)
    bank = rng.standard_normal((experts, cout, cin, 3, 3)).astype(dtype)
    coef = rng.uniform(0.1, 1.0, (batch, experts, cout) if per_channel else (batch, experts)).astype(dtype)
    return x, bank, coef


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-expert", "per-channel"])
def test_aggregate_kernels(be, cpu, per_channel, dtype):
    _, bank, coef = case(per_channel, dtype)
    dk = rng.standard_normal((coef.shape[0], *bank.shape[1:])).astype(dtype)
    assert_matches(be, be.aggregate_kernels(be.asarray(bank), be.asarray(coef)), cpu.aggregate_kernels(bank, coef))
    got = be.aggregate_kernels_backward(be.asarray(dk), be.asarray(bank), be.asarray(coef))
    for g, expected in zip(got, cpu.aggregate_kernels_backward(dk, bank, coef)):
        assert_matches(be, g, expected)


@pytest.mark.parametrize("spatial", [False, True], ids=["", "spatial"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-expert", "per-channel"])
def test_mixture_conv2d(be, cpu, per_channel, spatial):
    x, bank, coef = case(per_channel, np.float64)
    s = rng.uniform(0.5, 1.5, (x.shape[0], 9)) if spatial else None
    y, _ = cpu.mixture_conv2d_forward(x, bank, coef, s, *ARGS)
    dev = [be.asarray(a) for a in (x, bank, coef)] + [None if s is None else be.asarray(s)]
    assert_matches(be, be.mixture_conv2d_forward(*dev, *ARGS)[0], y)
    gy = rng.standard_normal(y.shape)
    grads = (True, True, True, spatial)
    got = be.mixture_conv2d_backward(be.asarray(gy), *dev, None, *ARGS, *grads)
    for g, expected in zip(got, cpu.mixture_conv2d_backward(gy, x, bank, coef, s, None, *ARGS, *grads)):
        assert (g is None) == (expected is None)
        if g is not None:
            assert_matches(be, g, expected)


@pytest.mark.parametrize("small_map", [True, False], ids=["small-map", "chunked"])
def test_dynamic_conv_op_on_each_path(be, small_map):
    x, bank, coef = case(True, np.float64)

    def run(device):
        tensors = [mc.Tensor(a, requires_grad=True, device=device) for a in (x, bank, coef)]
        y = dynamic_conv_op.DynamicConv2d.apply(*tensors, None, *ARGS, 1, small_map=small_map)
        y.backward(mc.Tensor(np.ones(y.shape), device=device))
        return [y.numpy()] + [t.grad.numpy() for t in tensors]

    for got, expected in zip(run("cuda"), run("cpu")):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
