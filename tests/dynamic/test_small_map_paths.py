"""The two paths of the dynamic convolution op, each forced explicitly (ops/dynamic_conv.py).

- small maps: backend.mixture_conv2d_forward/_backward (CPU: one Numba pass per direction,
  backend/cpu/mixture_conv.py, never holding a whole per-sample kernel);
- chunked: backend.aggregate_kernels (+ _backward) and the per-sample conv, in chunks.

Both must give the literal semantics y_b = conv(x_b, s_b * sum_i coef_bi W_i), with coef
(N, n) (CondConv, DY-CNN) or (N, n, C') (CoConv's fused form) and an optional spatial
factor s (N, kh*kw) (ODConv), the same gradients (float64 finite differences), whatever
SMALL_MAP_PIXELS selects. The backend's generic forms (what the CUDA backend runs) are
checked against the CPU kernels.
"""

from __future__ import annotations

import numpy as np
import pytest
from dyn_helpers import exercise_bn, make_layer, one_numba_thread  # noqa: F401  (a fixture, requested by name)
from test_dynamic_gradcheck import conv_reference

import minicoconv as mc
import minicoconv.ops.dynamic_conv as dynamic_conv_op
from minicoconv import nn
from minicoconv.autograd import no_grad
from minicoconv.backend.base import Backend
from minicoconv.backend.cpu import CPUBackend, mixture_aggregate, mixture_conv
from minicoconv.testing import gradcheck

pytestmark = pytest.mark.usefixtures("one_numba_thread")

# (cin, cout, kernel, stride, padding, dilation, size, experts, batch): the output maps have
# 1 to 25 pixels, so both sides of SMALL_MAP_PIXELS = 16; channel and pixel counts that are
# not multiples of four (the kernels' 4 x 4 blocks), batches and expert counts that are not
# multiples of four (their four-sample, four-expert passes)
GEOMETRIES = [
    (3, 4, (3, 3), 1, 1, 1, (4, 4), 3, 3),
    (2, 5, (3, 3), 2, 0, 1, (5, 6), 5, 2),
    (3, 3, (3, 3), 1, 2, 2, (3, 4), 2, 5),
    (1, 2, (3, 3), 1, 1, 1, (1, 1), 1, 1),
    (4, 6, (1, 3), 1, 1, 1, (3, 2), 4, 4),
    (2, 3, (3, 3), 1, 1, 1, (5, 5), 4, 6),
]


def _id(g) -> str:
    cin, cout, k, s, p, d, size, n, batch = g
    return f"c{cin}-{cout}_k{k[0]}x{k[1]}_s{s}_p{p}_d{d}_{size[0]}x{size[1]}_n{n}_b{batch}"


def _data(geometry, per_channel: bool, seed: int = 0):
    cin, cout, kernel, _, _, _, size, n, batch = geometry
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, cin, *size))
    bank = rng.normal(size=(n, cout, cin, *kernel))
    coef = rng.normal(size=(batch, n, cout) if per_channel else (batch, n))
    return x, bank, coef


def _kernels(bank, coef, spatial=None):
    k = np.einsum("bic,ic...->bc...", coef, bank) if coef.ndim == 3 else np.einsum("bi,i...->b...", coef, bank)
    return k if spatial is None else k * spatial.reshape(k.shape[0], 1, 1, *bank.shape[3:])


def _spatial(geometry, seed=7):
    kernel, batch = geometry[2], geometry[8]
    return np.random.default_rng(seed).uniform(0.2, 1.5, (batch, kernel[0] * kernel[1]))


def _op(small_map, stride, padding, dilation):
    def fn(x, bank, coef, spatial=None):
        args = ((stride, stride), (padding, padding), (dilation, dilation), 1)
        return dynamic_conv_op.DynamicConv2d.apply(x, bank, coef, spatial, *args, small_map=small_map)
    return fn


def _forward_backward(fn, *arrays, seed=1):
    tensors = [mc.Tensor(a, requires_grad=True) for a in arrays]
    y = fn(*tensors)
    y.backward(mc.Tensor(np.random.default_rng(seed).normal(size=y.shape)))
    return [y.numpy()] + [t.grad.numpy() for t in tensors]


