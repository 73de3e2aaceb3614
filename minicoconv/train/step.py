"""One training step and one evaluation pass: the two things a training loop repeats.

    loss, logits = train_step(model, optimizer, images, labels)     # forward, loss, backward, SGD
    metrics = evaluate(model, loader)                                # top-1, top-5, loss in eval mode
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..autograd import no_grad
from ..nn import functional as F
from ..nn.dynamic.hooks import extra_loss
from ..tensor import Tensor
from .metrics import RunningMean, topk_correct


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message says where, and which checkpoint was kept."""


def train_step(model, optimizer, images: Tensor, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """One SGD step on one batch: forward, loss, backward, update.

    images (N, 3, 32, 32), labels (N,) int64 -> (the batch's mean loss, logits (N, classes) as NumPy).
    The layers' extra loss terms (`nn.extra_loss`, e.g. a lasso on routing saliencies) are added
    to the loss. A NaN or infinite loss raises TrainingDiverged before anything is updated.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a non-finite loss is reported below
        logits = model(images)                    # forward: (N, 3, 32, 32) -> (N, classes)
        loss = F.cross_entropy(logits, labels)    # mean softmax cross-entropy over the batch
        extra = extra_loss(model)                 # layers' own loss terms from this forward, if any
        if extra is not None:
            loss = loss + extra
    value = loss.item()
    if not math.isfinite(value):
        raise TrainingDiverged(f"loss is {value}")
    optimizer.zero_grad()                         # forget the previous step's gradients
    loss.backward()                               # d loss / d p into p.grad, for every parameter p
    optimizer.step()                              # p <- p - lr * (momentum buffer of the gradient)
    return value, logits.numpy()


def evaluate(model, loader, device: str = "cpu", should_stop: Callable[[], bool] | None = None) -> dict[str, float]:
    """Top-1, top-5 (percent) and mean loss of `model` in eval mode over `loader`'s batches.

    Also "n", the images seen, and "nonfinite", how many of them got a NaN or infinite
    logit: top-1/top-5 of such outputs mean nothing, so callers must check it.
    """
    was_training = model.training
    model.eval()
    correct1 = correct5 = nonfinite = 0
    loss = RunningMean()
    try:  # NaN/inf outputs are counted and reported by the caller, not warned about op by op
        with no_grad(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for x, y in loader:
                logits = model(Tensor(x, device=device)).numpy()
                nonfinite += int((~np.isfinite(logits)).any(axis=1).sum())
                c1, c5 = topk_correct(logits, y, (1, 5))
                correct1, correct5 = correct1 + c1, correct5 + c5
                loss.update(_cross_entropy(logits, y), len(y))
                if should_stop is not None and should_stop():
                    raise KeyboardInterrupt
    finally:
        model.train(was_training)
    if loss.count == 0:  # an accuracy of nothing is not 0 %: say so rather than report it
        raise ValueError("evaluate: the loader yielded no images (an empty evaluation set?)")
    n = loss.count
    return {"top1": 100.0 * correct1 / n, "top5": 100.0 * correct5 / n, "loss": loss.mean, "n": loss.count,
            "nonfinite": nonfinite}


def nonfinite_parameters(model) -> list[str]:
    """Names of the parameters and buffers (BN running statistics) of `model` holding NaN or inf."""
    return [name for name, value in model.state_dict().items()
            if np.asarray(value).dtype.kind == "f" and not np.isfinite(value).all()]


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    log_p = z[np.arange(len(labels)), labels] - np.log(np.exp(z).sum(axis=1))
    return float(-log_p.mean())
