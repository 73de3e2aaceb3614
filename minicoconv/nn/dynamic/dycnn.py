"""DY-CNN, dynamic convolution (Chen et al. 2020), as used in the CoConv paper's comparisons.

    h = ReLU(Linear_{C->m}(GAP(x))),  m = max(C // reduction, 16)
    r = softmax(Linear_{m->n}(h) / temperature)               (N, n), rows sum to 1
    y_b = conv(x_b, sum_i r_bi W_i) + sum_i r_bi bias_i

`temperature` is a scalar buffer (saved in state_dict), settable during training. With
anneal=True the layer follows the DY-CNN paper's schedule in training (linear from 30 to 1
over the first 10 epochs, per iteration) through the `on_training_progress` hook;
`anneal_temperature` sets the schedule's value on every DyConv2d of a model by hand.
"""

from __future__ import annotations

from ..layers.linear import Linear
from ..module import Module
from .base import MixtureConv2d, global_avg_pool
from .hooks import TrainingProgress, register_scalar, scalar_buffer


class DyConv2d(MixtureConv2d):
    """DyConv2d(in, out, kernel_size, stride=1, padding=0, groups=1, bias=False, experts=4,
    reduction=16, temperature=1.0, anneal=False)."""

    temperature = scalar_buffer("temperature")
    routing_activation = "softmax"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, bias: bool = False, experts: int = 4, reduction: int = 16,
                 temperature: float = 1.0, anneal: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups, bias, experts)
        if reduction < 1:
            raise ValueError(f"DyConv2d: reduction must be >= 1, got {reduction}")
        if temperature <= 0:
            raise ValueError(f"DyConv2d: temperature must be > 0, got {temperature}")
        hidden = max(in_channels // reduction, 16)
        self.fc1 = Linear(in_channels, hidden)
        self.fc2 = Linear(hidden, experts)
        register_scalar(self, "temperature", float(temperature))
        self.anneal = bool(anneal)

    def routing_weights(self, x):
        """Per-sample expert weights r, (N, n), softmax over experts at the current temperature."""
        h = self.fc1(global_avg_pool(x)).relu()
        return (self.fc2(h) / self.temperature).softmax(axis=1)

    def on_training_progress(self, progress: TrainingProgress) -> None:
        """With anneal=True: the DY-CNN schedule's temperature at the current (fractional) epoch."""
        if self.anneal:
            self.temperature = dycnn_temperature(progress.fractional_epoch)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", temperature={self.temperature:g}"


def dycnn_temperature(epoch: float, start: float = 30.0, end: float = 1.0, epochs: float = 10.0) -> float:
    """The DY-CNN schedule: linear from `start` to `end` over the first `epochs` epochs, then `end`."""
    return end if epoch >= epochs else start + (end - start) * max(epoch, 0.0) / epochs


def anneal_temperature(model: Module, epoch: float, start: float = 30.0, end: float = 1.0,
                       epochs: float = 10.0) -> float:
    """Set every DyConv2d's temperature for (fractional) `epoch` (`dycnn_temperature`); returns it."""
    t = dycnn_temperature(epoch, start, end, epochs)
    for m in model.modules():
        if isinstance(m, DyConv2d):
            m.temperature = t
    return t
