"""Dynamic depthwise convolutions (MobileNetV2's dynamic layers): F.dynamic_conv2d with groups = C.

The CPU backend runs them through the depthwise kernels (backend/cpu/depthwise.py) with the
batch folded into the channels; routing may be (N, n) (CondConv, DY-CNN) or (N, n, C')
(ODConv's depthwise form folds its input-channel attention into it). Checked against the
literal formula written here with direct loops, central finite differences in float64,
and the reference backend.
"""

from __future__ import annotations

import numpy as np
import pytest
from dyn_helpers import one_numba_thread  # noqa: F401  (fixture)
from hypothesis import given, settings
from hypothesis import strategies as st

import minicoconv as mc
from minicoconv import nn
from minicoconv.nn import functional as F
from minicoconv.testing import gradcheck

pytestmark = pytest.mark.usefixtures("one_numba_thread")


def literal(x, bank, r, s, stride, padding, dilation):
    """y[b, co] = sum_{i,j} K_b[co, i, j] xpad[b, co // M, oh*sh + i*dh, ow*sw + j*dw], by direct loops."""
    n_batch, c, h, w = x.shape
    c_out, kh, kw = bank.shape[1], bank.shape[3], bank.shape[4]
    mult = c_out // c
    r3 = r if r.ndim == 3 else np.repeat(r[:, :, None], c_out, axis=2)
    kernels = np.einsum("bic,ickl->bckl", r3, bank[:, :, 0])
    if s is not None:
        kernels = kernels * s.reshape(n_batch, 1, kh, kw)
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n_batch, c_out, oh, ow))
    for b in range(n_batch):
        for co in range(c_out):
            for i in range(kh):
                for j in range(kw):
                    rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
                    patch = xp[b, co // mult, rows, j * dw:j * dw + sw * (ow - 1) + 1:sw]
                    y[b, co] += kernels[b, co, i, j] * patch
    return y


@st.composite
def depthwise_cases(draw):
    c, mult = draw(st.integers(2, 3)), draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 6))
    w = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 6))
    n_batch, experts = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    per_channel, spatial = draw(st.booleans()), draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((n_batch, c, h, w))
    bank = rng.standard_normal((experts, c * mult, 1, kh, kw))
    r = rng.uniform(0.1, 1.0, (n_batch, experts, c * mult) if per_channel else (n_batch, experts))
    s = rng.uniform(0.2, 1.5, (n_batch, kh * kw)) if spatial else None
    return x, bank, r, s, stride, padding, dilation


def _call(x, bank, r, s, geometry, device="cpu", requires_grad=False):
    stride, padding, dilation = geometry

    def fn(x, bank, r, *s):
        return F.dynamic_conv2d(x, bank, r, stride, padding, x.shape[1], dilation, spatial=s[0] if s else None)

    tensors = [mc.tensor(a, requires_grad=requires_grad, device=device) for a in (x, bank, r)]
    if s is not None:
        tensors.append(mc.tensor(s, requires_grad=requires_grad, device=device))
    return fn, tensors


@settings(max_examples=30, deadline=None)
@given(depthwise_cases())
def test_dynamic_depthwise_matches_literal_and_finite_differences(case):
    x, bank, r, s, *geometry = case
    fn, tensors = _call(x, bank, r, s, geometry, requires_grad=True)
    np.testing.assert_allclose(fn(*tensors).numpy(), literal(x, bank, r, s, *geometry), rtol=1e-12, atol=1e-12)
    gradcheck(fn, *tensors, name="dynamic_conv2d depthwise")


@settings(max_examples=15, deadline=None)
@given(depthwise_cases())
def test_dynamic_depthwise_matches_the_reference_backend(case):
    x, bank, r, s, *geometry = case
    results = []
    for device in ("cpu", "reference"):
        fn, tensors = _call(x, bank, r, s, geometry, device=device, requires_grad=True)
        y = fn(*tensors)
        y.backward(mc.tensor(np.random.default_rng(1).normal(size=y.shape), device=device))
        results.append([y.numpy()] + [t.grad.numpy() for t in tensors])
    for name, got, want in zip(["y", "dx", "dbank", "dr", "ds"], results[0], results[1]):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11, err_msg=name)


def test_routing_per_output_channel_has_the_right_shape():
    x, bank = mc.randn(2, 3, 4, 4), mc.randn(2, 3, 1, 3, 3)
    with pytest.raises(ValueError, match=r"routing must be \(N, n\) = \(2, 2\) or \(N, n, C'\) = \(2, 2, 3\), "
                                         r"got \(2, 2, 4\)"):
        F.dynamic_conv2d(x, bank, mc.randn(2, 2, 4), 1, 1, 3)


def test_odconv_depthwise_folds_the_channel_attention_exactly():
    """ODConv's depthwise form (alpha_c folded into the mixing weights) equals its literal kernels."""
    mc.manual_seed(3)
    layer = nn.ODConv2d(6, 6, 3, 2, 1, groups=6, experts=3).double()
    x = mc.randn(3, 6, 7, 7).double()
    with mc.no_grad():
        kernels = layer.per_sample_kernels(*layer.attentions(x))
        expected = F.per_sample_conv2d(x, kernels, layer.stride, layer.padding, layer.groups).numpy()
        np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-12, atol=1e-12)
