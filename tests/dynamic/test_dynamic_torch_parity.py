"""Parity with PyTorch re-implementations of CondConv, DY-CNN and CoConv (float32).

Each layer is rewritten here in plain PyTorch, the obvious way (docs/layers.md):
CondConv and DY-CNN aggregate one kernel per sample and run it as a grouped
convolution over the batch; CoConv runs the multi-scale routing with
torch's adaptive_avg_pool2d and convolutions, then n separate expert convolutions,
each followed by its own BatchNorm2d, summed with the routing weights. Weights are
copied from ours; outputs, the input gradient and every parameter gradient are
compared in train and eval mode, and the BN running statistics after a few SGD steps.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from dyn_helpers import (
    expert_order,
    make_layer,
    one_numba_thread,  # noqa: F401  (a fixture, requested by name)
)

import minicoconv as mc

torch = pytest.importorskip("torch")
tF = torch.nn.functional

pytestmark = pytest.mark.usefixtures("one_numba_thread", "one_torch_thread")




def _t(array) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.tensor(np.array(array, dtype=np.float32)))


def aggregated_conv(x, bank, r, stride, padding, groups):
    """conv(x_b, sum_i r_bi W_i) for every sample b, as ONE grouped convolution over the batch."""
    n_batch, c = x.shape[:2]
    kernels = torch.einsum("bn,noikl->boikl", r, bank)           # (B, C', C/g, k, k)
    y = tF.conv2d(x.reshape(1, n_batch * c, *x.shape[2:]), kernels.reshape(-1, *bank.shape[2:]), None, stride,
                  padding, groups=n_batch * groups)
    return y.reshape(n_batch, bank.shape[1], *y.shape[2:])


class TorchCondConv(torch.nn.Module):
    def __init__(self, ours):
        super().__init__()
        self.stride, self.padding, self.groups = ours.stride, ours.padding, ours.groups
        self.weight = _t(ours.weight.numpy())
        self.bias = _t(ours.bias.numpy()) if ours.bias is not None else None
        self.routing = torch.nn.Linear(ours.in_channels, ours.experts)
        self.routing.weight, self.routing.bias = _t(ours.routing.weight.numpy()), _t(ours.routing.bias.numpy())

    def routing_weights(self, x):
        return torch.sigmoid(self.routing(tF.adaptive_avg_pool2d(x, 1).flatten(1)))

    def forward(self, x):
        r = self.routing_weights(x)
        y = aggregated_conv(x, self.weight, r, self.stride, self.padding, self.groups)
        return y if self.bias is None else y + (r @ self.bias)[:, :, None, None]


class TorchDyConv(TorchCondConv):
    def __init__(self, ours):
        torch.nn.Module.__init__(self)
        self.stride, self.padding, self.groups = ours.stride, ours.padding, ours.groups
        self.temperature = ours.temperature
        self.weight = _t(ours.weight.numpy())
        self.bias = _t(ours.bias.numpy()) if ours.bias is not None else None
        self.fc1 = torch.nn.Linear(ours.fc1.in_features, ours.fc1.out_features)
        self.fc2 = torch.nn.Linear(ours.fc2.in_features, ours.fc2.out_features)
        for mine, theirs in ((self.fc1, ours.fc1), (self.fc2, ours.fc2)):
            mine.weight, mine.bias = _t(theirs.weight.numpy()), _t(theirs.bias.numpy())

    def routing_weights(self, x):
        h = torch.relu(self.fc1(tF.adaptive_avg_pool2d(x, 1).flatten(1)))
        return torch.softmax(self.fc2(h) / self.temperature, dim=1)


class TorchCoConvRouting(torch.nn.Module):
    def __init__(self, ours):
        super().__init__()
        self.experts, self.width = ours.experts, ours.width
        self.multiscale, self.activation = ours.multiscale, ours.activation
        hidden = ours.reduce.out_channels
        k = 3 if ours.multiscale else 1
        self.reduce = torch.nn.Conv2d(ours.reduce.in_channels, hidden, 1, bias=False)
        self.spatial = torch.nn.Conv2d(hidden, hidden, k, groups=hidden, bias=False)
        self.expand = torch.nn.Conv2d(hidden, ours.experts * ours.width, 1, bias=False)
        for name in ("reduce", "spatial", "expand"):
            getattr(self, name).weight = _t(getattr(ours, name).weight.numpy())

    def forward(self, x):
        a1 = tF.adaptive_avg_pool2d(x, 1)
        if self.multiscale:
            a3 = tF.adaptive_avg_pool2d(x, 3)
            a1 = torch.cat([a1.expand_as(a3), a3], dim=1)
        h = torch.relu(self.spatial(torch.relu(self.reduce(a1))))
        logits = self.expand(h).reshape(x.shape[0], self.experts, self.width)
        return torch.sigmoid(logits) if self.activation == "sigmoid" else torch.softmax(16.0 * logits, dim=1)


class TorchCoConv(torch.nn.Module):
    """n expert convolutions, each with its own BatchNorm2d, weighted by the routing and summed."""

    def __init__(self, ours):
        super().__init__()
        self.stride, self.padding, self.groups = ours.stride, ours.padding, ours.groups
        self.attention, n, cout = ours.attention, ours.experts, ours.out_channels
        self.weight = _t(ours.weight.numpy())
        self.bias = _t(ours.bias.numpy()) if ours.bias is not None else None
        self.routing = TorchCoConvRouting(ours.routing)
        self.order = expert_order(n, cout, ours.groups if ours.attention == "output" else 1)
        self.bns = None
        if ours.bn is not None:
            self.bns = torch.nn.ModuleList(torch.nn.BatchNorm2d(cout, eps=ours.bn.eps, momentum=ours.bn.momentum)
                                           for _ in range(n))
            for i, bn in enumerate(self.bns):
                bn.weight = _t(ours.bn.weight.numpy()[self.order[i]])
                bn.bias = _t(ours.bn.bias.numpy()[self.order[i]])
                bn.running_mean.copy_(torch.tensor(ours.bn.running_mean.numpy()[self.order[i]]))
                bn.running_var.copy_(torch.tensor(ours.bn.running_var.numpy()[self.order[i]]))

    def forward(self, x):
        r = self.routing(x)
        y = 0
        for i in range(self.weight.shape[0]):
            bias = None if self.bias is None else self.bias[i]
            if self.attention == "output":
                z = tF.conv2d(x, self.weight[i], bias, self.stride, self.padding, groups=self.groups)
            else:  # r_bi scales the input channels of W_i: per-sample kernels, one grouped conv over the batch
                n_batch, c = x.shape[:2]
                cout, cin_g = self.weight.shape[1:3]
                scale = r[:, i].reshape(n_batch, self.groups, 1, cin_g).expand(n_batch, self.groups,
                                                                              cout // self.groups, cin_g)
                kernels = self.weight[i] * scale.reshape(n_batch, cout, cin_g, 1, 1)
                z = tF.conv2d(x.reshape(1, n_batch * c, *x.shape[2:]), kernels.reshape(-1, *kernels.shape[2:]),
                              None, self.stride, self.padding, groups=n_batch * self.groups)
                z = z.reshape(n_batch, cout, *z.shape[2:])
                if bias is not None:
                    z = z + bias[:, None, None]
            if self.bns is not None:
                z = self.bns[i](z)
            y = y + (r[:, i, :, None, None] * z if self.attention == "output" else z)
        return y

    def stacked(self, get) -> np.ndarray:
        """Per-expert BN tensors (get(bn)) laid out in our stacked (n*C',) order."""
        out = None
        for i, bn in enumerate(self.bns):
            value = get(bn).detach().numpy()
            out = np.empty(self.order.size, dtype=value.dtype) if out is None else out
            out[self.order[i]] = value
        return out


TORCH_CLASSES = {"condconv": TorchCondConv, "dycnn": TorchDyConv, "coconv": TorchCoConv}


def torch_params(tmod) -> dict[str, np.ndarray]:
    """PyTorch parameters (or, with grad=True, their gradients) under our names and in our layouts."""
    return _collect(tmod, lambda p: p)


def torch_grads(tmod) -> dict[str, np.ndarray]:
    return _collect(tmod, lambda p: p.grad)


def _collect(tmod, get) -> dict[str, np.ndarray]:
    out = {}
    for name, p in tmod.named_parameters():
        if name.startswith("bns."):
            continue
        out[name] = get(p).detach().numpy()
    if isinstance(tmod, TorchCoConv) and tmod.bns is not None:
        out["bn.weight"] = tmod.stacked(lambda bn: get(bn.weight))
        out["bn.bias"] = tmod.stacked(lambda bn: get(bn.bias))
    return out


#: float64: ours and PyTorch agree to rounding, |ours - torch| <= RTOL64 * max|torch|
RTOL64 = 1e-10
#: float32: ours is within RTOL32 of the float64 truth (relative to its largest magnitude), or, at
#: ill-conditioned spots, within FACTOR times PyTorch float32's own error there (`float32_spread`)
RTOL32, FACTOR = 2e-5, 2.0


def assert_close(ours: np.ndarray, theirs: np.ndarray, what: str, rtol: float = RTOL32,
                 scale: float | None = None) -> None:
    """max |ours - theirs| <= rtol * scale, scale defaulting to max |theirs|."""
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs {theirs.shape}"
    scale = max(float(np.abs(theirs).max()) if scale is None else scale, 1e-30)
    err = float(np.abs(ours - theirs).max())
    assert err <= rtol * scale, f"{what}: max |ours - torch| = {err:.3g} > {rtol} * {scale:.3g}"


def run_ours(layer, x: np.ndarray, cot: np.ndarray | None, seed: int = 0) -> dict[str, np.ndarray]:
    """Output, input gradient and every parameter gradient of <layer(x), cot>.

    With cot None, a random cotangent is drawn (from `seed`) and returned as "cotangent".
    """
    layer.zero_grad()
    xo = mc.Tensor(x, requires_grad=True)
    y = layer(xo)
    drawn = cot is None
    if drawn:
        cot = np.random.default_rng(seed).normal(size=y.shape).astype(x.dtype)
    y.backward(mc.Tensor(cot))
    out = {"y": y.numpy(), "dx": xo.grad.numpy()}
    if drawn:
        out["cotangent"] = cot
    out.update({f"d {n}": p.grad.numpy() for n, p in layer.named_parameters()})
    return out


def run_torch(tmod, x: np.ndarray, cot: np.ndarray) -> dict[str, np.ndarray]:
    tmod.zero_grad()
    xt = torch.tensor(x, requires_grad=True)
    y = tmod(xt)
    y.backward(torch.tensor(cot))
    out = {"y": y.detach().numpy(), "dx": xt.grad.numpy()}
    out.update({f"d {n}": g for n, g in torch_grads(tmod).items()})
    return out


def compare_step(layer, layer64, tmod, x: np.ndarray, seed: int, label: str) -> None:
    """Ours vs PyTorch in float64 (tight), and ours in float32 against that float64 truth."""
    ours64 = run_ours(layer64, x.astype(np.float64), None, seed)
    cot = ours64.pop("cotangent")
    truth = run_torch(copy.deepcopy(tmod).double(), x.astype(np.float64), cot)
    spread = float32_spread(tmod, x, cot, truth, seed)
    ours32 = run_ours(layer, x, cot.astype(np.float32))
    with torch.no_grad():
        tmod(torch.tensor(x))  # the float32 PyTorch module keeps its own BN running statistics
    assert set(ours32) == set(truth), f"{label}: compared names differ: {sorted(set(ours32) ^ set(truth))}"
    for name in truth:
        scale = float(np.abs(truth[name]).max())
        if name == "d bias" and getattr(layer, "bn", None) is not None and layer.training:
            # BN subtracts the batch mean right after the expert bias: its gradient is exactly 0, and
            # both sides return rounding noise. Measure that noise against the sibling d weight.
            scale = float(np.abs(truth["d weight"]).max())
            assert float(np.abs(truth[name]).max()) <= RTOL64 * scale, f"{label}: d bias should be 0"
        assert_close(ours64[name], truth[name], f"{label}: {name} (float64)", rtol=RTOL64, scale=scale)
        err = float(np.abs(ours32[name] - truth[name]).max())
        assert err <= max(RTOL32 * scale, FACTOR * spread[name]), (
            f"{label}: {name} (float32): max error vs float64 {err:.3g} > {RTOL32} * scale {scale:.3g}, and > "
            f"{FACTOR} * {spread[name]:.3g}, PyTorch float32's worst error over a few jittered runs")


def float32_spread(tmod, x, cot, truth, seed: int, runs: int = 5) -> dict[str, float]:
    """The largest error (vs the float64 truth) of PyTorch's own float32 computation over a few runs
    whose x, cotangent and parameters are jittered by one float32 rounding step (random signs).

    Ill-conditioned spots make every float32 implementation err by more than RTOL32: the standard
    softmax backward y * (g - sum(g * y)) cancels catastrophically when the routing softmax of
    16 x logits saturates (PyTorch's float32 errs by up to 1e-2 there, measured).
    """
    rng = np.random.default_rng(seed + 1000)

    def jitter(a):
        return (a * (1 + 2.0**-23 * rng.choice([-1.0, 1.0], size=np.shape(a)))).astype(np.float32)

    worst = {name: 0.0 for name in truth}
    for run in range(runs):
        moved = copy.deepcopy(tmod)
        if run:  # run 0: PyTorch on exactly our inputs
            with torch.no_grad():
                for t in moved.parameters():
                    t.copy_(torch.tensor(jitter(t.numpy())))
        result = run_torch(moved, jitter(x) if run else x, jitter(cot) if run else cot.astype(np.float32))
        for name in truth:
            worst[name] = max(worst[name], float(np.abs(result[name] - truth[name]).max()))
    return worst


def check_parity(kind: str, cin: int, cout: int, groups: int, stride: int, size: tuple, steps: int = 2,
                 seed: int = 0, **options) -> None:
    layer = make_layer(kind, cin, cout, stride=stride, groups=groups, experts=3, seed=seed, **options)
    if kind == "coconv" and layer.bn is not None:  # non-trivial BN affine params
        rng = np.random.default_rng(seed)
        layer.bn.weight.data = rng.uniform(0.5, 1.5, layer.bn.num_features).astype(np.float32)
        layer.bn.bias.data = rng.normal(0, 0.3, layer.bn.num_features).astype(np.float32)
    tmod = TORCH_CLASSES[kind](layer)
    theirs = torch_params(tmod)
    for name, p in layer.named_parameters():  # the copy is exact
        np.testing.assert_array_equal(p.numpy(), theirs[name], err_msg=name)
    rng = np.random.default_rng(seed + 1)
    label = f"{kind} c{cin}-{cout} g{groups} s{stride} {size} {options}"

    def float64_copy():
        twin = make_layer(kind, cin, cout, stride=stride, groups=groups, experts=3, seed=seed, **options)
        twin.load_state_dict(layer.state_dict())
        return twin.double().train(layer.training)

    # a few training steps: forward, backward, SGD (moves the weights and the BN statistics)
    for step in range(steps):
        x = rng.normal(0.3, 1.0, (3, cin, *size)).astype(np.float32)
        layer.train(), tmod.train()
        compare_step(layer, float64_copy(), tmod, x, step, f"{label} train step {step}")
        for p in layer.parameters():
            p.data = p.data - np.float32(0.1) * p.grad.numpy()
        sync_parameters(layer, tmod, kind)  # PyTorch continues from our updated float32 parameters
    if kind == "coconv" and layer.bn is not None:  # BN statistics moved the same way
        for stat in ("running_mean", "running_var"):
            assert_close(getattr(layer.bn, stat).numpy(), tmod.stacked(lambda bn, s=stat: getattr(bn, s)),
                         f"{label}: {stat}", rtol=1e-5)
        sync_parameters(layer, tmod, kind, buffers=True)
    x = rng.normal(0.3, 1.0, (3, cin, *size)).astype(np.float32)
    layer.eval(), tmod.eval()
    compare_step(layer, float64_copy(), tmod, x, steps, f"{label} eval")


def sync_parameters(layer, tmod, kind: str, buffers: bool = False) -> None:
    """Copy our parameters (and BN statistics) into the PyTorch module: float32 rounding drift undone."""
    fresh = TORCH_CLASSES[kind](layer)
    with torch.no_grad():
        for p, q in zip(tmod.parameters(), fresh.parameters()):
            p.copy_(q)
        if buffers:
            for p, q in zip(tmod.buffers(), fresh.buffers()):
                p.copy_(q)


# (cin, cout, groups, stride, size, options)
CASES = {
    "condconv": [
        (4, 6, 1, 1, (5, 5), dict()),
        (4, 6, 1, 2, (1, 1), dict(bias=True)),
        (6, 6, 6, 2, (4, 5), dict(bias=True)),
        (4, 8, 2, 1, (2, 2), dict()),
    ],
    "dycnn": [
        (4, 6, 1, 1, (5, 5), dict()),
        (4, 6, 1, 2, (2, 2), dict(temperature=0.5, bias=True)),
        (6, 6, 6, 1, (3, 3), dict(temperature=30.0)),
        (4, 8, 4, 2, (1, 1), dict()),
    ],
    "coconv": [
        (4, 6, 1, 1, (5, 5), dict()),
        (4, 6, 1, 2, (1, 1), dict(activation="softmax", bias=True)),
        (4, 6, 1, 1, (2, 2), dict(attention="input")),
        (6, 6, 6, 1, (5, 3), dict()),
        (6, 6, 6, 2, (2, 2), dict(attention="input", bias=True)),
        (4, 8, 2, 1, (4, 4), dict(multiscale=False)),
        (4, 8, 4, 1, (3, 3), dict(attention="input", activation="softmax")),
        (4, 6, 2, 2, (5, 5), dict(expert_bn=False, bias=True)),
        (4, 4, 4, 1, (1, 2), dict(multiscale=False, expert_bn=False, attention="input")),
        (4, 6, 1, 1, (7, 6), dict(activation="softmax", multiscale=False, bias=True)),
    ],
}


def _id(case) -> str:
    cin, cout, groups, stride, size, options = case
    opts = "-".join(f"{k}={v}" for k, v in options.items()) or "default"
    return f"c{cin}-{cout}_g{groups}_s{stride}_{size[0]}x{size[1]}_{opts}"


@pytest.mark.parametrize("case", CASES["condconv"], ids=_id)
def test_condconv_parity(case):
    cin, cout, groups, stride, size, options = case
    check_parity("condconv", cin, cout, groups, stride, size, **options)


@pytest.mark.parametrize("case", CASES["dycnn"], ids=_id)
def test_dycnn_parity(case):
    cin, cout, groups, stride, size, options = case
    check_parity("dycnn", cin, cout, groups, stride, size, **options)


@pytest.mark.parametrize("case", CASES["coconv"], ids=_id)
def test_coconv_parity(case):
    cin, cout, groups, stride, size, options = case
    check_parity("coconv", cin, cout, groups, stride, size, **options)


def test_routing_weights_parity():
    """The routing branches alone, at sizes where adaptive pooling bins overlap or repeat."""
    for kind in ("condconv", "dycnn", "coconv"):
        layer = make_layer(kind, 6, 8, experts=4)
        tmod = TORCH_CLASSES[kind](layer)
        for size in [(1, 1), (2, 2), (2, 5), (4, 4), (7, 7)]:
            x = np.random.default_rng(sum(size)).normal(size=(2, 6, *size)).astype(np.float32)
            ours = layer.routing_weights(mc.Tensor(x)).numpy()
            with torch.no_grad():
                theirs = (tmod.routing(torch.tensor(x)) if kind == "coconv"
                          else tmod.routing_weights(torch.tensor(x))).numpy()
            assert_close(ours, theirs, f"{kind} routing {size}")


def test_fused_coconv_matches_torch_eval():
    """Our fused inference form against the PyTorch training form in eval mode."""
    layer = make_layer("coconv", 6, 8, groups=2, experts=4, bias=True)
    tmod = TorchCoConv(layer)
    rng = np.random.default_rng(0)
    for _ in range(2):  # move the running statistics on both sides
        x = rng.normal(0.5, 1.5, (4, 6, 5, 5)).astype(np.float32)
        with torch.no_grad():
            tmod.train()(torch.tensor(x))
        layer.train()(mc.Tensor(x))
    layer.eval()
    x = rng.normal(0.5, 1.5, (4, 6, 5, 5)).astype(np.float32)
    fused = mc.nn.fuse(layer)
    with torch.no_grad():
        theirs = tmod.eval()(torch.tensor(x)).numpy()
    assert_close(fused(mc.Tensor(x)).numpy(), theirs, "fused vs torch eval")
