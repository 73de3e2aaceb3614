"""Learning-rate schedules."""

from __future__ import annotations

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
        self.step_size, self.gamma = int(state["step_size"]), float(state["gamma"])
        self.base_lrs, self.last_epoch = list(state["base_lrs"]), int(state["last_epoch"])
