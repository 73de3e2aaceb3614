"""Layers, `Module` behaviour, `nn.init`, and refusing bad input.

- every layer class against a NumPy reference (forward) and its documented contract;
- Module: parameter/child order (PyTorch's), train()/eval() recursion, state_dict with
  buffers as NumPy copies, load_state_dict errors naming every bad key, to()/double()/
  float() for parameters and buffers, repr, forward hooks, apply;
- nn.init: the distributions' spread and bounds, measured on large tensors;
- bad input: a clear ValueError/TypeError raised before any Numba kernel runs (every
  kernel is replaced by a tripwire), and non-contiguous inputs computed correctly.

Gradients are checked in test_functional_gradcheck.py and against PyTorch in
test_torch_parity.py.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from strategies import LAYOUTS, with_layout

import minicoconv as mc
from minicoconv import nn
from minicoconv.backend.cpu import adaptive_pool_kernels, conv_kernels, norm_kernels, pool_kernels
from minicoconv.nn import functional as F
from minicoconv.nn import init
from minicoconv.nn.module import Parameter


@pytest.fixture(autouse=True, scope="module")
def one_numba_thread():
    """Tiny arrays: waking Numba's thread pool costs more than the work."""
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(previous)


def randn(*shape, seed=0, dtype=np.float64) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


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


# =======================================================================================
# Module behaviour
# =======================================================================================
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.scale = Parameter(mc.ones(1))
        self.register_buffer("steps", mc.zeros(1, dtype=mc.int64))

    def forward(self, x):
        return self.bn(self.conv(x)).relu() * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(Block(), nn.MaxPool2d(2), nn.Dropout(0.5))
        self.flatten = nn.Flatten()
        self.heads = nn.ModuleList([nn.Linear(12, 4), nn.Linear(4, 2)])

    def forward(self, x):
        x = self.flatten(self.features(x))
        for head in self.heads:
            x = head(x)
        return x


NET_PARAMETERS = ["features.0.scale", "features.0.conv.weight", "features.0.bn.weight", "features.0.bn.bias",
                  "heads.0.weight", "heads.0.bias", "heads.1.weight", "heads.1.bias"]
NET_BUFFERS = ["features.0.steps", "features.0.bn.running_mean", "features.0.bn.running_var"]


def make_net(seed=0) -> Net:
    mc.manual_seed(seed)
    return Net()


def test_parameter_order_is_pytorchs():
    """A module's own parameters first, then each child's, depth first, in assignment order."""
    net = make_net()
    assert [n for n, _ in net.named_parameters()] == NET_PARAMETERS
    assert [n for n, _ in net.named_buffers()] == NET_BUFFERS
    assert [id(p) for p in net.parameters()] == [id(p) for _, p in net.named_parameters()]
    assert all(isinstance(p, Parameter) and p.requires_grad for p in net.parameters())


def test_children_and_modules():
    net = make_net()
    assert [n for n, _ in net.named_children()] == ["features", "flatten", "heads"]
    assert list(net.children()) == [net.features, net.flatten, net.heads]
    names = [n for n, _ in net.named_modules()]
    assert names == ["", "features", "features.0", "features.0.conv", "features.0.bn", "features.1", "features.2",
                     "flatten", "heads", "heads.0", "heads.1"]
    assert list(net.modules())[0] is net and len(list(net.modules())) == len(names)


def test_shared_modules_and_parameters_are_listed_once():
    shared = nn.Linear(2, 2)
    seq = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(seq.modules())) == 3 and len(list(seq.parameters())) == 2
    tied = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    tied[1].weight = tied[0].weight
    assert [n for n, _ in tied.named_parameters()] == ["0.weight", "0.bias", "1.bias"]


def test_attribute_registration():
    m = nn.Module()
    m.w = Parameter(mc.zeros(2))
    m.child = nn.ReLU()
    m.register_buffer("stat", mc.zeros(2))
    assert list(m._parameters) == ["w"] and list(m._modules) == ["child"] and list(m._buffers) == ["stat"]
    m.w = None                                   # reassigning to a non-parameter unregisters it
    del m.child
    assert list(m.parameters()) == [] and list(m.children()) == []
    m.stat = mc.ones(2)                          # a buffer stays a buffer when reassigned
    assert m.stat.numpy().tolist() == [1.0, 1.0] and list(m.buffers())[0] is m.stat
    with pytest.raises(TypeError, match="buffer 'stat' must be a Tensor"):
        m.stat = np.zeros(2)

    class Forgetful(nn.Module):
        def __init__(self):
            self.w = Parameter(mc.zeros(1))

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Forgetful()
    with pytest.raises(NotImplementedError, match="Module does not define forward"):
        nn.Module()(1)


