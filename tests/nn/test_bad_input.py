"""Bad input: a clear ValueError/TypeError raised before any Numba kernel runs (every kernel
is replaced by a tripwire), and non-contiguous inputs computed correctly."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from nn_helpers import one_numba_thread, randn  # noqa: F401  (a fixture, requested by name)
from strategies import LAYOUTS, with_layout

import minicoconv as mc
from minicoconv import nn
from minicoconv.backend.cpu import adaptive_pool_kernels, conv_kernels, norm_kernels, pool_kernels
from minicoconv.nn import functional as F

pytestmark = pytest.mark.usefixtures("one_numba_thread")


# =======================================================================================
# Bad input: clear errors before any Numba kernel runs
# =======================================================================================
def install_tripwire(monkeypatch) -> list[str]:
    """Replace every Numba kernel the conv/pool/norm drivers call with a function that fails the test.

    Returns the list the tripwires append their kernel's name to.
    """
    tripped = []
    for module in (conv_kernels, pool_kernels, adaptive_pool_kernels, norm_kernels):
        for name, obj in list(vars(module).items()):
            if isinstance(obj, numba.core.registry.CPUDispatcher):
                def trip(*args, _name=f"{module.__name__}.{name}", **kwargs):
                    tripped.append(_name)
                    raise AssertionError(f"the Numba kernel {_name} ran")
                monkeypatch.setattr(module, name, trip)
    return tripped


@pytest.fixture
def tripwire(monkeypatch):
    return install_tripwire(monkeypatch)


def x64(*shape):
    return mc.zeros(*shape, dtype=mc.float64)


BAD_INPUT = {
    # convolution
    "conv_input_3d": (lambda: F.conv2d(x64(3, 4, 4), x64(2, 3, 3, 3)), ValueError, "must be 4-d"),
    "conv_input_int": (lambda: F.conv2d(mc.zeros(1, 3, 4, 4, dtype=mc.int64), x64(2, 3, 3, 3)), TypeError,
                       "float32 or float64"),
    "conv_weight_3d": (lambda: F.conv2d(x64(1, 3, 4, 4), x64(3, 3, 3)), ValueError, "w of shape"),
    "conv_cin_not_divisible": (lambda: F.conv2d(x64(1, 3, 4, 4), x64(2, 1, 3, 3), groups=2), ValueError,
                               "Cin divisible by groups"),
    "conv_cout_not_divisible": (lambda: F.conv2d(x64(1, 4, 4, 4), x64(3, 2, 3, 3), groups=2), ValueError,
                                "Cout divisible by groups"),
    "conv_weight_channels": (lambda: F.conv2d(x64(1, 4, 4, 4), x64(2, 3, 3, 3)), ValueError,
                             r"w.shape\[1\] \* groups == Cin"),
    "conv_kernel_too_big": (lambda: F.conv2d(x64(1, 1, 3, 3), x64(1, 1, 3, 3), padding=0, dilation=2), ValueError,
                            "dilated kernel height \\(5\\) to fit the padded input height"),
    "conv_kernel_wider_than_padded": (lambda: F.conv2d(x64(1, 1, 5, 2), x64(1, 1, 1, 5), padding=(0, 1)),
                                      ValueError, "width"),
    "conv_stride_0": (lambda: F.conv2d(x64(1, 1, 3, 3), x64(1, 1, 1, 1), stride=0), ValueError, "expected stride >= 1"),
    "conv_padding_negative": (lambda: F.conv2d(x64(1, 1, 3, 3), x64(1, 1, 1, 1), padding=-1), ValueError,
                              "expected padding >= 0"),
    "conv_groups_0": (lambda: F.conv2d(x64(1, 1, 3, 3), x64(1, 1, 1, 1), groups=0), ValueError, "groups"),
    "conv_float_mixing": (lambda: F.conv2d(mc.zeros(1, 1, 3, 3), x64(1, 1, 1, 1)), TypeError, "dtype mismatch"),
    "conv_bias_float_mixing": (lambda: F.conv2d(x64(1, 1, 3, 3), x64(2, 1, 1, 1), mc.zeros(2)), TypeError,
                               "dtype mismatch"),
    "conv_bias_shape": (lambda: F.conv2d(x64(1, 1, 3, 3), x64(2, 1, 1, 1), x64(3)), ValueError, "bias of shape"),
    "conv_layer_groups": (lambda: nn.Conv2d(4, 6, 3, groups=4), ValueError, "divisible by groups"),
    "conv_layer_float64_input": (lambda: nn.Conv2d(1, 1, 1)(x64(1, 1, 2, 2)), TypeError, "dtype mismatch"),
    "conv_layer_wrong_channels": (lambda: nn.Conv2d(3, 2, 1)(mc.zeros(1, 2, 2, 2)), ValueError, "Cin"),
    # pooling
    "max_pool_3d": (lambda: F.max_pool2d(x64(2, 4, 4), 2), ValueError, "must be 4-d"),
    "max_pool_int": (lambda: F.max_pool2d(mc.zeros(1, 1, 4, 4, dtype=mc.int32), 2), TypeError, "float32 or float64"),
    "max_pool_kernel_too_big": (lambda: F.max_pool2d(x64(1, 1, 3, 3), 4, padding=0), ValueError,
                                "window no larger than the padded input"),
    "max_pool_padding_over_half": (lambda: F.max_pool2d(x64(1, 1, 5, 5), 2, padding=2), ValueError,
                                   "padding <= kernel / 2"),
    "max_pool_stride_0": (lambda: F.max_pool2d(x64(1, 1, 4, 4), 2, stride=0), ValueError, "expected stride >= 1"),
    "avg_pool_kernel_too_big": (lambda: nn.AvgPool2d(3)(x64(1, 1, 2, 5)), ValueError, "window no larger"),
    "avg_pool_5d": (lambda: F.avg_pool2d(x64(1, 1, 1, 4, 4), 2), ValueError, "must be 4-d"),
    "adaptive_output_0": (lambda: F.adaptive_avg_pool2d(x64(1, 1, 4, 4), (0, 2)), ValueError,
                          "expected output_size >= 1"),
    "adaptive_2d_input": (lambda: nn.AdaptiveAvgPool2d(1)(x64(4, 4)), ValueError, "must be 4-d"),
    # batch norm
    "bn_input_2d": (lambda: nn.BatchNorm2d(3)(mc.zeros(4, 3)), ValueError, "must be 4-d"),
    "bn_wrong_channels": (lambda: nn.BatchNorm2d(3)(mc.zeros(2, 4, 2, 2)), ValueError,
                          r"running_mean must have shape \(4,\)"),
    "bn_float64_input_float32_module": (lambda: nn.BatchNorm2d(2)(x64(2, 2, 2, 2)), TypeError,
                                        "running_mean is float32 but the input is float64"),
    "bn_float_mixing_without_affine": (lambda: nn.BatchNorm2d(2, affine=False)(x64(2, 2, 2, 2)), TypeError,
                                       "running_mean is float32 but the input is float64"),
    "bn_weight_float_mixing": (lambda: F.batch_norm(x64(2, 2, 2, 2), None, None, mc.ones(2), None, training=True),
                               TypeError, "dtype mismatch"),
    "bn_eval_without_running_stats": (lambda: F.batch_norm(x64(2, 2, 2, 2), None, None), ValueError,
                                      "eval mode needs running_mean"),
    "bn_one_value_per_channel": (lambda: nn.BatchNorm2d(2)(mc.zeros(1, 2, 1, 1)), ValueError,
                                 "more than one value per channel"),
    "bn_no_features": (lambda: nn.BatchNorm2d(0), ValueError, "num_features must be >= 1"),
    "bn_running_var_missing": (lambda: F.batch_norm(x64(2, 2, 2, 2), x64(2), None, training=True), ValueError,
                               "both running_mean and running_var, or neither"),
    "bn_momentum_above_1": (lambda: nn.BatchNorm2d(2, momentum=1.5)(mc.zeros(2, 2, 2, 2)), ValueError,
                            r"momentum must be a number in \[0, 1\], got 1.5"),
    "bn_momentum_none": (lambda: nn.BatchNorm2d(2, momentum=None)(mc.zeros(2, 2, 2, 2)), ValueError,
                         "momentum must be a number"),
    # linear, dropout
    "linear_features": (lambda: nn.Linear(3, 2)(mc.zeros(4, 5)), ValueError, "do not match weight"),
    "linear_float_mixing": (lambda: nn.Linear(3, 2)(x64(4, 3)), TypeError, "dtype mismatch"),
    "linear_no_features": (lambda: nn.Linear(0, 2), ValueError, "feature counts must be >= 1"),
    "dropout_p": (lambda: F.dropout(x64(3), 1.5), ValueError, "p must be in"),
    "dropout_int": (lambda: F.dropout(mc.tensor([1, 2, 3]), 0.5), TypeError, "float32 or float64"),
    # containers: a non-Module would be kept as a plain attribute and silently skipped
    "sequential_of_a_function": (lambda: nn.Sequential(nn.ReLU(), lambda x: x * 2), TypeError,
                                 "Sequential: entry 1 must be a Module, got function"),
    "module_list_of_none": (lambda: nn.ModuleList([nn.ReLU(), None]), TypeError,
                            "ModuleList: entry 1 must be a Module, got NoneType"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_refused_before_any_kernel_runs(case, tripwire):
    call, error, message = BAD_INPUT[case]
    with pytest.raises(error, match=message):
        call()
    assert tripwire == []


VALID_CALLS = {
    "conv2d": lambda: F.conv2d(x64(1, 2, 3, 3), x64(2, 2, 2, 2)),
    "conv2d_depthwise": lambda: F.conv2d(x64(1, 2, 3, 3), x64(2, 1, 2, 2), groups=2),
    "max_pool2d": lambda: F.max_pool2d(x64(1, 1, 2, 2), 2),
    "avg_pool2d": lambda: F.avg_pool2d(x64(1, 1, 2, 2), 2),
    "adaptive_avg_pool2d": lambda: F.adaptive_avg_pool2d(x64(1, 1, 2, 2), 1),
    "batch_norm_train": lambda: nn.BatchNorm2d(1).double()(x64(2, 1, 1, 1)),
    "batch_norm_eval": lambda: nn.BatchNorm2d(1).double().eval()(x64(2, 1, 1, 1)),
}


@pytest.mark.parametrize("case", VALID_CALLS)
def test_the_tripwire_catches_kernels(case, tripwire):
    """The fixture really intercepts the kernels (else the test above would prove nothing)."""
    with pytest.raises(AssertionError, match="the Numba kernel"):
        VALID_CALLS[case]()
    assert len(tripwire) == 1


# ---- non-contiguous inputs ----------------------------------------------------------------
NON_CONTIGUOUS_OPS = {
    "conv2d": lambda x, w: F.conv2d(x, w, None, 1, 1),
    "conv2d_depthwise": lambda x, w: F.conv2d(x, w[:, :1], None, (2, 1), 1, 1, groups=3),
    "max_pool2d": lambda x, w: F.max_pool2d(x, 2, 1),
    "avg_pool2d": lambda x, w: F.avg_pool2d(x, 3, 2, 1),
    "adaptive_avg_pool2d": lambda x, w: F.adaptive_avg_pool2d(x, (2, 5)),
    "batch_norm": lambda x, w: F.batch_norm(x, None, None, w[:, 0, 0, 0], w[:, 0, 1, 1], training=True),
    "linear": lambda x, w: F.linear(x, w.reshape(3, -1)[:, :5]),
}


@pytest.mark.parametrize("layout", [lay for lay in LAYOUTS if lay != "C"] + ["transposed"])
@pytest.mark.parametrize("op", NON_CONTIGUOUS_OPS)
def test_non_contiguous_inputs(op, layout):
    """Same values and gradients from Fortran-ordered, strided and transposed views as from C order."""
    fn = NON_CONTIGUOUS_OPS[op]
    xv, wv = randn(2, 3, 4, 5, seed=1), randn(3, 3, 3, 3, seed=2)
    if layout == "transposed":    # an (N, C, W, H) array seen through a transpose
        x_arr, w_arr = np.ascontiguousarray(xv.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2), wv
    else:
        x_arr, w_arr = with_layout(xv, layout), with_layout(wv, layout)
    assert not x_arr.flags.c_contiguous
    results = []
    for xa, wa in ((xv, wv), (x_arr, w_arr)):
        x, w = mc.Tensor(xa, requires_grad=True), mc.Tensor(wa, requires_grad=True)
        y = fn(x, w)
        cot = np.random.default_rng(3).standard_normal(y.shape)
        y.backward(mc.tensor(cot))
        results.append((y.numpy(), x.grad.numpy(), None if w.grad is None else w.grad.numpy()))
    for want, got in zip(results[0], results[1]):
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
