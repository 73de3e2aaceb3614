"""SmallCNN, the demo model (minicoconv/models/smallcnn.py): shapes, which convs are dynamic,
the fused form, a training step that lowers the loss. (Parity with its PyTorch twin is in
tests/interop/test_interop_models.py.)"""

from __future__ import annotations

import numpy as np
import pytest

import minicoconv as mc
from minicoconv import models, nn, summary
from minicoconv.nn import functional as F


@pytest.mark.parametrize("conv", ["static", "coconv", "condconv", "dycnn", "odconv", "dgc"])
def test_shapes_and_dynamic_layers(conv):
    mc.manual_seed(0)
    model = models.build("smallcnn", conv=conv, experts=2)
    assert model(mc.randn(2, 3, 32, 32)).shape == (2, 100)
    kinds = [type(m).__name__ for m in model.features if "Conv" in type(m).__name__]
    assert kinds[0] == "Conv2d", "the stem stays static"
    expected = {"static": "Conv2d", "coconv": "CoConv2d", "condconv": "CondConv2d", "dycnn": "DyConv2d",
                "odconv": "ODConv2d", "dgc": "DGConv2d"}[conv]
    assert kinds[1:] == [expected] * 3


def test_fused_coconv_model_matches_eval_form():
    mc.manual_seed(0)
    model = models.build("smallcnn", conv="coconv", experts=2)
    with mc.no_grad():
        model(mc.randn(8, 3, 32, 32) * 2)  # move the BN running statistics
    model.eval()
    x = mc.randn(4, 3, 32, 32)
    with mc.no_grad():
        y, y_fused = model(x).numpy(), nn.fuse(model)(x).numpy()
    assert np.abs(y - y_fused).max() <= 1e-5 * max(1.0, np.abs(y).max())
    counts = summary.count(model)
    assert sum(r.macs_fused for r in counts) < 0.6 * sum(r.macs_train for r in counts)


def test_a_few_steps_lower_the_loss_on_one_batch():
    mc.manual_seed(0)
    model = models.build("smallcnn", conv="coconv", experts=2)
    opt = mc.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    x, y = mc.tensor(rng.standard_normal((16, 3, 32, 32)).astype(np.float32)), rng.integers(0, 100, 16)
    losses = []
    for _ in range(4):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