def test_train_and_eval_recurse():
    net = make_net()
    assert net.training and all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    assert net.train() is net and all(m.training for m in net.modules())
    net.heads.train(False)
    assert net.training and not net.heads[0].training and net.features[0].bn.training


def test_apply_visits_children_before_parents_in_pytorchs_order():
    inner = nn.Sequential(nn.ReLU(), nn.Sigmoid())
    outer = nn.Sequential(inner, nn.Identity(), inner)
    order = []
    assert outer.apply(lambda m: order.append(m)) is outer
    assert order == [inner[0], inner[1], inner, outer[1], outer]


def test_zero_grad():
    net = make_net()
    net(mc.ones(2, 2, 4, 4)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_holds_parameters_and_buffers_as_numpy_copies():
    net = make_net()
    state = net.state_dict()
    assert set(state) == set(NET_PARAMETERS + NET_BUFFERS)
    for name, t in list(net.named_parameters()) + list(net.named_buffers()):
        assert isinstance(state[name], np.ndarray) and state[name].dtype == t.dtype
        np.testing.assert_array_equal(state[name], t.numpy())
        assert not np.shares_memory(state[name], t.data)
    state["heads.0.bias"][:] = 123.0                          # changing the copy leaves the model alone
    assert not np.any(net.heads[0].bias.numpy() == 123.0)
    net(mc.ones(2, 2, 4, 4))                                  # a training step moves the BN buffers...
    assert not np.array_equal(state["features.0.bn.running_mean"], net.features[0].bn.running_mean.numpy())


def test_load_state_dict_round_trip():
    a, b = make_net(0), make_net(1)
    a(mc.tensor(randn(2, 2, 4, 4, dtype=np.float32)))         # non-trivial running statistics
    x = mc.tensor(randn(3, 2, 4, 4, seed=5, dtype=np.float32))
    assert b.load_state_dict(a.state_dict()) == ([], [])
    a.eval(), b.eval()
    np.testing.assert_array_equal(b(x).numpy(), a(x).numpy())
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(q, p, err_msg=name)


def test_load_state_dict_copies_and_keeps_dtypes():
    """The module never shares memory with the dict it loaded (it updates its arrays in place)."""
    net = make_net()
    state = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in make_net(1).state_dict().items()}
    net.load_state_dict(state)
    for name, t in list(net.named_parameters()) + list(net.named_buffers()):
        assert t.dtype == (mc.int64 if name.endswith("steps") else mc.float32)
        assert t.data.flags.c_contiguous
    state32 = make_net(2).state_dict()
    net.load_state_dict(state32)
    before = {k: v.copy() for k, v in state32.items()}
    for t in list(net.parameters()) + list(net.buffers()):
        assert not any(np.shares_memory(t.data, v) for v in state32.values())
    net(mc.ones(2, 2, 4, 4))                                  # BN updates its buffers in place
    for k in state32:
        np.testing.assert_array_equal(state32[k], before[k], err_msg=k)
    loaded = nn.Linear(2, 2)
    loaded.load_state_dict({"weight": mc.ones(2, 2), "bias": mc.zeros(2)})   # tensors are accepted too
    np.testing.assert_array_equal(loaded.weight.numpy(), 1)


def test_load_state_dict_strict_errors_name_every_bad_key():
    net = make_net()
    state = net.state_dict()
    del state["heads.1.bias"], state["features.0.bn.running_var"]
    state["heads.2.weight"] = np.zeros(3)
    state["extra"] = np.zeros(1)
    state["heads.0.weight"] = np.zeros((4, 11))
    state["features.0.scale"] = np.zeros((1, 1))
    with pytest.raises(KeyError) as info:
        net.load_state_dict(state)
    message = str(info.value)
    for key in ("heads.1.bias", "features.0.bn.running_var", "heads.2.weight", "extra",
                "heads.0.weight: expected (4, 12), got (4, 11)", "features.0.scale: expected (1,), got (1, 1)"):
        assert key in message, key
    assert "missing" in message and "unexpected" in message and "shape mismatch" in message


