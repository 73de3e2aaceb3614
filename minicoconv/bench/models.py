"""Model benchmarks: a full training step and fused inference, ours against PyTorch's.

Training step (batch N of 32x32 images): forward, cross-entropy, backward, SGD
step with momentum 0.9 and weight decay 5e-4 (the paper's recipe), gradients
cleared each step. Inference: eval mode, `nn.fuse(model)`, no_grad, after the BN
running statistics are set to those of the benchmark batch (an untrained model's
initial ones, mean 0 and variance 1, let activations grow layer after layer in eval
mode: a DGC ResNet18 overflows, since its saliencies grow with its input). The PyTorch
reference (`minicoconv/interop/torch_models.py`) is the same architecture, checked to have the
same number of parameters, timed round-robin with ours in the same process.

ODConv and DGC (`--conv odconv|dgc`) have references too (interop/torch_beyond.py). A DGC
model's training step adds DGC's lasso term (1e-5 x the sum of the saliency means), as
the trainer does; its inference is the sparse form (only the kept channels convolved).
DGC replaces dense convolutions only, so it has no MobileNetV2 (`unsupported`).

Peak memory is NumPy's: the most memory allocated by NumPy during one training
step above what existed before it (activations, gradients, scratch), measured
with tracemalloc in an extra, untimed step (see timing.py).
"""

from __future__ import annotations

import numpy as np

from .. import creation, models, nn
from ..autograd import no_grad
from ..nn import functional as F
from ..nn.dynamic.dgc import DGC_LASSO_WEIGHT
from ..nn.dynamic.hooks import extra_loss
from ..optim import SGD
from ..random import manual_seed
from ..tensor import Tensor
from .layers import OURS, TORCH, Setup
from .profile import op_profile
from .timing import numpy_peak_bytes

#: the conv types of the paper's comparisons: `--all` times every model with each of them
PAPER_CONVS = ("static", "condconv", "dycnn", "coconv")
#: the conv types with a PyTorch reference (minicoconv.interop): all of them
TORCH_CONVS = (*PAPER_CONVS, "odconv", "dgc")
#: model / conv combinations that cannot be built, and why
UNSUPPORTED = {("mobilenetv2", "dgc"): "DGC replaces dense convs only, and MobileNetV2's dynamic convs are depthwise"}
#: training-step targets, ours / PyTorch CPU at batch 32 (min times), per conv type; MobileNetV2's
#: dynamic convs are depthwise, where PyTorch's grouped form is efficient: its own, looser targets
TRAIN_TARGETS = {"static": 1.3, "coconv": 1.1, "condconv": 0.5, "dycnn": 0.5, "odconv": 0.5, "dgc": 1.5}
MOBILENET_TARGETS = {"condconv": 1.0, "dycnn": 1.0, "odconv": 1.0}


def train_target(model: str, conv: str) -> float | None:
    """The training-step target of a model / conv pair (ours / PyTorch), None where there is none."""
    if model == "mobilenetv2" and conv in MOBILENET_TARGETS:
        return MOBILENET_TARGETS[conv]
    return TRAIN_TARGETS.get(conv)
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4
IMAGE_SHAPE = (3, 32, 32)