@pytest.mark.parametrize("spatial", [False, True], ids=["", "spatial"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-expert", "per-channel"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=_id)
def test_both_paths_match_the_literal_convolution(geometry, per_channel, spatial):
    _, _, _, stride, padding, dilation, _, _, batch = geometry
    arrays = (*_data(geometry, per_channel), *((_spatial(geometry),) if spatial else ()))
    kernels = _kernels(*arrays[1:])
    x = arrays[0]
    expected = np.stack([conv_reference(x[b], kernels[b], stride, padding, dilation, 1) for b in range(batch)])
    for small_map in (True, False):
        y = _op(small_map, stride, padding, dilation)(*(mc.Tensor(a) for a in arrays)).numpy()
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12, err_msg=f"small_map={small_map}")


@pytest.mark.parametrize("spatial", [False, True], ids=["", "spatial"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-expert", "per-channel"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=_id)
def test_both_paths_give_the_same_gradients(geometry, per_channel, spatial):
    _, _, _, stride, padding, dilation, _, _, _ = geometry
    arrays = (*_data(geometry, per_channel), *((_spatial(geometry),) if spatial else ()))
    small = _forward_backward(_op(True, stride, padding, dilation), *arrays)
    chunked = _forward_backward(_op(False, stride, padding, dilation), *arrays)
    for name, a, b in zip(["y", "dx", "dbank", "dcoef", "ds"], small, chunked):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("small_map", [True, False], ids=["small-map", "chunked"])
@pytest.mark.parametrize("spatial, per_channel", [(False, False), (False, True), (True, False)],
                         ids=["per-expert", "per-channel", "spatial"])
@pytest.mark.parametrize("geometry", GEOMETRIES[:4], ids=_id)
def test_gradcheck(geometry, per_channel, spatial, small_map):
    _, _, _, stride, padding, dilation, _, _, _ = geometry
    arrays = (*_data(geometry, per_channel), *((_spatial(geometry),) if spatial else ()))
    gradcheck(_op(small_map, stride, padding, dilation), *(mc.Tensor(a, requires_grad=True) for a in arrays),
              name=f"dynamic_conv2d small_map={small_map} spatial={spatial} {_id(geometry)}")


def test_gradients_only_where_asked():
    geometry = GEOMETRIES[0]
    x, bank, coef = _data(geometry, per_channel=False)
    for small_map in (True, False):
        xt, bt, ct = mc.Tensor(x, requires_grad=True), mc.Tensor(bank), mc.Tensor(coef, requires_grad=True)
        _op(small_map, 1, 1, 1)(xt, bt, ct).sum().backward()
        assert xt.grad is not None and ct.grad is not None and bt.grad is None


def test_selection_rule(monkeypatch):
    """SMALL_MAP_PIXELS picks the path; grouped convolutions always take the chunked one."""
    calls = []
    original = CPUBackend.mixture_conv2d_forward

    def counted(*args):
        calls.append(args[0].shape)
        return original(*args)

    monkeypatch.setattr(CPUBackend, "mixture_conv2d_forward", staticmethod(counted))
    monkeypatch.setattr(dynamic_conv_op, "SMALL_MAP_PIXELS", 16)
    rule = dynamic_conv_op.uses_small_map_path
    args = ((1, 1), (1, 1), (1, 1))
    assert rule((2, 8, 4, 4), (3, 8, 8, 3, 3), *args, 1)          # 16 pixels
    assert not rule((2, 8, 5, 4), (3, 8, 8, 3, 3), *args, 1)      # 20 pixels
    assert not rule((2, 8, 4, 4), (3, 8, 4, 3, 3), *args, 2)      # grouped
    assert rule((2, 8, 8, 8), (3, 8, 8, 3, 3), (2, 2), (1, 1), (1, 1), 1)  # stride 2: 4x4 out

    layer = make_layer("condconv", 3, 4).double()
    with no_grad():
        layer(mc.Tensor(np.ones((2, 3, 4, 4))))
        layer(mc.Tensor(np.ones((2, 3, 5, 5))))
    assert calls == [(2, 3, 4, 4)]
    monkeypatch.setattr(dynamic_conv_op, "SMALL_MAP_PIXELS", 25)
    with no_grad():
        layer(mc.Tensor(np.ones((2, 3, 5, 5))))
    assert calls == [(2, 3, 4, 4), (2, 3, 5, 5)]


def test_small_map_path_refuses_groups():
    x, bank = mc.Tensor(np.ones((2, 4, 3, 3))), mc.Tensor(np.ones((3, 4, 2, 3, 3)))
    with pytest.raises(ValueError, match="small-map path needs groups = 1"):
        dynamic_conv_op.DynamicConv2d.apply(x, bank, mc.Tensor(np.ones((2, 3))), None, (1, 1), (1, 1), (1, 1), 2,
                                            small_map=True)


@pytest.mark.parametrize("kind", ["condconv", "dycnn"])
@pytest.mark.parametrize("pixels", [0, 1000], ids=["chunked", "small-map"])
def test_layer_gradcheck_on_each_path(kind, pixels, monkeypatch):
    """CondConv / DY-CNN w.r.t. input and every parameter, on a 3x3 map, with the rule forced either way."""
    from dyn_helpers import layer_gradcheck

    monkeypatch.setattr(dynamic_conv_op, "SMALL_MAP_PIXELS", pixels)
    layer = make_layer(kind, 3, 5, experts=3, bias=True).double()
    layer_gradcheck(layer, np.random.default_rng(2).normal(size=(2, 3, 3, 3)))


@pytest.mark.parametrize("pixels", [0, 1000], ids=["chunked", "small-map"])
def test_odconv_on_each_path(pixels, monkeypatch):
    """ODConv (spatial factor) w.r.t. input and every parameter, and its fused form, with the rule forced either way."""
    from dyn_helpers import layer_gradcheck

    monkeypatch.setattr(dynamic_conv_op, "SMALL_MAP_PIXELS", pixels)
    mc.manual_seed(0)
    layer = nn.ODConv2d(3, 5, 3, padding=1, experts=3).double()
    x = np.random.default_rng(2).normal(size=(2, 3, 3, 3))
    layer_gradcheck(layer, x)
    layer.eval()
    with no_grad():
        fused, reference = nn.fuse(layer)(mc.Tensor(x)).numpy(), layer(mc.Tensor(x)).numpy()
    np.testing.assert_allclose(fused, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pixels", [0, 1000], ids=["chunked", "small-map"])
def test_fused_coconv_on_each_path(pixels, monkeypatch):
    """Fused CoConv (per-channel weights r * a) equals the eval-mode training form on either path."""
    monkeypatch.setattr(dynamic_conv_op, "SMALL_MAP_PIXELS", pixels)
    layer = make_layer("coconv", 6, 9, experts=3, bias=True)
    exercise_bn(layer, (5, 6, 4, 4))
    layer.eval()
    x = mc.Tensor(np.random.default_rng(3).normal(0.5, 1.5, (5, 6, 4, 4)).astype(np.float32))
    with no_grad():
        fused, reference = nn.fuse(layer)(x).numpy(), layer(x).numpy()
    assert np.abs(fused - reference).max() <= 4e-6 * np.abs(reference).max()


# ---- the backend functions ------------------------------------------------------------------------
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-expert", "per-channel"])
@pytest.mark.parametrize("batch, experts", [(1, 1), (3, 2), (4, 4), (6, 5), (9, 8)])
def test_aggregate_kernels(batch, experts, per_channel):
    """The CPU mixture against einsum, its backward against einsum, and every sample's kernel
    bit-identical whatever batch it is aggregated in (four-sample passes pad with the last sample)."""
    rng = np.random.default_rng(batch * 10 + experts)
    bank = rng.normal(size=(experts, 5, 3, 3, 2))
    coef = rng.normal(size=(batch, experts, 5) if per_channel else (batch, experts))
    dk = rng.normal(size=(batch, 5, 3, 3, 2))
    kernels = mixture_aggregate.aggregate_kernels(bank, coef)
    np.testing.assert_allclose(kernels, _kernels(bank, coef), rtol=1e-13, atol=1e-13)
    for b in range(batch):
        np.testing.assert_array_equal(mixture_aggregate.aggregate_kernels(bank, coef[b:b + 1])[0], kernels[b])
    dbank, dcoef = mixture_aggregate.aggregate_kernels_backward(dk, bank, coef)
    expected_dbank = (np.einsum("bic,bc...->ic...", coef, dk) if per_channel
                      else np.einsum("bi,b...->i...", coef, dk))
    expected_dcoef = np.einsum("bcxyz,icxyz->bic", dk, bank)
    np.testing.assert_allclose(dbank, expected_dbank, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dcoef, expected_dcoef if per_channel else expected_dcoef.sum(axis=2), rtol=1e-13,
                               atol=1e-13)
    into = np.ones_like(bank)  # accumulating into a given dbank: in place on the CPU, like the generic form
    got, _ = mixture_aggregate.aggregate_kernels_backward(dk, bank, coef, True, False, into)
    generic, _ = Backend.aggregate_kernels_backward(CPUBackend(), dk, bank, coef, True, False, np.ones_like(bank))
    assert got is into
    np.testing.assert_allclose(got, expected_dbank + 1, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(generic, expected_dbank + 1, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-expert", "per-channel"])
def test_generic_backend_forms_match_the_cpu_kernels(per_channel):
    """Backend's generic aggregate_kernels / mixture_conv2d_* (the CUDA backend's path) equal the CPU kernels."""
    cpu = CPUBackend()
    x, bank, coef = _data(GEOMETRIES[2], per_channel)
    s = _spatial(GEOMETRIES[2])
    args = ((1, 1), (2, 2), (2, 2))
    gy = np.random.default_rng(4).normal(size=mixture_conv.mixture_conv2d_forward(x, bank, coef, s, *args)[0].shape)
    dk = np.random.default_rng(5).normal(size=(x.shape[0], *bank.shape[1:]))
    grads = (True, True, True, True)
    pairs = [
        (Backend.aggregate_kernels(cpu, bank, coef), cpu.aggregate_kernels(bank, coef)),
        (Backend.aggregate_kernels_backward(cpu, dk, bank, coef), cpu.aggregate_kernels_backward(dk, bank, coef)),
        (Backend.mixture_conv2d_forward(cpu, x, bank, coef, s, *args)[0],
         cpu.mixture_conv2d_forward(x, bank, coef, s, *args)[0]),
        (Backend.mixture_conv2d_backward(cpu, gy, x, bank, coef, s, None, *args, *grads),
         cpu.mixture_conv2d_backward(gy, x, bank, coef, s, None, *args, *grads)),
        (Backend.mixture_conv2d_backward(cpu, gy, x, bank, coef, None, None, *args),
         cpu.mixture_conv2d_backward(gy, x, bank, coef, None, None, *args)),
    ]
    for generic, kernel in pairs:
        for a, b in zip(*(v if isinstance(v, tuple) else (v,) for v in (generic, kernel))):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-expert", "per-channel"])
def test_small_map_kernel_float32_tiles(per_channel):
    """A shape with several tasks and column blocks (K = 576 > 512), leftover channels and pixels, and a
    ragged four-sample pass, in float32 against float64; saved columns or recomputed give the same gradients."""
    rng = np.random.default_rng(6)
    x, bank = rng.normal(size=(7, 64, 3, 3)), rng.normal(size=(5, 38, 64, 3, 3)) * 0.1
    coef = rng.uniform(0.1, 1.0, (7, 5, 38) if per_channel else (7, 5))
    gy = rng.normal(size=(7, 38, 3, 3))
    args = ((1, 1), (1, 1), (1, 1))
    s = rng.uniform(0.5, 1.5, (7, 9))
    y64, saved = mixture_conv.mixture_conv2d_forward(x, bank, coef, s, *args)
    expected = np.stack([conv_reference(x[b], _kernels(bank, coef, s)[b], 1, 1, 1, 1) for b in range(7)])
    np.testing.assert_allclose(y64, expected, rtol=1e-11, atol=1e-11)
    y32, _ = mixture_conv.mixture_conv2d_forward(*(a.astype(np.float32) for a in (x, bank, coef, s)), *args)
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5 * np.abs(y64).max())
    grads = (True, True, True, True)
    with_saved = mixture_conv.mixture_conv2d_backward(gy, x, bank, coef, s, saved, *args, *grads)
    recomputed = mixture_conv.mixture_conv2d_backward(gy, x, bank, coef, s, None, *args, *grads)
    generic = Backend.mixture_conv2d_backward(CPUBackend(), gy, x, bank, coef, s, None, *args, *grads)
    for a, b, c in zip(with_saved, recomputed, generic):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-10)
