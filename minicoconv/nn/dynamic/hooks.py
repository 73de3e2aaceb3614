"""Training hooks: how a layer follows the run's progress and adds a term to the loss.

A trainer knows no conv type. Before every step it calls `training_progress(model,
progress)`, which calls `on_training_progress(progress)` on every module that defines
it (DY-CNN's and ODConv's temperature schedules, DGC's pruning schedule); after the
forward it adds `extra_loss(model)` to the loss (DGC's lasso). A layer's schedule
state lives in scalar buffers (`scalar_buffer`), so it is saved and restored with the
model's state_dict and checkpoints need no per-layer keys. docs/extending.md shows how
a new layer uses these hooks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ... import functions
from ...tensor import Tensor
from ..module import Module


@dataclass(frozen=True)
class TrainingProgress:
    """Where a run stands before a step.

    epoch: completed epochs; step_in_epoch: completed steps of this epoch;
    global_step: completed steps of the run; steps_per_epoch, epochs: the run's length.
    """

    epoch: int
    step_in_epoch: int
    global_step: int
    steps_per_epoch: int
    epochs: int

    @property
    def fractional_epoch(self) -> float:
        """epoch + step_in_epoch / steps_per_epoch."""
        return self.epoch + self.step_in_epoch / self.steps_per_epoch

    @property
    def fraction(self) -> float:
        """global_step / (epochs * steps_per_epoch), the run's progress in [0, 1]."""
        return self.global_step / (self.epochs * self.steps_per_epoch)


def training_progress(model: Module, progress: TrainingProgress) -> None:
    """Call `on_training_progress(progress)` on every module of `model` that defines it."""
    for m in model.modules():
        hook = getattr(m, "on_training_progress", None)
        if hook is not None:
            hook(progress)


def extra_loss(model: Module) -> Tensor | None:
    """The sum of the layers' extra loss terms from the last forward, or None if there are none.

    A layer defines `extra_loss() -> Tensor | None` (an unweighted scalar) and the class
    attribute `extra_loss_weight`. Terms of equal weight are summed first and then scaled:
    weight * (t_1 + ... + t_k), one multiply per weight, as the papers write it.
    """
    groups: dict[float, list[Tensor]] = {}
    for m in model.modules():
        hook = getattr(m, "extra_loss", None)
        term = hook() if hook is not None else None
        if term is not None:
            groups.setdefault(float(m.extra_loss_weight), []).append(term)
    total = None
    for weight, terms in groups.items():
        part = weight * functions.stack(terms).sum()
        total = part if total is None else total + part
    return total


def scalar_buffer(name: str, kind: type = float) -> property:
    """A property reading and writing the 0-d buffer `name` as a Python `kind` (float or int).

    The layer registers the buffer in __init__ (`register_scalar(self, name, value)`); the
    value then travels with state_dict, load_state_dict and to(device).
    """

    def get(self):
        return kind(self._buffers[name].numpy())

    def set_(self, value) -> None:
        buf = self._buffers[name]
        buf.data = buf._backend.asarray(np.asarray(value, dtype=buf.dtype))

    return property(get, set_, doc=f"the {name} buffer as a Python {kind.__name__}")


def register_scalar(module: Module, name: str, value: float | int, dtype=np.float64) -> None:
    """Register the 0-d buffer `name` holding `value` (read it through `scalar_buffer`)."""
    module.register_buffer(name, Tensor(np.asarray(value, dtype=dtype)))
