"""`Module` behaviour and `nn.init`.

- Module: parameter/child order (PyTorch's), train()/eval() recursion, state_dict with
  buffers as NumPy copies, load_state_dict errors naming the bad keys (the first few of each
  kind), to()/double()/float() for parameters and buffers, repr, forward hooks, apply;
- nn.init: the distributions' spread and bounds, measured on large tensors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from nn_helpers import one_numba_thread, randn  # noqa: F401  (a fixture, requested by name)

import minicoconv as mc
from minicoconv import nn
from minicoconv.nn import init
from minicoconv.nn.module import Parameter

pytestmark = pytest.mark.usefixtures("one_numba_thread")


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
        nn.Module()(mc.zeros(1))


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


def test_replace_child_and_shallow_copy():
    """fuse() builds its result with these: the copy's children change, the original's do not."""
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    clone = net.shallow_copy()
    old = clone.replace_child("0", nn.Identity())
    assert old is net[0] and isinstance(clone[0], nn.Identity) and isinstance(net[0], nn.Linear)
    assert list(dict(clone.named_children())) == ["0", "1"]          # same position
    assert clone._parameters is not net._parameters
    with pytest.raises(KeyError, match="no child 'nope'"):
        clone.replace_child("nope", nn.ReLU())
    with pytest.raises(TypeError, match="expected a Module"):
        clone.replace_child("1", 3)
