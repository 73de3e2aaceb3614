"""to_torch / from_torch on single dynamic layers with every option, in float64 (exact to rounding)."""

from __future__ import annotations

import numpy as np
import pytest
from interop_helpers import calibrate, outputs, randomize, relative_error

import minicoconv as mc
from minicoconv import models, nn
from minicoconv.interop import InteropError, from_torch, to_torch, torch_state

torch = pytest.importorskip("torch", reason="PyTorch is not installed: to_torch/from_torch need it")

# (conv type, options, groups): each option the layers take, grouped experts where they apply
CASES = [
    ("condconv", {}, 1), ("condconv", {"bias": True}, 2),
    ("dycnn", {"reduction": 4, "temperature": 7.0}, 1), ("dycnn", {"bias": True}, 6),
    ("coconv", {}, 1), ("coconv", {}, 6), ("coconv", {"bias": True}, 2),
    ("coconv", {"attention": "input"}, 2), ("coconv", {"multiscale": False, "activation": "softmax"}, 1),
    ("coconv", {"expert_bn": False, "reduction": 2}, 3),
    ("odconv", {}, 1), ("odconv", {"temperature": 3.0}, 6), ("odconv", {"reduction": 0.5}, 2),
    ("dgc", {}, 1), ("dgc", {"heads": 2, "keep": 0.25}, 1),
]


@pytest.mark.parametrize("conv, options, groups", CASES)
def test_layer_round_trip_and_outputs_in_float64(conv, options, groups):
    mc.manual_seed(1)
    temperature = options.pop("temperature", None) if conv in ("dycnn", "odconv") else None
    c = 8 if conv == "dgc" else 6  # DGC's heads must divide the channels
    layer = models.conv_factory(conv, experts=3, **options)(c, c, 3, 1, 1, groups).double()
    if temperature is not None:
        layer.temperature = temperature
    randomize(layer)
    x = np.random.default_rng(2).standard_normal((4, c, 7, 7))
    calibrate(layer, x)
    tlayer = to_torch(layer)
    assert next(tlayer.parameters()).dtype == torch.float64
    for training in (False, True):
        ours, theirs = outputs(layer, tlayer, torch, x, training)
        assert relative_error(ours, theirs) < 1e-10, (conv, options, training)
    back = from_torch(tlayer)  # after a training forward: PyTorch's running statistics come back
    assert type(back) is type(layer)
    expected = {k: v.detach().numpy() for k, v in tlayer.state_dict().items()}
    for key, value in torch_state(back).items():
        if not key.endswith("num_batches_tracked"):  # not kept by minicoconv (momentum is never None)
            np.testing.assert_array_equal(value, expected[key], err_msg=key)
    if temperature is not None:
        assert back.temperature == temperature


def test_coconv_stacked_bn_maps_to_each_experts_bn():
    """Expert i's BN in PyTorch holds exactly expert i's channels of our stacked BN (grouped order)."""
    mc.manual_seed(0)
    layer = nn.CoConv2d(4, 4, 3, padding=1, groups=2, experts=3)
    randomize(layer)
    tlayer = to_torch(layer)
    a, c = layer.expert_affine()  # per expert (n, C'), from the layer's own contract
    for i, bn in enumerate(tlayer.bns):
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
        np.testing.assert_allclose(scale, a[i], rtol=1e-6)
        np.testing.assert_allclose(bn.bias.detach().numpy(), c[i], rtol=1e-6)  # running_mean is 0 here


def test_settings_travel_and_dtype_float32():
    mc.manual_seed(0)
    layer = nn.CoConv2d(4, 8, 3, padding=1, experts=2)
    layer.bn.eps, layer.bn.momentum = 1e-3, 0.25
    tlayer = to_torch(layer.eval())
    assert not tlayer.training and next(tlayer.parameters()).dtype == torch.float32
    assert all(bn.eps == 1e-3 and bn.momentum == 0.25 for bn in tlayer.bns)
    back = from_torch(tlayer)
    assert back.bn.eps == 1e-3 and back.bn.momentum == 0.25 and not back.training


def test_unsupported_modules_are_refused_clearly():
    with pytest.raises(InteropError, match="cannot convert a Linear"):
        to_torch(nn.Linear(3, 4))
    with pytest.raises(InteropError, match="expects a torch.nn.Module"):
        from_torch(nn.CoConv2d(4, 4, 3))
    with pytest.raises(InteropError, match="cannot convert a Sequential"):
        from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_momentum_none_has_no_equivalent():
    from minicoconv.interop.torch_models import build

    module = build("resnet18", "static", num_classes=10)
    module.bn1.momentum = None
    with pytest.raises(InteropError, match="momentum=None"):
        from_torch(module)
