"""Parity of ODConv and DGC with PyTorch re-implementations written from docs/layers.md.

The PyTorch side follows the formulas, not our code:
- ODConv as in the paper's reference code: the four attentions from the pooled input
  (1x1 conv, BN, ReLU, heads / T), x scaled by alpha_c, one kernel per sample
  alpha_s * sum_i alpha_w[i] W_i run as ONE grouped convolution over the batch, the output
  scaled by alpha_f; a head is dropped (attention 1) by the DESIGN rule, decided here.
- DGC: BN + ReLU, per-head saliency generators, the pruning threshold as the m-th smallest
  saliency of a detached copy (torch.kthvalue), m from the DESIGN schedule computed here,
  H separate convolutions interleaved with torch.stack; lasso = sum_h mean(q_h).
Our parameters are copied; outputs, the input gradient and every parameter gradient are
compared over training steps and in eval mode, then the BN running statistics, in float64
(to rounding) and once in float32; the fused ODConv and the sparse DGC inference forms
against the PyTorch eval output.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

import minicoconv as mc
from minicoconv import nn
from minicoconv.autograd import no_grad
from minicoconv.nn.dynamic import (
    DGConv2d,
    FusedODConv2d,
    ODConv2d,
    SparseDGConv2d,
    dgc_lasso,
    set_dgc_progress,
)

#: float64: |ours - torch| <= RTOL64 * max|torch|; float32 (ours) against the float64 PyTorch truth
RTOL64, RTOL32 = 1e-9, 2e-5
BN_MOMENTUM, BN_EPS = 0.1, 1e-5


@pytest.fixture(autouse=True)
def one_thread(torch):
    """Tiny shapes: one Numba and one PyTorch thread (thread pools cost more than the work)."""
    previous = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    yield
    numba.set_num_threads(previous[0])
    torch.set_num_threads(previous[1])


def assert_close(ours: np.ndarray, theirs: np.ndarray, rtol: float, what: str) -> None:
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs {theirs.shape}"
    scale = float(np.abs(theirs).max())
    assert scale > 0, f"{what}: all zeros, the comparison would be vacuous"
    err = float(np.abs(ours - theirs).max())
    assert err <= rtol * scale, f"{what}: max |ours - torch| = {err:.3g} > {rtol} * {scale:.3g}"


def randomize(layer, seed: int) -> None:
    """Non-trivial BN affine parameters and biases (heads start at 0, DGC's gate bias at 1)."""
    rng = np.random.default_rng(seed)
    for name, p in layer.named_parameters():
        if name.endswith("bn.weight"):
            p.data = rng.uniform(0.5, 1.5, p.shape).astype(p.dtype)
        elif name.endswith("bias"):  # DGC's gate2_bias: distinct and positive, so saliencies do not tie
            p.data = (rng.uniform(0.5, 1.5, p.shape) if name.endswith("gate2_bias")
                      else rng.normal(0.0, 0.3, p.shape)).astype(p.dtype)


def torch_copy(torch, layer):
    """Our parameters (float64 leaves) and buffers by name."""
    params = {n: torch.tensor(p.numpy(), dtype=torch.float64, requires_grad=True) for n, p in layer.named_parameters()}
    buffers = {n: torch.tensor(b.numpy(), dtype=torch.float64) for n, b in layer.named_buffers()}
    return params, buffers


def torch_batch_norm(torch, p, buf, prefix, x, training):
    return torch.nn.functional.batch_norm(x, buf[prefix + "running_mean"], buf[prefix + "running_var"],
                                          p[prefix + "weight"], p[prefix + "bias"], training, BN_MOMENTUM, BN_EPS)


def torch_odconv(torch, p, buf, x, case, training):
    tF = torch.nn.functional
    n, c = x.shape[:2]
    cout, k, groups, experts = case["cout"], case["k"], case["groups"], case["experts"]
    h = torch.relu(torch_batch_norm(torch, p, buf, "bn.", tF.conv2d(x.mean(dim=(2, 3), keepdim=True),
                                                                    p["fc.weight"]), training))

    def head(name):
        return tF.conv2d(h, p[name + ".weight"], p[name + ".bias"]).flatten(1) / case["temperature"]

    ones = torch.ones(n, 1, dtype=x.dtype)
    alpha_c = torch.sigmoid(head("channel_head"))
    alpha_f = ones if c == groups == cout else torch.sigmoid(head("filter_head"))
    alpha_s = ones if k == 1 else torch.sigmoid(head("spatial_head"))
    alpha_w = ones if experts == 1 else torch.softmax(head("kernel_head"), dim=1)
    kernels = torch.einsum("bi,ioykl->boykl", alpha_w, p["weight"]) * alpha_s.reshape(n, 1, 1, k, k)
    xs = (x * alpha_c[:, :, None, None]).reshape(1, n * c, *x.shape[2:])
    y = tF.conv2d(xs, kernels.reshape(n * cout, c // groups, k, k), None, case["stride"], k // 2,
                  groups=n * groups)
    return y.reshape(n, cout, *y.shape[2:]) * alpha_f[:, :, None, None]


def pruned_by_schedule(channels: int, keep: float, progress: float) -> int:
    if progress < 1 / 12:
        return 0
    return round(channels * (1 - keep) * (1.5 * (progress - 1 / 12) if progress < 3 / 4 else 1))


def torch_dgc(torch, p, buf, x, case, training, pruned):
    """(output, lasso) of DGC with `pruned` channels zeroed per head and sample."""
    tF = torch.nn.functional
    u = torch.relu(torch_batch_norm(torch, p, buf, "bn.", x, training))
    pooled = u.mean(dim=(2, 3))
    ys, lasso = [], 0
    for h in range(case["heads"]):
        q = torch.relu(torch.relu(pooled @ p["gate1"][h].T) @ p["gate2"][h].T + p["gate2_bias"][h])
        lasso = lasso + q.mean()
        if pruned:
            # no (near) ties at the threshold, or the mask would be ambiguous; ties at 0 (ReLU) are
            # harmless: a zero saliency zeroes its channel whether pruned or not, with zero gradient
            ordered = torch.sort(q.detach(), dim=1).values
            gap = ordered[:, pruned] - ordered[:, pruned - 1]
            assert ((gap > 1e-4 * ordered.max()) | (ordered[:, pruned] == 0)).all(), "saliencies tie at the threshold"
            threshold = torch.kthvalue(q.detach(), pruned, dim=1, keepdim=True).values
            q = q * (q.detach() > threshold)
        ys.append(tF.conv2d(u * q[:, :, None, None], p["weight"][h], None, case["stride"], case["k"] // 2))
    return torch.stack(ys, dim=2).flatten(1, 2), lasso  # channel j*H + h = filter j of head h


def run_ours(layer, x, rng):
    layer.zero_grad()
    xo = mc.Tensor(x, requires_grad=True)
    y = layer(xo)
    cot = rng.normal(size=y.shape).astype(x.dtype)
    y.backward(mc.Tensor(cot))
    out = {"y": y.numpy(), "dx": xo.grad.numpy()}
    out.update({"d " + n: p.grad.numpy() for n, p in layer.named_parameters()})
    return out, cot


def run_torch(torch, forward, params, x, cot):
    for t in params.values():
        t.grad = None
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = forward(xt)
    y.backward(torch.tensor(cot, dtype=torch.float64))
    out = {"y": y.detach().numpy(), "dx": xt.grad.numpy()}
    out.update({"d " + n: t.grad.numpy() for n, t in params.items()})
    return out


def compare(torch, layer, forward, params, x, rng, rtol, label):
    ours, cot = run_ours(layer, x, rng)
    theirs = run_torch(torch, forward, params, x, cot)
    assert set(ours) == set(theirs)
    for name in theirs:
        assert_close(ours[name], theirs[name], rtol, f"{label}: {name}")
    return theirs["y"]


def check_layer(torch, layer, forward, shape, rtol, seed, progress=(None, None)):
    """Training steps, the BN running statistics, then eval mode and the fused (sparse) form.

    `forward(xt, training, progress)` is the PyTorch layer, `forward.state` its (params, buffers);
    `progress` has one entry per training step: the DGC progress to set (None: ODConv). DGC is
    evaluated fully pruned (progress 1, the inference setting).
    """
    params, buffers = forward.state
    rng = np.random.default_rng(seed)
    dtype = layer.weight.dtype
    layer.train()
    for step, prog in enumerate(progress):
        if prog is not None:
            set_dgc_progress(layer, prog)
        x = rng.normal(0.3, 1.0, shape).astype(dtype)
        compare(torch, layer, lambda xt, prog=prog: forward(xt, True, prog), params, x, rng, rtol, f"train {step}")
    for name, b in layer.named_buffers():
        assert_close(b.numpy(), buffers[name].numpy(), rtol, name)
    layer.eval()
    prog = None if progress[0] is None else 1.0
    if prog is not None:
        set_dgc_progress(layer, prog)
    x = rng.normal(0.3, 1.0, shape).astype(dtype)
    y = compare(torch, layer, lambda xt: forward(xt, False, prog), params, x, rng, rtol, "eval")
    with no_grad():
        fused = nn.fuse(layer)
        assert isinstance(fused, FusedODConv2d if isinstance(layer, ODConv2d) else SparseDGConv2d)
        assert_close(fused(mc.Tensor(x)).numpy(), y, rtol, f"{type(fused).__name__}")


# ---- ODConv ------------------------------------------------------------------------------

ODCONV_CASES = [  # (cin, cout, k, stride, groups, experts, temperature, size)
    (4, 6, 3, 1, 1, 3, 1.0, (5, 5)),
    (6, 6, 3, 2, 6, 2, 1.0, (5, 4)),     # depthwise: no filter attention
    (4, 6, 1, 1, 1, 3, 1.0, (4, 4)),     # 1x1: no spatial attention
    (4, 6, 3, 1, 1, 1, 1.0, (4, 5)),     # one kernel: no kernel attention
    (4, 8, 3, 2, 2, 2, 2.5, (6, 5)),     # groups, stride 2, temperature
    (6, 6, 1, 2, 6, 1, 1.0, (3, 3)),     # depthwise 1x1 with one kernel: only the channel attention
]


def _odconv_id(case) -> str:
    cin, cout, k, stride, groups, experts, t, _ = case
    return f"c{cin}-{cout}_k{k}_s{stride}_g{groups}_n{experts}_T{t}"


def make_odconv(torch, case, seed: int, float64: bool):
    cin, cout, k, stride, groups, experts, temperature, _ = case
    mc.manual_seed(seed)
    layer = ODConv2d(cin, cout, k, stride, k // 2, groups, experts=experts, temperature=temperature)
    randomize(layer, seed)
    if float64:
        layer.double()
    heads = ["channel_head"] + (["filter_head"] if not cin == groups == cout else []) + (
        ["spatial_head"] if k > 1 else []) + (["kernel_head"] if experts > 1 else [])
    expected = {"weight", "fc.weight", "bn.weight", "bn.bias"} | {f"{h}.{w}" for h in heads for w in ("weight",
                                                                                                       "bias")}
    assert {n for n, _ in layer.named_parameters()} == expected, "heads not dropped as docs/layers.md says"
    params, buffers = torch_copy(torch, layer)
    spec = dict(cout=cout, k=k, stride=stride, groups=groups, experts=experts, temperature=temperature)

    def forward(xt, training, _progress):
        return torch_odconv(torch, params, buffers, xt, spec, training)

    forward.state = params, buffers
    return layer, forward


@pytest.mark.parametrize("case", ODCONV_CASES, ids=_odconv_id)
def test_odconv_matches_torch_float64(torch, case):
    layer, forward = make_odconv(torch, case, seed=1, float64=True)
    check_layer(torch, layer, forward, (3, case[0], *case[7]), RTOL64, seed=2)


def test_odconv_matches_torch_float32(torch):
    case = (4, 8, 3, 2, 2, 3, 1.0, (6, 6))
    layer, forward = make_odconv(torch, case, seed=3, float64=False)
    check_layer(torch, layer, forward, (4, 4, 6, 6), RTOL32, seed=4)


# ---- DGC ---------------------------------------------------------------------------------

DGC_CASES = [  # (cin, cout, k, stride, heads, keep, size)
    (16, 8, 3, 1, 4, 0.5, (5, 5)),
    (16, 16, 3, 2, 2, 0.25, (6, 5)),
    (8, 8, 1, 1, 4, 0.75, (4, 4)),
    (16, 4, 3, 1, 1, 0.5, (3, 4)),
]
#: training progress per step: nothing pruned, part of the schedule, fully pruned
PROGRESS = (0.0, 0.4, 0.9)


def _dgc_id(case) -> str:
    cin, cout, k, stride, heads, keep, _ = case
    return f"c{cin}-{cout}_k{k}_s{stride}_H{heads}_keep{keep}"


def make_dgc(torch, case, seed: int, float64: bool, rtol: float = RTOL64):
    cin, cout, k, stride, heads, keep, _ = case
    mc.manual_seed(seed)
    layer = DGConv2d(cin, cout, k, stride, k // 2, heads=heads, keep=keep)
    randomize(layer, seed)
    if float64:
        layer.double()
    params, buffers = torch_copy(torch, layer)
    spec = dict(k=k, stride=stride, heads=heads)

    def forward(xt, training, progress):
        """PyTorch's DGC; also checks the schedule and our lasso term from the same x (ours runs first)."""
        pruned = pruned_by_schedule(cin, keep, progress)
        assert layer.pruned == pruned, f"progress {progress}: {layer.pruned} pruned, the schedule says {pruned}"
        y, lasso = torch_dgc(torch, params, buffers, xt, spec, training, pruned)
        assert layer.lasso.item() == pytest.approx(lasso.item(), rel=rtol), f"lasso at progress {progress}"
        return y

    forward.state = params, buffers
    return layer, forward


@pytest.mark.parametrize("case", DGC_CASES, ids=_dgc_id)
def test_dgc_matches_torch_float64(torch, case):
    layer, forward = make_dgc(torch, case, seed=5, float64=True)
    check_layer(torch, layer, forward, (3, case[0], *case[6]), RTOL64, seed=6, progress=PROGRESS)


def test_dgc_matches_torch_float32(torch):
    case = (16, 8, 3, 2, 4, 0.5, (6, 6))
    layer, forward = make_dgc(torch, case, seed=7, float64=False, rtol=RTOL32)
    check_layer(torch, layer, forward, (4, 16, 6, 6), RTOL32, seed=8, progress=PROGRESS)


def test_dgc_lasso_matches_torch(torch):
    """dgc_lasso over two stacked layers (the second's saliencies depend on the first): value and gradients."""
    cases = [(16, 16, 3, 1, 4, 0.5), (16, 8, 3, 2, 2, 0.25)]
    layers, forwards = zip(*(make_dgc(torch, (*c, None), seed=9 + i, float64=True) for i, c in enumerate(cases)))
    model = nn.Sequential(*layers)
    set_dgc_progress(model, 0.5)
    x = np.random.default_rng(11).normal(0.3, 1.0, (3, 16, 6, 6))
    xo = mc.Tensor(x, requires_grad=True)
    model(xo)
    lasso = dgc_lasso(model)
    assert nn.extra_loss(model).item() == pytest.approx(1e-5 * lasso.item(), rel=1e-12)
    lasso.backward()

    xt = torch.tensor(x, requires_grad=True)
    total, h = 0, xt
    for case, forward in zip(cases, forwards):
        pruned = pruned_by_schedule(case[0], case[5], 0.5)
        params, buffers = forward.state
        h, term = torch_dgc(torch, params, buffers, h, dict(k=case[2], stride=case[3], heads=case[4]), True, pruned)
        total = total + term
    total.backward()
    assert lasso.item() == pytest.approx(total.item(), rel=RTOL64)
    assert_close(xo.grad.numpy(), xt.grad.numpy(), RTOL64, "lasso: dx")
    for i, (layer, forward) in enumerate(zip(layers, forwards)):
        for name, p in layer.named_parameters():
            theirs = forward.state[0][name].grad
            if name == "weight" and i == 1:  # the last layer's kernels do not reach any lasso term
                assert p.grad is None or not np.abs(p.grad.numpy()).any()
                assert theirs is None or not theirs.abs().max().item()
                continue
            assert_close(p.grad.numpy(), theirs.numpy(), RTOL64, f"lasso: layer {i} d {name}")
