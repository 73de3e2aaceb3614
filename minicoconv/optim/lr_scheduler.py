"""Learning-rate schedules."""

from __future__ import annotations

import math
from typing import Any

from .sgd import SGD


class StepLR:
    """lr = base_lr * gamma ** (epoch // step_size); call step() once per epoch (as PyTorch)."""

    def __init__(self, optimizer: SGD, step_size: int, gamma: float = 0.1):
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.optimizer, self.step_size, self.gamma = optimizer, step_size, gamma
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.last_epoch = 0

    def get_lr(self) -> list[float]:
        return [lr * self.gamma ** (self.last_epoch // self.step_size) for lr in self.base_lrs]

    def step(self) -> None:
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        return {"step_size": self.step_size, "gamma": self.gamma, "base_lrs": list(self.base_lrs),
                "last_epoch": self.last_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`'s output; ValueError (nothing changed) if any field is off."""
        def number(v: Any) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

        if not isinstance(state, dict):
            raise ValueError(f"StepLR.load_state_dict: expected a dict, got {type(state).__name__}")
        step, gamma, lrs, last = (state.get(k) for k in ("step_size", "gamma", "base_lrs", "last_epoch"))
        if not (isinstance(step, int) and not isinstance(step, bool) and step >= 1):
            raise ValueError(f"StepLR.load_state_dict: step_size must be an int >= 1, got {step!r}")
        if not (number(gamma) and gamma > 0):
            raise ValueError(f"StepLR.load_state_dict: gamma must be a number > 0, got {gamma!r}")
        if not (isinstance(lrs, list) and len(lrs) == len(self.optimizer.param_groups)
                and all(number(lr) and lr >= 0 for lr in lrs)):
            raise ValueError(f"StepLR.load_state_dict: base_lrs must be {len(self.optimizer.param_groups)} "
                             "number(s) >= 0")
        if not (isinstance(last, int) and not isinstance(last, bool) and last >= 0):
            raise ValueError(f"StepLR.load_state_dict: last_epoch must be an int >= 0, got {last!r}")
        self.step_size, self.gamma, self.base_lrs, self.last_epoch = step, float(gamma), list(lrs), last
