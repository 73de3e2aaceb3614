"""Whole models on the reference backend equal the CPU backend (float64, one SGD step).

The same seeded model is built twice and moved to each device; one training step
(forward, cross-entropy, backward, SGD with momentum and weight decay) and then one
eval-mode forward must give the same loss, gradients, parameters, BN buffers and
outputs to round-off. Tiny batches: the reference backend is plain NumPy.
"""

from __future__ import annotations

import numpy as np
import pytest

import minicoconv as mc
from minicoconv import models
from minicoconv.nn import functional as F
from minicoconv.optim import SGD


def step(device: str, name: str, conv: str, size: int, batch: int = 2) -> dict[str, np.ndarray]:
    """Loss, gradients, updated state and an eval forward of one float64 training step on `device`."""
    mc.manual_seed(0)
    model = models.build(name, conv=conv, experts=2, num_classes=5).double().to(device)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(1)
    x = mc.tensor(rng.standard_normal((batch, 3, size, size)), device=device)
    targets = mc.tensor(rng.integers(0, 5, batch), device=device)
    model.train()
    loss = F.cross_entropy(model(x), targets)
    opt.zero_grad()
    loss.backward()
    out = {"loss": np.asarray(loss.item())}
    out.update({f"grad:{k}": p.grad.numpy() for k, p in model.named_parameters() if p.grad is not None})
    opt.step()
    out.update({f"state:{k}": np.asarray(v) for k, v in model.state_dict().items()})
    model.eval()
    with mc.no_grad():
        out["eval"] = model(x).numpy()
    return out


@pytest.mark.parametrize("name, conv, size", [
    ("resnet18", "coconv", 32),
    ("alexnet", "condconv", 32),
    ("alexnet", "dgc", 32),
    ("mobilenetv2", "dycnn", 32),
    ("mobilenetv2", "odconv", 32),
    ("smallcnn", "coconv", 32),
])
def test_one_training_step_matches_cpu(name, conv, size):
    expected, got = step("cpu", name, conv, size), step("reference", name, conv, size)
    assert got.keys() == expected.keys()
    assert len([k for k in expected if k.startswith("grad:")]) > 10
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-9, atol=1e-9, err_msg=key)
    assert np.abs(expected["grad:" + next(k[5:] for k in expected if k.startswith("grad:"))]).max() > 0


def test_reference_is_a_device():
    t = mc.tensor(np.arange(3.0)).to("reference")
    assert t._backend.name == "reference" and t.to("cpu")._backend.name == "cpu"
    model = models.build("alexnet", num_classes=3).to("reference")
    assert {p._backend.name for p in model.parameters()} == {"reference"}
