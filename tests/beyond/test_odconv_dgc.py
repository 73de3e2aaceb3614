"""ODConv and DGC: gradients, fused/sparse inference, special cases, schedules, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minicoconv as mc
from minicoconv import models, nn
from minicoconv.nn import functional as F
from minicoconv.nn.dynamic import (
    DGConv2d,
    ODConv2d,
    dgc_lasso,
    dgc_pruned_channels,
    odconv_temperature,
    set_dgc_progress,
    set_odconv_temperature,
)
from minicoconv.summary import count
from minicoconv.testing import gradcheck


def _params_check(layer, x):
    """Gradcheck the layer w.r.t. its input and every parameter (float64)."""
    layer.double()
    x = x.double()
    gradcheck(lambda inp: layer(inp), x.detach().requires_grad_(), name=f"{type(layer).__name__}/x")
    for name, p in list(layer.named_parameters()):
        value = mc.tensor(p.numpy(), dtype="float64", requires_grad=True)
        gradcheck(lambda v, p=p: _call_with(layer, p, v, x), value, name=f"{type(layer).__name__}/{name}")


def _call_with(layer, param, value, x):
    """Run layer(x) with `param` replaced by the tensor `value` (so gradients flow to value)."""
    owners = [(m, n) for m in layer.modules() for n, q in m._parameters.items() if q is param]
    for m, n in owners:
        object.__setattr__(m, n, value)
    try:
        return layer(x)
    finally:
        for m, n in owners:
            object.__setattr__(m, n, param)


# ---- ODConv ------------------------------------------------------------------------------

# small channel counts: every parameter entry costs two forward passes in the gradient check
ODCONV_CASES = [
    dict(cin=4, cout=3, k=3, stride=1, groups=1, experts=2),
    dict(cin=4, cout=4, k=3, stride=2, groups=4, experts=2),   # depthwise: no filter attention
    dict(cin=4, cout=3, k=1, stride=1, groups=1, experts=3),   # 1x1: no spatial attention
    dict(cin=4, cout=3, k=3, stride=1, groups=1, experts=1),   # one kernel: no kernel attention
    dict(cin=4, cout=2, k=3, stride=2, groups=2, experts=2),
]


@pytest.mark.parametrize("case", ODCONV_CASES)
def test_odconv_gradients_and_fused(case):
    mc.manual_seed(1)
    layer = ODConv2d(case["cin"], case["cout"], case["k"], case["stride"], case["k"] // 2, case["groups"],
                     experts=case["experts"], temperature=2.0)
    x = mc.randn(2, case["cin"], 4, 4)
    _params_check(layer, x)
    for _ in range(3):
        layer(x.double())
    layer.eval()
    y = layer(x.double()).numpy()
    assert np.allclose(nn.fuse(layer)(x.double()).numpy(), y, rtol=1e-10, atol=1e-12)
    with mc.no_grad():  # the literal formula: every attention folded into one kernel per sample
        kernels = layer.per_sample_kernels(*layer.attentions(x.double()))
        literal = F.per_sample_conv2d(x.double(), kernels, layer.stride, layer.padding, layer.groups)
    assert np.allclose(literal.numpy(), y, rtol=1e-10, atol=1e-12)


def test_odconv_special_cases_drop_attentions():
    assert ODConv2d(8, 8, 3, groups=8).filter_head is None
    assert ODConv2d(8, 6, 1).spatial_head is None
    assert ODConv2d(8, 6, 3, experts=1).kernel_head is None
    full = ODConv2d(8, 6, 3)
    assert full.filter_head is not None and full.spatial_head is not None and full.kernel_head is not None
    assert full.fc.out_channels == 16                       # A = max(int(C/16), 16)
    assert ODConv2d(512, 8, 3).fc.out_channels == 32


def test_odconv_attention_ranges_and_temperature():
    mc.manual_seed(0)
    layer = ODConv2d(8, 6, 3, padding=1).eval()
    x = mc.randn(4, 8, 6, 6)
    a_c, a_f, a_s, a_w = (a.numpy() for a in layer.attentions(x))
    assert a_c.shape == (4, 8) and a_f.shape == (4, 6) and a_s.shape == (4, 9) and a_w.shape == (4, 4)
    for a in (a_c, a_f, a_s):
        assert ((a > 0) & (a < 1)).all()
    assert np.allclose(a_w.sum(axis=1), 1, atol=1e-6)
    set_odconv_temperature(nn.Sequential(layer), 30.0)
    hot = layer.attentions(x)[3].numpy()
    assert hot.std() < a_w.std()      # a higher temperature flattens the kernel attention


def test_odconv_temperature_schedule():
    assert odconv_temperature(1, 100) == pytest.approx(1 + 29 * (1 - 1 / 1000))
    assert odconv_temperature(500, 100) == pytest.approx(1 + 29 * 0.5)
    assert odconv_temperature(1000, 100) == 1.0
    assert odconv_temperature(5000, 100) == 1.0


def test_odconv_refuses_batch_of_one_in_training():
    layer = ODConv2d(8, 6, 3, padding=1)
    with pytest.raises(ValueError, match="batch of at least 2"):
        layer(mc.randn(1, 8, 5, 5))
    layer.eval()
    assert layer(mc.randn(1, 8, 5, 5)).shape == (1, 6, 5, 5)   # fine in eval mode


@pytest.mark.parametrize("kwargs,match", [(dict(reduction=0), "reduction"), (dict(temperature=0), "temperature"),
                                          (dict(experts=0), "experts"), (dict(groups=3), "divisible"),
                                          (dict(bias=True), "no bias")])
def test_odconv_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ODConv2d(8, 6, 3, **kwargs)


# ---- DGC ---------------------------------------------------------------------------------

@given(progress=st.floats(0, 1), channels=st.sampled_from([8, 64, 256]), keep=st.sampled_from([0.25, 0.5, 0.75]))
@settings(max_examples=40, deadline=None)
def test_dgc_schedule(progress, channels, keep):
    m = dgc_pruned_channels(channels, keep, progress)
    if progress < 1 / 12:
        assert m == 0
    elif progress < 3 / 4:
        assert m == round(channels * (1 - keep) * 1.5 * (progress - 1 / 12))
    else:
        assert m == round(channels * (1 - keep))
    assert 0 <= m <= round(channels * (1 - keep))


@pytest.mark.parametrize("cin,cout,k,stride,heads,keep,progress", [
    (8, 4, 3, 1, 4, 0.5, 1.0), (4, 4, 3, 2, 2, 0.25, 1.0), (8, 4, 1, 1, 4, 0.75, 0.5), (4, 2, 3, 1, 2, 0.5, 0.0)])
def test_dgc_gradients_with_fixed_mask(cin, cout, k, stride, heads, keep, progress):
    mc.manual_seed(2)
    layer = DGConv2d(cin, cout, k, stride, k // 2, heads=heads, keep=keep)
    set_dgc_progress(nn.Sequential(layer), progress)
    x = mc.randn(2, cin, 4, 4)
    # The pruning mask is piecewise constant in the inputs: finite differences that move a
    # saliency across the threshold measure the jump, not the gradient. Fix the mask (as the
    # gradient does, through the detached threshold) at the unperturbed input's.
    layer.double()
    mask = layer.keep_mask(layer.saliency(layer.bn(x.double()).relu()))
    layer.keep_mask = lambda q: mask
    _params_check(layer, x)
    xg = x.double().detach().requires_grad_()
    gradcheck(lambda inp: layer(inp).sum() * 0 + layer.lasso, xg, name="DGC lasso")


@pytest.mark.parametrize("keep", [0.25, 0.5, 1.0])
def test_dgc_sparse_inference_equals_dense_eval(keep):
    mc.manual_seed(3)
    layer = DGConv2d(16, 8, 3, 1, 1, heads=4, keep=keep).double()
    x = mc.randn(5, 16, 6, 6, dtype="float64")
    layer(x)
    layer.eval()
    sparse = nn.fuse(layer)
    assert np.allclose(sparse(x).numpy(), layer(x).numpy(), rtol=1e-10, atol=1e-12)
    dense_macs = layer.macs(None, layer(x))
    assert sparse.macs(None, layer(x)) == pytest.approx(dense_macs * (16 - layer.pruned) / 16)
    assert layer.pruned == round(16 * (1 - keep))


def test_dgc_mask_prunes_the_smallest_and_interleaves_heads():
    mc.manual_seed(4)
    layer = DGConv2d(8, 4, 1, heads=4, keep=0.5).double().eval()
    x = mc.randn(2, 8, 3, 3, dtype="float64")
    u = layer.bn(x).relu()
    q = layer.saliency(u).numpy()                              # (H, N, C)
    mask = layer.keep_mask(mc.tensor(q, dtype="float64"))
    assert (mask.sum(axis=2) == 4).all()
    for h in range(4):
        for b in range(2):
            assert q[h, b][mask[h, b]].min() >= q[h, b][~mask[h, b]].max()
    # literal reference: per head, a 1x1 conv of the masked, scaled input; channel j*H + h
    y = layer(x).numpy()
    w = layer.weight.numpy()                                   # (H, C'/H, C, 1, 1)
    for h in range(4):
        scaled = u.numpy() * (q[h] * mask[h])[:, :, None, None]
        ref = np.einsum("oc,nchw->nohw", w[h, :, :, 0, 0], scaled)
        assert np.allclose(y[:, h::4], ref)


def test_dgc_lasso_and_bad_arguments():
    layer = DGConv2d(8, 8, 3, padding=1)
    model = nn.Sequential(layer, DGConv2d(8, 8, 3, padding=1))
    assert dgc_lasso(model) is None
    model(mc.randn(2, 8, 4, 4))
    assert dgc_lasso(model).item() > 0
    with pytest.raises(ValueError, match="heads"):
        DGConv2d(8, 6, 3, heads=4)
    with pytest.raises(ValueError, match="keep"):
        DGConv2d(8, 8, 3, keep=0)


# ---- models --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["alexnet", "resnet18", "mobilenetv2"])
def test_models_build_with_odconv_and_fuse(name):
    mc.manual_seed(5)
    model = models.build(name, conv="odconv")
    assert any(isinstance(m, ODConv2d) for m in model.modules())
    x = mc.randn(2, 3, 32, 32)
    model(x)
    model.eval()
    y = model(x).numpy()
    assert np.allclose(nn.fuse(model)(x).numpy(), y, rtol=1e-4, atol=1e-5 * np.abs(y).max())


def test_dgc_in_resnet18_replaces_block_convs_and_shortcuts_and_saves_macs():
    model = models.build("resnet18", conv="dgc")
    dgc = [n for n, m in model.named_modules() if isinstance(m, DGConv2d)]
    assert len(dgc) == 16 + 3                                  # two per block + three projection shortcuts
    assert sum(".shortcut." in n for n in dgc) == 3
    rows = count(model)
    train, fused = sum(r.macs_train for r in rows), sum(r.macs_fused for r in rows)
    assert fused < 0.6 * train                                 # keep 0.5 halves the dynamic layers' MACs


def test_dgc_refused_for_depthwise_mobilenetv2():
    with pytest.raises(ValueError, match="dense convolutions"):
        models.build("mobilenetv2", conv="dgc")