def calibrate_bn(model, x, bn_class, no_grad_context) -> None:
    """Set every BN's running statistics to those of batch `x` (one no-grad forward with momentum 1)."""
    bns = [m for m in model.modules() if isinstance(m, bn_class)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 1.0
    model.train()
    try:
        with no_grad_context():
            model(x)
    finally:
        for m, momentum in zip(bns, saved):
            m.momentum = momentum


class OursRunner:
    """Our model on `device` with its optimizer, one fixed batch, and the two timed calls."""

    def __init__(self, name: str, conv: str, batch: int, experts: int, device: str, seed: int = 0):
        manual_seed(seed)
        self.model = models.build(name, conv=conv, experts=experts).to(device)
        self.opt = SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        self.x = creation.randn(batch, *IMAGE_SHAPE, device=device)
        self.t = Tensor(np.random.default_rng(seed).integers(0, 100, batch), dtype="int64", device=device)
        self.fused = None
        self.lasso = conv == "dgc"

    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def train_step(self) -> None:
        loss = F.cross_entropy(self.model(self.x), self.t)
        if self.lasso:
            loss = loss + extra_loss(self.model)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def prepare_inference(self) -> None:
        calibrate_bn(self.model, self.x, nn.BatchNorm2d, no_grad)
        self.model.eval()
        self.fused = nn.fuse(self.model)

    def infer_step(self) -> None:
        with no_grad():
            self.fused(self.x)


#: the PyTorch CUDA runner with PyTorch's default settings (cuDNN convolutions in TF32); TORCH is strict float32
TORCH_TF32 = "torch_tf32"


class TorchRunner:
    """The PyTorch reference of the same model, same calls.

    On CUDA, `tf32=False` runs strict float32 (TF32 off for cuDNN and matmuls), `tf32=None`
    leaves PyTorch's defaults (cuDNN may use TF32 tensor cores, matmuls do not).
    """

    def __init__(self, torch, name: str, conv: str, batch: int, experts: int, device: str, seed: int = 0,
                 tf32: bool | None = False):
        from ..interop import torch_models as ref

        self.torch = torch
        self.tf32 = tf32 if device == "cuda" else None
        torch.manual_seed(seed)
        self.model = ref.build(name, conv, experts).to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        self.x = torch.randn(batch, *IMAGE_SHAPE, device=device)
        self.t = torch.from_numpy(np.random.default_rng(seed).integers(0, 100, batch)).to(device)
        self.lasso = conv == "dgc"

    def _tf32(self):
        """A context setting PyTorch's TF32 switches for this runner's calls (nothing to set off CUDA)."""
        from contextlib import contextmanager

        backends = self.torch.backends

        @contextmanager
        def flags():
            if self.tf32 is None:
                yield
                return
            saved = backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32
            backends.cudnn.allow_tf32 = backends.cuda.matmul.allow_tf32 = self.tf32
            try:
                yield
            finally:
                backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = saved
        return flags()

    def train_step(self) -> None:
        with self._tf32():
            loss = self.torch.nn.functional.cross_entropy(self.model(self.x), self.t)
            if self.lasso:
                from ..interop.torch_beyond import dgc_lasso

                loss = loss + DGC_LASSO_WEIGHT * dgc_lasso(self.model)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()

    def prepare_inference(self) -> None:
        calibrate_bn(self.model, self.x, self.torch.nn.modules.batchnorm._BatchNorm, self.torch.no_grad)
        self.model.eval()  # CoConv layers switch to their fused form in eval mode; DGC stays dense

    def infer_step(self) -> None:
        with self._tf32(), self.torch.no_grad():
            self.model(self.x)


def bench_model(setup: Setup, name: str, conv: str, batch: int = 32, experts: int = 4, memory: bool = True,
                profile: bool = False) -> dict:
    """One row: parameters, training-step and inference times, images/s, peak memory, ratios to PyTorch.

    With `profile`, row["profile"] holds the op-by-op breakdown of one extra training step.
    """
    if (name, conv) in UNSUPPORTED:
        raise ValueError(f"{name} with conv={conv!r}: {UNSUPPORTED[name, conv]}")
    ours = OursRunner(name, conv, batch, experts, setup.device)
    runners = {OURS: ours}
    if setup.torch is not None and conv in TORCH_CONVS:
        from ..interop.torch_models import check_same_params

        runners[TORCH] = TorchRunner(setup.torch, name, conv, batch, experts, setup.torch_device)
        check_same_params(ours.params(), runners[TORCH].model, f"{name} {conv}")
        if setup.torch_device == "cuda":  # PyTorch's default CUDA settings too (TF32 convolutions)
            runners[TORCH_TF32] = TorchRunner(setup.torch, name, conv, batch, experts, setup.torch_device, tf32=None)
    train = setup.measure({k: r.train_step for k, r in runners.items()})
    row = {"model": name, "conv": conv, "params": ours.params(), "batch": batch}
    if memory:
        row["peak_mb"] = numpy_peak_bytes(ours.train_step) / 2**20
    if profile:
        row["profile"] = [vars(r) for r in op_profile(ours.train_step, setup.sync)]
    for r in runners.values():
        r.prepare_inference()
    infer = setup.measure({k: r.infer_step for k, r in runners.items()})
    ours_train, ours_infer = train[OURS], infer[OURS]
    theirs_train, theirs_infer = train.get(TORCH), infer.get(TORCH)
    target = train_target(name, conv)
    ratio = ours_train.min_ms / theirs_train.min_ms if theirs_train else None
    row.update({
        "train_ms": ours_train.median_ms, "train_min_ms": ours_train.min_ms,
        "train_img_s": batch / ours_train.min_ms * 1e3,
        "infer_ms": ours_infer.median_ms, "infer_min_ms": ours_infer.min_ms,
        "infer_img_s": batch / ours_infer.min_ms * 1e3,
        "torch_train_ms": theirs_train.median_ms if theirs_train else None,
        "torch_train_min_ms": theirs_train.min_ms if theirs_train else None,
        "train_ratio": ratio, "target": target,
        "meets": (ratio <= target) if ratio is not None and target else None,
        "torch_infer_ms": theirs_infer.median_ms if theirs_infer else None,
        "torch_infer_min_ms": theirs_infer.min_ms if theirs_infer else None,
        "infer_ratio": ours_infer.min_ms / theirs_infer.min_ms if theirs_infer else None,
    })
    if TORCH_TF32 in train:
        row["torch_tf32_train_min_ms"] = train[TORCH_TF32].min_ms
        row["tf32_ratio"] = ours_train.min_ms / train[TORCH_TF32].min_ms
    return row
