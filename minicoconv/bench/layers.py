"""Layer benchmarks: representative layers of the CIFAR models, ours against PyTorch's.

`bench_layers`: forward + backward (input and parameter gradients) of the static
layers the models spend their time in: ResNet18-CIFAR's 3x3 convolutions at each
stage, MobileNetV2's depthwise convolutions, BatchNorm2d, 2x2 max pooling and
adaptive average pooling.

`bench_dynamic`: CondConv2d, DyConv2d and CoConv2d at the same shapes, training
form (forward + backward) and inference (eval mode, no_grad, `nn.fuse`), each
against a static convolution of the same shape timed in the same round-robin.

FLOP convention: a convolution's forward costs 2 * MACs FLOPs, MACs = N * C' *
H' * W' * (C/g) * kh * kw; forward + backward counts 3 x forward (dX and dW each
cost one forward's worth of multiply-adds). GFLOP/s is reported for
convolutions only. Ratios are taken between the minimum times (see timing.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import creation, nn
from ..autograd import no_grad
from .timing import measure_interleaved

#: how each layer benchmark names its time columns
OURS, TORCH = "ours", "torch"

#: targets (the issue's targets): dynamic layer / static conv of the same shape, min times
DYNAMIC_TARGETS = {("coconv", "inference"): 1.35, ("condconv", "train"): 1.5, ("dycnn", "train"): 1.5}


@dataclass(frozen=True)
class LayerCase:
    """One layer at one input shape. kind: conv | batchnorm | maxpool | adaptive_avgpool."""

    name: str
    kind: str
    channels: int                # input channels C
    size: int                    # input H = W
    out_channels: int = 0        # conv: C'
    kernel: int = 3              # conv / pool kernel; adaptive pool: output size
    stride: int = 1
    groups: int = 1

    def input_shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, self.channels, self.size, self.size)


def conv(name, cin, cout, size, stride=1, groups=1) -> LayerCase:
    return LayerCase(name, "conv", cin, size, cout, 3, stride, groups)


#: ResNet18-CIFAR's 3x3 convs per stage, MobileNetV2-CIFAR's depthwise convs, norm and pooling
LAYER_CASES = (
    conv("conv3x3 64->64 (resnet18 stage 1)", 64, 64, 32),
    conv("conv3x3 128->128 (resnet18 stage 2)", 128, 128, 16),
    conv("conv3x3 256->256 (resnet18 stage 3)", 256, 256, 8),
    conv("conv3x3 512->512 (resnet18 stage 4)", 512, 512, 4),
    conv("depthwise3x3 192 (mobilenetv2)", 192, 192, 16, 1, 192),
    conv("depthwise3x3 144 stride 2 (mobilenetv2)", 144, 144, 32, 2, 144),
    LayerCase("batchnorm2d 64", "batchnorm", 64, 32),
    LayerCase("maxpool 2x2", "maxpool", 64, 32, kernel=2),
    LayerCase("adaptive avgpool ->1x1", "adaptive_avgpool", 512, 4, kernel=1),
    LayerCase("adaptive avgpool ->3x3 (coconv routing)", "adaptive_avgpool", 64, 32, kernel=3),
)

#: the shapes at which dynamic layers are compared with a static conv (all 3x3, padding 1)
DYNAMIC_CASES = (
    conv("64->64 32x32 (resnet18 stage 1)", 64, 64, 32),
    conv("128->128 16x16 (resnet18 stage 2)", 128, 128, 16),
    conv("256->256 8x8 (resnet18 stage 3)", 256, 256, 8),
    conv("512->512 4x4 (resnet18 stage 4)", 512, 512, 4),
    conv("depthwise 192 16x16 (mobilenetv2)", 192, 192, 16, 1, 192),
)


def conv_flops(case: LayerCase, batch: int) -> int:
    """Forward FLOPs (2 x MACs) of a conv case."""
    out = (case.size + 2 - case.kernel) // case.stride + 1
    return 2 * batch * case.out_channels * out * out * (case.channels // case.groups) * case.kernel ** 2


# ---- building the layers ------------------------------------------------------------------
def build_ours(case: LayerCase, conv_type: str = "static", experts: int = 4):
    if case.kind == "conv":
        args = (case.channels, case.out_channels, case.kernel, case.stride, 1)
        if conv_type == "static":
            return nn.Conv2d(*args, groups=case.groups, bias=False)
        cls = {"condconv": nn.CondConv2d, "dycnn": nn.DyConv2d, "coconv": nn.CoConv2d}[conv_type]
        return cls(*args, groups=case.groups, experts=experts)
    if case.kind == "batchnorm":
        return nn.BatchNorm2d(case.channels)
    if case.kind == "maxpool":
        return nn.MaxPool2d(case.kernel)
    if case.kind == "adaptive_avgpool":
        return nn.AdaptiveAvgPool2d(case.kernel)
    raise ValueError(f"unknown layer kind {case.kind!r}")


def build_torch(case: LayerCase, torch, conv_type: str = "static", experts: int = 4):
    from ..interop import torch_layers as ref

    tnn = torch.nn
    if case.kind == "conv":
        return ref.conv_factory(conv_type, experts)(case.channels, case.out_channels, case.kernel, case.stride, 1,
                                                    case.groups)
    if case.kind == "batchnorm":
        return tnn.BatchNorm2d(case.channels)
    if case.kind == "maxpool":
        return tnn.MaxPool2d(case.kernel)
    if case.kind == "adaptive_avgpool":
        return tnn.AdaptiveAvgPool2d(case.kernel)
    raise ValueError(f"unknown layer kind {case.kind!r}")


# ---- one timed call ---------------------------------------------------------------------------
def ours_train_step(layer, shape: tuple, device: str) -> Callable[[], None]:
    """forward + backward with respect to the input and every parameter."""
    x = creation.randn(*shape, device=device, requires_grad=True)
    with no_grad():
        out_shape = layer(x).shape
    gy = creation.randn(*out_shape, device=device)
    params = list(layer.parameters())

    def step():
        x.grad = None
        for p in params:
            p.grad = None
        layer(x).backward(gy)
    return step


def ours_infer_step(layer, shape: tuple, device: str) -> Callable[[], None]:
    """eval mode, the fused form, no graph."""
    layer.eval()
    fused = nn.fuse(layer)
    x = creation.randn(*shape, device=device)

    def step():
        with no_grad():
            fused(x)
    return step


def torch_train_step(layer, shape: tuple, torch, device: str) -> Callable[[], None]:
    layer.to(device)
    x = torch.randn(*shape, device=device, requires_grad=True)
    with torch.no_grad():
        gy = torch.randn_like(layer(x))

    def step():
        x.grad = None
        layer.zero_grad(set_to_none=True)
        layer(x).backward(gy)
    return step


def torch_infer_step(layer, shape: tuple, torch, device: str) -> Callable[[], None]:
    layer.to(device).eval()
    x = torch.randn(*shape, device=device)

    def step():
        with torch.no_grad():
            layer(x)
    return step


# ---- the benchmarks -------------------------------------------------------------------------
@dataclass
class Setup:
    """Where and how to run: our device, PyTorch (module or None) and its device, timing options."""

    device: str = "cpu"
    torch: object = None
    torch_device: str = "cpu"
    repeats: int = 5
    warmup: int = 1
    sync: Callable[[], None] | None = None
    torch_sync: Callable[[], None] | None = None

    def measure(self, fns: dict) -> dict:
        syncs = {k: (self.torch_sync if k.startswith(TORCH) else self.sync) for k in fns}
        return measure_interleaved(fns, self.repeats, self.warmup, syncs)


def _ratio(a, b):
    return a / b if a is not None and b else None


def bench_layers(setup: Setup, batch: int = 32, cases=None, progress=None) -> list[dict]:
    """One row per case (default LAYER_CASES): ms (median, min), GFLOP/s, PyTorch's ms, ratio ours / PyTorch."""
    rows = []
    for case in LAYER_CASES if cases is None else cases:
        shape = case.input_shape(batch)
        fns = {OURS: ours_train_step(build_ours(case).to(setup.device), shape, setup.device)}
        if setup.torch is not None:
            fns[TORCH] = torch_train_step(build_torch(case, setup.torch), shape, setup.torch, setup.torch_device)
        t = setup.measure(fns)
        ours, theirs = t[OURS], t.get(TORCH)
        flops = 3 * conv_flops(case, batch) if case.kind == "conv" else None
        rows.append({
            "layer": case.name, "input": "x".join(map(str, shape)),
            "ms": ours.median_ms, "min_ms": ours.min_ms,
            "gflops": flops / ours.min_ms / 1e6 if flops else None,
            "torch_ms": theirs.median_ms if theirs else None, "torch_min_ms": theirs.min_ms if theirs else None,
            "torch_gflops": flops / theirs.min_ms / 1e6 if flops and theirs else None,
            "ratio": _ratio(ours.min_ms, theirs.min_ms if theirs else None),
        })
        if progress:
            progress(f"layer {case.name}: {ours.min_ms:.2f} ms")
    return rows


