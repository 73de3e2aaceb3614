"""`minicoconv.testing.gradcheck_module`: a layer's input and parameter gradients.

It must pass on correct layers (hypothesis over shapes, in float64), and it
must fail, naming the culprit, on a layer whose backward is wrong, on a
parameter that backward never reaches, and on a float32 layer. It must leave
the module exactly as it found it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minicoconv as mc
from minicoconv import nn
from minicoconv.autograd import Function
from minicoconv.testing import GradcheckError, gradcheck_module


class _WrongScale(Function):
    """y = w * x with a backward for w that is off by a factor of 2 (deliberately wrong)."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved
        return g * w, 2.0 * (g * x).sum(axis=0)


class _Scale(nn.Module):
    def __init__(self, n: int, wrong: bool = False, spare: bool = False):
        super().__init__()
        self.weight = nn.Parameter(np.linspace(0.5, 1.5, n))
        if spare:
            self.unused = nn.Parameter(np.ones(n))
        self.wrong = wrong

    def forward(self, x):
        return _WrongScale.apply(x, self.weight) if self.wrong else x * self.weight


def _x(*shape, seed=0):
    return mc.Tensor(np.random.default_rng(seed).standard_normal(shape), dtype=mc.float64, requires_grad=True)


@settings(max_examples=8, deadline=None)
@given(n=st.integers(1, 4), fin=st.integers(1, 4), fout=st.integers(1, 4), seed=st.integers(0, 100))
def test_linear_input_and_parameters(n, fin, fout, seed):
    mc.manual_seed(seed)
    layer = nn.Linear(fin, fout).double()
    assert gradcheck_module(layer, _x(n, fin, seed=seed))


@settings(max_examples=4, deadline=None)
@given(cin=st.integers(1, 3), cout=st.integers(1, 3), stride=st.integers(1, 2), seed=st.integers(0, 100))
def test_conv_and_batchnorm_in_train_mode(cin, cout, stride, seed):
    mc.manual_seed(seed)
    layer = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout)).double().train()
    assert gradcheck_module(layer, _x(2, cin, 5, 5, seed=seed))


def test_dynamic_layer_every_parameter():
    mc.manual_seed(0)
    layer = nn.CoConv2d(2, 2, 3, 1, 1, experts=2).double().eval()
    assert gradcheck_module(layer, _x(2, 2, 5, 5))


def test_parameters_only_when_input_is_constant():
    layer = _Scale(3).double()
    x = mc.Tensor(np.ones((2, 3)), dtype=mc.float64)  # requires_grad=False: only the weight is checked
    assert gradcheck_module(layer, x)


def test_wrong_parameter_gradient_is_caught_and_named():
    layer = _Scale(3, wrong=True)
    with pytest.raises(GradcheckError, match=r"input 1 .*weight|weight.*input 1"):
        gradcheck_module(layer, _x(2, 3))


def test_unused_parameter_is_an_error_unless_allowed():
    layer = _Scale(3, spare=True)
    with pytest.raises(GradcheckError, match=r"never reached parameters \[.unused.\]"):
        gradcheck_module(layer, _x(2, 3))
    assert gradcheck_module(layer, _x(2, 3), allow_unused=True)


def test_float32_module_is_refused():
    mc.manual_seed(0)
    layer = nn.Linear(3, 2)
    with pytest.raises(TypeError, match="double"):
        gradcheck_module(layer, _x(2, 3))


def test_module_is_left_unchanged():
    mc.manual_seed(0)
    layer = nn.Linear(3, 2).double()
    before = {name: (p, p.numpy().copy()) for name, p in layer.named_parameters()}
    gradcheck_module(layer, _x(4, 3))
    for name, p in layer.named_parameters():
        same, values = before[name]
        assert p is same and getattr(layer, name) is same, name
        np.testing.assert_array_equal(p.numpy(), values)
        assert p.grad is None, f"{name}: the check must not leave gradients on the module's own parameters"


def test_optim_is_reachable_from_the_package():
    assert mc.optim.SGD is not None and hasattr(mc.optim, "lr_scheduler")
