"""Optimizers and learning-rate schedules."""

from .lr_scheduler import StepLR
from .sgd import SGD

__all__ = ["SGD", "StepLR"]