def test_load_state_dict_non_strict():
    net, source = make_net(0), make_net(1)
    state = source.state_dict()
    del state["heads.1.bias"]
    state["extra"] = np.zeros(1)
    before = net.heads[1].bias.numpy().copy()
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert missing == ["heads.1.bias"] and unexpected == ["extra"]
    np.testing.assert_array_equal(net.heads[0].weight.numpy(), source.heads[0].weight.numpy())
    np.testing.assert_array_equal(net.heads[1].bias.numpy(), before)
    state["heads.0.weight"] = np.zeros((2, 2))
    with pytest.raises(KeyError, match="heads.0.weight: expected"):   # a wrong shape is never loaded
        net.load_state_dict(state, strict=False)


@pytest.mark.parametrize("convert, dtype", [(lambda m: m.double(), mc.float64),
                                            (lambda m: m.to(dtype=mc.float64), mc.float64),
                                            (lambda m: m.to(dtype="float64").float(), mc.float32)])
def test_to_converts_parameters_and_buffers(convert, dtype):
    net = make_net()
    values = {k: v.copy() for k, v in net.state_dict().items()}
    net(mc.ones(2, 2, 4, 4)).sum().backward()
    assert convert(net) is net
    for name, t in list(net.named_parameters()) + list(net.named_buffers()):
        if name.endswith("steps"):
            assert t.dtype == mc.int64                              # only floating tensors change
        else:
            assert t.dtype == dtype and t.data.dtype == dtype, name
        if name in NET_PARAMETERS:
            assert isinstance(t, Parameter) and t.requires_grad
    assert all(p.grad is None for p in net.parameters())             # stale float32 gradients are dropped
    x = mc.ones(2, 2, 4, 4, dtype=dtype)
    assert net(x).dtype == dtype
    np.testing.assert_allclose(net.state_dict()["heads.0.weight"], values["heads.0.weight"], rtol=1e-7)


def test_to_refuses_a_non_floating_dtype():
    net = make_net()
    with pytest.raises(TypeError, match="float32 or float64"):
        net.to(dtype=mc.int64)
    assert all(p.dtype == mc.float32 for p in net.parameters())


def test_repr():
    net = make_net()
    assert repr(net) == """Net(
  (features): Sequential(
    (0): Block(
      (conv): Conv2d(2, 3, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
      (bn): BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True)
    )
    (1): MaxPool2d(kernel_size=2, stride=2, padding=0)
    (2): Dropout(p=0.5)
  )
  (flatten): Flatten()
  (heads): ModuleList(
    (0): Linear(in_features=12, out_features=4, bias=True)
    (1): Linear(in_features=4, out_features=2, bias=True)
  )
)"""
    assert repr(nn.Conv2d(4, 4, 3, dilation=2, groups=2)) == \
        "Conv2d(4, 4, kernel_size=(3, 3), stride=(1, 1), dilation=(2, 2), groups=2)"
    assert repr(nn.AdaptiveAvgPool2d((3, 2))) == "AdaptiveAvgPool2d(output_size=(3, 2))"
    assert repr(Parameter(mc.zeros(2))).startswith("Parameter containing:\ntensor(")


def test_forward_hooks():
    net = make_net().eval()
    calls = []
    first = net.features[0].bn.register_forward_hook(lambda m, inputs, out: calls.append(("bn", m, inputs, out)))
    net.heads[1].register_forward_hook(lambda m, inputs, out: calls.append(("head", m, inputs, out)))
    net.heads[1].register_forward_hook(lambda m, inputs, out: calls.append(("head2", m, inputs, out)))
    out = net(mc.ones(1, 2, 4, 4))
    assert [c[0] for c in calls] == ["bn", "head", "head2"]
    _, module, inputs, bn_out = calls[0]
    assert module is net.features[0].bn and isinstance(inputs, tuple) and len(inputs) == 1
    assert inputs[0].shape == (1, 3, 4, 4) and bn_out.shape == (1, 3, 4, 4)
    assert calls[1][3] is out and calls[2][3] is out
    first()                                                    # the returned function removes the hook
    calls.clear()
    net(mc.ones(1, 2, 4, 4))
    assert [c[0] for c in calls] == ["head", "head2"]


# =======================================================================================
# nn.init
# =======================================================================================
BIG = (128, 64, 5, 5)           # fan_in = 64 * 25 = 1600, fan_out = 128 * 25 = 3200; 204,800 values
FAN = {"fan_in": 1600, "fan_out": 3200}


