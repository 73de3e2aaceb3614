"""F.dynamic_conv2d with per-channel routing (N, n, C'), and the op's `small_map` given positionally.

Per-channel routing r (N, n, C') mixes a different expert combination into each output
channel: y_b[c] = conv(x_b, sum_i r_bic W_i[c]). The functional refused it although the op
(ops/dynamic_conv.py) computes it; passing the op's `small_map` positionally made backward
return one gradient too few. Both are checked here against float64 finite differences.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_dynamic_gradcheck import conv_reference

import minicoconv as mc
import minicoconv.ops.dynamic_conv as dynamic_conv_op
from minicoconv.nn import functional as F
from minicoconv.testing import gradcheck


def _tensors(batch, cin, cout, experts, size, per_channel, seed):
    rng = np.random.default_rng(seed)
    x = mc.Tensor(rng.normal(size=(batch, cin, *size)), requires_grad=True)
    bank = mc.Tensor(rng.normal(size=(experts, cout, cin, 3, 3)), requires_grad=True)
    shape = (batch, experts, cout) if per_channel else (batch, experts)
    routing = mc.Tensor(rng.uniform(0.1, 1.0, shape), requires_grad=True)
    return x, bank, routing


@settings(max_examples=12, deadline=None)
@given(batch=st.integers(1, 3), cin=st.integers(1, 3), cout=st.integers(1, 4), experts=st.integers(1, 3),
       size=st.tuples(st.integers(1, 6), st.integers(1, 6)), stride=st.integers(1, 2), seed=st.integers(0, 99))
def test_per_channel_routing_gradcheck(batch, cin, cout, experts, size, stride, seed):
    x, bank, routing = _tensors(batch, cin, cout, experts, size, True, seed)
    gradcheck(lambda a, w, r: F.dynamic_conv2d(a, w, r, stride, 1), x, bank, routing, name="dynamic_conv2d")


def test_per_channel_routing_is_the_literal_convolution():
    x, bank, routing = _tensors(3, 2, 4, 3, (5, 5), True, 0)
    y = F.dynamic_conv2d(x, bank, routing, 1, 1).numpy()
    kernels = np.einsum("bic,ic...->bc...", routing.numpy(), bank.numpy())
    expected = np.stack([conv_reference(x.numpy()[b], kernels[b], 1, 1, 1, 1) for b in range(3)])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-expert", "per-channel"])
@pytest.mark.parametrize("small_map", [True, False], ids=["small-map", "chunked"])
def test_small_map_given_positionally(small_map, per_channel):
    x, bank, routing = _tensors(2, 2, 3, 2, (3, 3), per_channel, 1)
    args = ((1, 1), (1, 1), (1, 1), 1)

    def positional(a, w, r):
        return dynamic_conv_op.DynamicConv2d.apply(a, w, r, None, *args, small_map)

    gradcheck(positional, x, bank, routing, name=f"DynamicConv2d.apply(..., {small_map})")


@pytest.mark.parametrize("shape", [(2, 3), (2, 2, 4), (2, 2, 3, 1), (3, 2)])
def test_bad_routing_shapes_are_refused(shape):
    x, bank, _ = _tensors(2, 2, 3, 2, (3, 3), False, 2)
    with pytest.raises(ValueError, match=r"routing must be \(N, n\) = \(2, 2\) or \(N, n, C'\) = \(2, 2, 3\)"):
        F.dynamic_conv2d(x, bank, mc.Tensor(np.ones(shape)), 1, 1)