DYNAMIC_TYPES = ("condconv", "dycnn", "coconv")


def bench_dynamic(setup: Setup, batch: int = 32, experts: int = 4, cases=None, progress=None) -> list[dict]:
    """Per shape (default DYNAMIC_CASES) and mode (train = forward + backward, inference = eval + fused +
    no_grad): every dynamic layer's time, its ratio to our static conv of the same shape, ours / PyTorch's."""
    rows = []
    for case in DYNAMIC_CASES if cases is None else cases:
        shape = case.input_shape(batch)
        for mode in ("train", "inference"):
            fns = {}
            for kind in ("static", *DYNAMIC_TYPES):
                layer = build_ours(case, kind, experts).to(setup.device)
                fns[f"{OURS} {kind}"] = (ours_train_step(layer, shape, setup.device) if mode == "train"
                                         else ours_infer_step(layer, shape, setup.device))
                if setup.torch is not None:
                    tl = build_torch(case, setup.torch, kind, experts)
                    fns[f"{TORCH} {kind}"] = (torch_train_step(tl, shape, setup.torch, setup.torch_device)
                                              if mode == "train" else
                                              torch_infer_step(tl, shape, setup.torch, setup.torch_device))
            t = setup.measure(fns)
            static = t[f"{OURS} static"]
            for kind in ("static", *DYNAMIC_TYPES):
                ours, theirs = t[f"{OURS} {kind}"], t.get(f"{TORCH} {kind}")
                vs_static = ours.min_ms / static.min_ms
                target = DYNAMIC_TARGETS.get((kind, mode))
                rows.append({
                    "shape": case.name, "layer": kind, "mode": mode,
                    "ms": ours.median_ms, "min_ms": ours.min_ms,
                    "vs_static": vs_static if kind != "static" else None,
                    "target": target, "meets": (vs_static <= target) if target else None,
                    "torch_ms": theirs.median_ms if theirs else None,
                    "torch_min_ms": theirs.min_ms if theirs else None,
                    "ratio": _ratio(ours.min_ms, theirs.min_ms if theirs else None),
                })
            if progress:
                progress(f"dynamic {case.name} {mode}: static {static.min_ms:.2f} ms")
    return rows

