"""Layers, model blocks and a training step on the CUDA backend, against the CPU backend.

Each test builds the same module twice from the same seed, one copy on each device,
runs the same inputs, and compares outputs, input gradients and parameter gradients
(and, for dynamic convolutions, the eval-mode and fused inference forms).
"""

from __future__ import annotations

import numpy as np
import pytest

import minicoconv as mc
from minicoconv import nn
from minicoconv.models.factory import conv_factory
from minicoconv.models.mobilenetv2 import InvertedResidual
from minicoconv.models.resnet import BasicBlock
from minicoconv.nn import functional as F
from minicoconv.optim import SGD

pytestmark = pytest.mark.cuda

LAYERS = {
    "condconv": lambda: nn.CondConv2d(3, 4, 3, padding=1, experts=3),
    "dycnn": lambda: nn.DyConv2d(3, 4, 3, stride=2, padding=1, experts=2),
    "coconv": lambda: nn.CoConv2d(3, 4, 3, padding=1, experts=3),
    "coconv-depthwise": lambda: nn.CoConv2d(4, 4, 3, padding=1, groups=4, experts=2),
    "coconv-input-softmax": lambda: nn.CoConv2d(2, 4, 3, padding=1, experts=2, attention="input",
                                                activation="softmax", multiscale=False),
    "odconv": lambda: nn.ODConv2d(4, 4, 3, padding=1, experts=2),
    "dgc": lambda: nn.DGConv2d(4, 4, 3, padding=1, heads=2, keep=0.5),
    "resnet-block": lambda: BasicBlock(3, 4, 2, conv_factory("coconv", experts=2)),
    "mobilenet-block": lambda: InvertedResidual(2, 3, 2, 1, conv_factory("condconv", experts=2)),
}


def run(make, device, x, cotangent, inference=True):
    """Outputs, gradients and (optionally) eval/fused outputs of a fresh float64 module on `device`."""
    mc.manual_seed(0)
    module = make().double().to(device)
    xt = mc.tensor(x, requires_grad=True, device=device)
    y = module(xt)
    y.backward(mc.tensor(cotangent, device=device))
    out = {"y": y.numpy(), "dx": xt.grad.numpy()}
    out.update({name: p.grad.numpy() for name, p in module.named_parameters() if p.grad is not None})
    out.update({name: b.numpy() for name, b in module.named_buffers()})
    if inference:
        module.eval()
        with mc.no_grad():
            out["eval"] = module(xt).numpy()
            out["fused"] = nn.fuse(module)(xt).numpy()
    return out


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_matches_cpu(name):
    rng = np.random.default_rng(5)
    channels = 2 if name in ("coconv-input-softmax", "mobilenet-block") else 3 if name in (
        "condconv", "dycnn", "coconv", "resnet-block") else 4
    x = rng.standard_normal((2, channels, 5, 4))
    mc.manual_seed(0)
    y_shape = LAYERS[name]().double()(mc.tensor(x)).shape
    cotangent = rng.standard_normal(y_shape)
    cpu, gpu = run(LAYERS[name], "cpu", x, cotangent), run(LAYERS[name], "cuda", x, cotangent)
    assert cpu.keys() == gpu.keys()
    for key in cpu:
        np.testing.assert_allclose(gpu[key], cpu[key], rtol=1e-9, atol=1e-9, err_msg=f"{name}: {key}")


class TinyCNN(nn.Module):
    """conv + BN + ReLU + max pool + CoConv + global pool + dropout + linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.dynamic = nn.CoConv2d(4, 4, 3, padding=1, experts=2)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        x = F.max_pool2d(self.bn(self.conv(x)).relu(), 2)
        x = F.adaptive_avg_pool2d(self.dynamic(x).relu(), 1).flatten(1)
        return self.fc(self.drop(x))


def train(device, steps=2):
    mc.manual_seed(0)
    model = TinyCNN().to(device)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    rng = np.random.default_rng(6)
    x = mc.tensor(rng.standard_normal((4, 3, 6, 6)).astype(np.float32), device=device)
    targets = mc.tensor(rng.integers(0, 5, 4), device=device)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, model.state_dict(), opt.state_dict()["momentum_buffers"]


def test_training_steps_match_cpu():
    (cpu_losses, cpu_state, cpu_bufs), (gpu_losses, gpu_state, gpu_bufs) = train("cpu"), train("cuda")
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-5)
    for name in cpu_state:
        np.testing.assert_allclose(gpu_state[name], cpu_state[name], rtol=1e-4, atol=1e-5, err_msg=name)
    for i in cpu_bufs:
        np.testing.assert_allclose(gpu_bufs[i], cpu_bufs[i], rtol=1e-4, atol=1e-5)
