"""Helpers of the interop tests: non-trivial weights and BN statistics, and the comparison."""

from __future__ import annotations

import numpy as np

import minicoconv as mc
from minicoconv import nn
from minicoconv.autograd import no_grad


def randomize(model, seed: int = 0) -> None:
    """Distinct BN affine parameters and biases (fresh ones are 1 and 0: a mapping error would not show)."""
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if name.endswith("gate2_bias"):  # DGC: positive and distinct, so the saliencies do not tie
            p.data = rng.uniform(0.5, 1.5, p.shape).astype(p.dtype)
        elif isinstance(_owner(model, name), nn.BatchNorm2d) and name.endswith("weight"):
            p.data = rng.uniform(0.5, 1.5, p.shape).astype(p.dtype)
        elif name.endswith("bias"):
            p.data = rng.normal(0.0, 0.2, p.shape).astype(p.dtype)


def calibrate(model, x: np.ndarray) -> None:
    """BN running statistics = the statistics of one training batch (momentum 1), so eval mode is well scaled."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = 1.0
    model.train()
    with no_grad():
        model(mc.tensor(x))
    for bn in bns:
        bn.momentum = 0.1


def no_dropout(model) -> None:
    """Dropout to eval on either side: each side draws its own masks."""
    for m in model.modules():
        if type(m).__name__ == "Dropout":
            m.eval()


def outputs(model, tmodel, torch, x: np.ndarray, training: bool) -> tuple[np.ndarray, np.ndarray]:
    """Our output and PyTorch's on the same input, both in training or eval mode."""
    model.train(training)
    tmodel.train(training)
    no_dropout(model)
    no_dropout(tmodel)
    with no_grad():
        ours = model(mc.tensor(x)).numpy()
    with torch.no_grad():
        theirs = tmodel(torch.from_numpy(x)).numpy()
    return ours, theirs


def relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours - theirs| / max |theirs| (asserting both are finite and not all zero)."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert np.isfinite(theirs).all() and np.isfinite(ours).all()
    scale = float(np.abs(theirs).max())
    assert scale > 0
    return float(np.abs(ours - theirs).max()) / scale


def _owner(model, name: str):
    return dict(model.named_modules())[name.rpartition(".")[0]]
