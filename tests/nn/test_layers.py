"""Every layer class against a NumPy reference (forward) and its documented contract.

Gradients are checked in test_functional_gradcheck.py and against PyTorch in
test_torch_parity.py; Module behaviour is in test_module.py, bad input in test_bad_input.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from nn_helpers import one_numba_thread, randn  # noqa: F401  (a fixture, requested by name)

import minicoconv as mc
from minicoconv import nn
from minicoconv.nn import functional as F
from minicoconv.nn.module import Parameter

pytestmark = pytest.mark.usefixtures("one_numba_thread")


def t64(a, requires_grad=False) -> mc.Tensor:
    return mc.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def as_pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


# ---- NumPy references -----------------------------------------------------------------
def np_conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """Cross-correlation as a sum over kernel taps of strided slices (no im2col)."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, _, h, wd = x.shape
    cout, cg, kh, kw = w.shape
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n, cout, oh, ow))
    og = cout // groups
    for g in range(groups):
        xs, ws = xp[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
                y[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def np_pool(x, k, s, p, reduce):
    """max (-inf padding) or mean (zero padding counted) over each window."""
    pad_value = -np.inf if reduce is np.max else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=pad_value)
    oh, ow = (x.shape[2] + 2 * p - k) // s + 1, (x.shape[3] + 2 * p - k) // s + 1
    return np.stack([np.stack([reduce(xp[:, :, i * s:i * s + k, j * s:j * s + k], axis=(2, 3))
                               for j in range(ow)], -1) for i in range(oh)], -2)


def np_adaptive_avg(x, oh, ow):
    h, w = x.shape[2:]
    y = np.empty(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            rows = slice(i * h // oh, -(-(i + 1) * h // oh))
            cols = slice(j * w // ow, -(-(j + 1) * w // ow))
            y[:, :, i, j] = x[:, :, rows, cols].mean(axis=(2, 3))
    return y


# =======================================================================================
# Layers
# =======================================================================================
@pytest.mark.parametrize("cin, cout, k, stride, padding, dilation, groups, bias", [
    (3, 4, 3, 1, 1, 1, 1, True),
    (4, 6, (3, 2), (2, 1), (1, 0), (1, 2), 2, False),
    (3, 6, 3, 2, 1, 1, 3, True),          # depthwise with channel multiplier 2
    (2, 5, 1, 1, 0, 1, 1, True),          # 1x1
])
def test_conv2d_layer(cin, cout, k, stride, padding, dilation, groups, bias):
    mc.manual_seed(0)
    layer = nn.Conv2d(cin, cout, k, stride, padding, dilation, groups=groups, bias=bias).double()
    kh, kw = (k, k) if isinstance(k, int) else k
    assert layer.weight.shape == (cout, cin // groups, kh, kw)
    assert (layer.bias is not None) == bias and [n for n, _ in layer.named_parameters()] == \
        ["weight", "bias"][:1 + bias]
    x = randn(2, cin, 5, 6)
    want = np_conv2d(x, layer.weight.numpy(), layer.bias.numpy() if bias else None, as_pair(stride),
                     as_pair(padding), as_pair(dilation), groups)
    np.testing.assert_allclose(layer(t64(x)).numpy(), want, rtol=1e-12, atol=1e-12)


def test_conv2d_and_linear_default_init_is_pytorchs():
    """kaiming_uniform(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the bias the same bound."""
    mc.manual_seed(0)
    conv, lin = nn.Conv2d(32, 64, 3), nn.Linear(300, 200)
    for weight, bias, fan_in in ((conv.weight, conv.bias, 32 * 9), (lin.weight, lin.bias, 300)):
        bound = 1 / math.sqrt(fan_in)
        for t in (weight, bias):
            values = t.numpy()
            assert t.dtype == mc.float32 and t.requires_grad and isinstance(t, Parameter)
            assert np.abs(values).max() <= bound * (1 + 1e-6)
        w = weight.numpy()
        assert np.abs(w).max() > 0.99 * bound
        assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.03


def test_linear_layer():
    mc.manual_seed(1)
    layer = nn.Linear(4, 3).double()
    x = randn(2, 5, 4)
    want = x @ layer.weight.numpy().T + layer.bias.numpy()
    np.testing.assert_allclose(layer(t64(x)).numpy(), want, rtol=1e-13)
    no_bias = nn.Linear(4, 3, bias=False)
    assert no_bias.bias is None and len(list(no_bias.parameters())) == 1
    assert repr(layer) == "Linear(in_features=4, out_features=3, bias=True)"


def test_batch_norm_layer_training_and_eval():
    bn = nn.BatchNorm2d(3, momentum=0.25).double()
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var"]
    x = randn(4, 3, 2, 3) * 3 + 1
    bn.weight.data[...] = [1.0, 2.0, -0.5]
    bn.bias.data[...] = [0.0, 1.0, 3.0]
    y = bn(t64(x)).numpy()

    # training: batch statistics (biased variance) over (N, H, W), per channel
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    shape = (1, 3, 1, 1)
    want = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + 1e-5) * bn.weight.numpy().reshape(shape) \
        + bn.bias.numpy().reshape(shape)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    # the running statistics moved by momentum, with the unbiased variance (M = 24 values per channel)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.25 * mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.75 + 0.25 * var * 24 / 23, rtol=1e-12)

    # eval: the running statistics, which stay put
    bn.eval()
    rm, rv = bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()
    want = (x - rm.reshape(shape)) / np.sqrt(rv.reshape(shape) + 1e-5) * bn.weight.numpy().reshape(shape) \
        + bn.bias.numpy().reshape(shape)
    np.testing.assert_allclose(bn(t64(x)).numpy(), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(bn.running_mean.numpy(), rm)
    np.testing.assert_array_equal(bn.running_var.numpy(), rv)


def test_batch_norm_without_affine_has_buffers_but_no_parameters():
    bn = nn.BatchNorm2d(2, affine=False)
    assert list(bn.parameters()) == [] and len(list(bn.buffers())) == 2
    y = bn(mc.tensor(randn(3, 2, 2, 2, dtype=np.float32))).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-6)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-4)
    assert "affine=False" in repr(bn)


def test_relu_sigmoid_identity_flatten():
    x = randn(2, 3, 2, 2)
    np.testing.assert_array_equal(nn.ReLU()(t64(x)).numpy(), np.maximum(x, 0))
    np.testing.assert_allclose(nn.Sigmoid()(t64(x)).numpy(), 1 / (1 + np.exp(-x)), rtol=1e-14)
    t = t64(x)
    assert nn.Identity()(t) is t
    assert nn.Flatten()(t).shape == (2, 12) and nn.Flatten(2)(t).shape == (2, 3, 4)
    np.testing.assert_array_equal(nn.Flatten()(t).numpy(), x.reshape(2, 12))


def test_dropout_train_eval_scaling_and_seed():
    x = mc.ones(200, 100, dtype=mc.float64)
    layer = nn.Dropout(0.3)
    assert layer.training and repr(layer) == "Dropout(p=0.3)"
    mc.manual_seed(7)
    y = layer(x).numpy()
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-15)   # inverted dropout: E[y] = x
    assert abs(1 - kept.mean() - 0.3) < 0.01                    # 20,000 draws: std of the rate ~0.003
    mc.manual_seed(7)
    np.testing.assert_array_equal(layer(x).numpy(), y)          # same seed, same mask
    assert not np.array_equal(layer(x).numpy(), y)              # the generator moved on

    layer.eval()
    assert layer(x) is x                                        # identity in eval mode
    assert nn.Dropout(0.0)(x) is x
    np.testing.assert_array_equal(nn.Dropout(1.0)(x).numpy(), 0)
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match="p must be in"):
            nn.Dropout(p)


def test_dropout_gradient_uses_the_forward_mask():
    x = mc.tensor(randn(50, 20), requires_grad=True)
    mc.manual_seed(3)
    y = F.dropout(x, 0.5)
    y.sum().backward()
    mask = y.numpy() / x.numpy()
    np.testing.assert_allclose(x.grad.numpy(), mask, rtol=1e-15)


@pytest.mark.parametrize("cls, reduce", [(nn.MaxPool2d, np.max), (nn.AvgPool2d, np.mean)])
@pytest.mark.parametrize("k, s, p", [(2, None, 0), (3, 2, 1), (3, 1, 1), (1, 2, 0)])
def test_pooling_layers(cls, reduce, k, s, p):
    x = randn(2, 3, 6, 5)
    layer = cls(k, s, p)
    np.testing.assert_allclose(layer(t64(x)).numpy(), np_pool(x, k, s or k, p, reduce), rtol=1e-13)
    assert repr(layer) == f"{cls.__name__}(kernel_size={k}, stride={s or k}, padding={p})"


@pytest.mark.parametrize("hw, out", [((6, 6), 1), ((5, 7), (3, 2)), ((2, 2), 3), ((3, 1), (5, 4))])
def test_adaptive_avg_pool_layer(hw, out):
    x = randn(2, 2, *hw)
    oh, ow = (out, out) if isinstance(out, int) else out
    np.testing.assert_allclose(nn.AdaptiveAvgPool2d(out)(t64(x)).numpy(), np_adaptive_avg(x, oh, ow), rtol=1e-13)


def test_sequential():
    mc.manual_seed(0)
    a, b, c = nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3 and seq[0] is a and seq[-1] is c and list(seq) == [a, b, c]
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    x = mc.tensor(randn(5, 3, dtype=np.float32))
    np.testing.assert_array_equal(seq(x).numpy(), c(b(a(x))).numpy())
    assert nn.Sequential()(x) is x


def test_module_list():
    layers = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 3)])
    extra = nn.Linear(3, 1)
    assert layers.append(extra) is layers
    assert len(layers) == 3 and layers[2] is extra and list(layers)[0] is layers[0]
    assert [n for n, _ in layers.named_parameters()][-2:] == ["2.weight", "2.bias"]
    with pytest.raises(NotImplementedError, match="ModuleList does not define forward"):
        layers(mc.ones(1, 2))