def assert_spread(values: np.ndarray, std: float, rel: float = 0.02) -> None:
    """Mean 0 (within 5 standard errors) and standard deviation within `rel` of `std`."""
    assert abs(values.mean()) < 5 * std / math.sqrt(values.size)
    assert abs(values.std() / std - 1) < rel, (values.std(), std)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("nonlinearity, a, gain", [("relu", 0, math.sqrt(2)), ("leaky_relu", 0.2, math.sqrt(2 / 1.04)),
                                                   ("leaky_relu", math.sqrt(5), math.sqrt(1 / 3)), ("linear", 0, 1.0)])
def test_kaiming_normal_and_uniform(mode, nonlinearity, a, gain):
    mc.manual_seed(0)
    t = mc.zeros(*BIG)
    assert init.kaiming_normal_(t, a=a, mode=mode, nonlinearity=nonlinearity) is t
    assert t.dtype == mc.float32 and t.shape == BIG
    std = gain / math.sqrt(FAN[mode])
    assert_spread(t.numpy().astype(np.float64), std)

    init.kaiming_uniform_(t, a=a, mode=mode, nonlinearity=nonlinearity)
    bound = gain * math.sqrt(3 / FAN[mode])
    values = t.numpy().astype(np.float64)
    assert np.abs(values).max() <= bound * (1 + 1e-6) and np.abs(values).max() > 0.999 * bound
    assert_spread(values, bound / math.sqrt(3))


def test_normal_uniform_constant():
    mc.manual_seed(0)
    t = mc.zeros(500, 400, dtype=mc.float64)
    init.normal_(t, mean=0.5, std=2.0)
    assert abs(t.numpy().mean() - 0.5) < 5 * 2 / math.sqrt(t.numel())
    assert abs(t.numpy().std() / 2.0 - 1) < 0.01
    init.uniform_(t, -3.0, 1.0)
    assert t.numpy().min() >= -3.0 and t.numpy().max() < 1.0 and abs(t.numpy().mean() + 1) < 0.01
    assert init.constant_(t, 0.25) is t and t.dtype == mc.float64
    np.testing.assert_array_equal(t.numpy(), 0.25)
    init.zeros_(t), np.testing.assert_array_equal(t.numpy(), 0)
    init.ones_(t), np.testing.assert_array_equal(t.numpy(), 1)
    mc.manual_seed(4)
    a = init.normal_(mc.zeros(3, 3)).numpy().copy()
    mc.manual_seed(4)
    np.testing.assert_array_equal(init.normal_(mc.zeros(3, 3)).numpy(), a)   # reproducible with the seed


def test_fans_gains_and_bad_arguments():
    assert init.calculate_fans(mc.zeros(*BIG)) == (1600, 3200)
    assert init.calculate_fans(mc.zeros(7, 3)) == (3, 7)
    assert init.calculate_gain("relu") == math.sqrt(2) and init.calculate_gain("tanh") == 5 / 3
    with pytest.raises(ValueError, match="at least 2 dims"):
        init.kaiming_normal_(mc.zeros(5))
    with pytest.raises(ValueError, match="mode must be"):
        init.kaiming_uniform_(mc.zeros(3, 3), mode="fan_avg")
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        init.kaiming_normal_(mc.zeros(3, 3), nonlinearity="gelu")


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
    "conv_stride_0": (lambda: F.conv2d(x64(1, 1, 3, 3), x64(1, 1, 1, 1), stride=0), ValueError, "stride must be >= 1"),
    "conv_padding_negative": (lambda: F.conv2d(x64(1, 1, 3, 3), x64(1, 1, 1, 1), padding=-1), ValueError,
                              "padding must be >= 0"),
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
    "max_pool_stride_0": (lambda: F.max_pool2d(x64(1, 1, 4, 4), 2, stride=0), ValueError, "stride must be >= 1"),
    "avg_pool_kernel_too_big": (lambda: nn.AvgPool2d(3)(x64(1, 1, 2, 5)), ValueError, "window no larger"),
    "avg_pool_5d": (lambda: F.avg_pool2d(x64(1, 1, 1, 4, 4), 2), ValueError, "must be 4-d"),
    "adaptive_output_0": (lambda: F.adaptive_avg_pool2d(x64(1, 1, 4, 4), (0, 2)), ValueError,
                          "output_size must be >= 1"),
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
