"""Every public layer against generated input (issue 15): dtypes, ndims, zero sizes, raw arrays and
non-contiguous views. A layer either computes (the same values for every memory layout) or raises
a ValueError/TypeError that names it; never an IndexError, a NumPy internal error or a crash."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nn_helpers import one_numba_thread  # noqa: F401  (a fixture, requested by name)
from strategies import LAYOUTS, with_layout

import minicoconv as mc
from minicoconv import nn

pytestmark = pytest.mark.usefixtures("one_numba_thread")

#: every public layer, built small; the name is what its errors must start with
LAYERS = {
    "Conv2d": lambda: nn.Conv2d(3, 4, 3, padding=1),
    "BatchNorm2d": lambda: nn.BatchNorm2d(3),
    "MaxPool2d": lambda: nn.MaxPool2d(2),
    "AvgPool2d": lambda: nn.AvgPool2d(2),
    "AdaptiveAvgPool2d": lambda: nn.AdaptiveAvgPool2d(2),
    "Linear": lambda: nn.Linear(3, 4),
    "ReLU": nn.ReLU,
    "Sigmoid": nn.Sigmoid,
    "Flatten": nn.Flatten,
    "Dropout": lambda: nn.Dropout(0.5),
    "Identity": nn.Identity,
    "CondConv2d": lambda: nn.CondConv2d(3, 4, 3, padding=1, experts=2),
    "DyConv2d": lambda: nn.DyConv2d(3, 4, 3, padding=1, experts=2),
    "CoConv2d": lambda: nn.CoConv2d(3, 4, 3, padding=1, experts=2),
    "ODConv2d": lambda: nn.ODConv2d(3, 4, 3, padding=1, experts=2),
    "DGConv2d": lambda: nn.DGConv2d(3, 3, 3, padding=1, heads=3),
}
DTYPES = ("float32", "float64", "int64", "float16", "bool")


@st.composite
def inputs(draw):
    """(array, as_tensor): any ndim 0..5 with sides 0..4, any dtype and memory layout.

    Half the shapes are the layers' own (N, 3, H, W) or (N, 3), with zero sizes among them.
    """
    side = st.integers(0, 5)
    near = st.one_of(st.tuples(st.integers(0, 3), st.just(3), side, side), st.tuples(st.integers(0, 3), st.just(3)))
    shape = tuple(draw(st.one_of(near, st.lists(st.integers(0, 4), min_size=0, max_size=5))))
    dtype = draw(st.sampled_from(DTYPES[:1] * 4 + DTYPES))  # mostly the layers' own float32
    values = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(shape)
    as_tensor = draw(st.sampled_from((True, True, True, False)))
    return with_layout(values.astype(dtype), draw(st.sampled_from(LAYOUTS))), as_tensor


def _call(layer, array: np.ndarray, as_tensor: bool):
    if as_tensor:
        try:
            x = mc.tensor(array)
        except (TypeError, ValueError):  # a dtype minicoconv lacks is refused at the Tensor already
            return None
        return layer(x)
    return layer(array)


@pytest.mark.parametrize("name", list(LAYERS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=inputs(), training=st.booleans())
def test_layer_computes_or_names_itself(name, case, training):
    array, as_tensor = case
    mc.manual_seed(0)
    layer = LAYERS[name]().train(training)
    try:
        out = _call(layer, array, as_tensor)
    except (ValueError, TypeError) as e:
        message = str(e)
        assert message and len(message) < 600, message
        if not as_tensor:  # one rule for every layer: inputs are Tensors
            assert isinstance(e, TypeError) and message.startswith(f"{name}: expected a minicoconv Tensor")
        return
    assert as_tensor, f"{name} accepted a raw NumPy array"
    if out is None:
        return
    outs = out if isinstance(out, tuple) else (out,)
    assert all(isinstance(o, mc.Tensor) for o in outs)
    # the same input in C order gives the same values (non-contiguous views are read correctly)
    mc.manual_seed(0)
    again = LAYERS[name]().train(training)(mc.tensor(np.array(array, order="C")))  # (0-d stays 0-d)
    for got, expected in zip(outs, again if isinstance(again, tuple) else (again,)):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())


@pytest.mark.parametrize("name", ["CondConv2d", "DyConv2d", "CoConv2d", "ODConv2d", "DGConv2d"])
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 4)], ids=["empty-batch", "empty-map"])
def test_dynamic_convs_refuse_empty_input_by_name(name, shape):
    with pytest.raises(ValueError, match=rf"^{name}: expected a non-empty input \(N, H, W >= 1\), got shape"):
        LAYERS[name]()(mc.zeros(*shape))


@pytest.mark.parametrize("make", [lambda: nn.Conv2d(3, 4, 3, stride=1.5), lambda: nn.MaxPool2d(2, stride=1.5),
                                  lambda: nn.CondConv2d(3, 4, 3, stride=1.5)],
                         ids=["Conv2d", "MaxPool2d", "CondConv2d"])
def test_a_float_stride_is_a_clear_error(make):
    with pytest.raises(ValueError, match=r"expected stride as an int or an \(h, w\) pair of ints, got 1\.5"):
        make()


def test_module_to_a_dtype_converts_like_pytorch():
    layer = nn.Conv2d(3, 4, 3).to(mc.float64)
    assert layer.weight.dtype == mc.float64 and layer.weight.device == "cpu"
    assert nn.Linear(3, 4).to("cpu", mc.float64).bias.dtype == mc.float64
