"""Validate a checkpoint's trainer state before a resumed run relies on it.

The `trainer` entry of a checkpoint is JSON that `Trainer.state()` wrote; a
damaged or hand-edited file can hold anything. Each field is checked for its
type (and numbers for range) here, so that a bad one is a CheckpointError
naming the file and the field, never a TypeError in the middle of training
or of the end-of-run report.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError

#: per-epoch record fields that the reports format as numbers (None when not measured)
NUMERIC_RECORD_FIELDS = ("lr", "train_loss", "train_top1", "val_top1", "val_top5", "val_loss", "test_top1",
                         "test_top5", "test_loss", "images_per_s", "train_seconds", "seconds")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _running_mean(path: Path, key: str, value: Any) -> dict[str, Any]:
    if not (isinstance(value, dict) and _is_number(value.get("total")) and _is_int(value.get("count"))
            and value["count"] >= 0):
        raise CheckpointError(f"{path}: trainer.{key} must be {{\"total\": number, \"count\": int >= 0}}, "
                              f"got {value!r:.200}")
    return value


def _record(path: Path, where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not _is_int(value.get("epoch")) or value["epoch"] < 1:
        raise CheckpointError(f"{path}: {where} must be an epoch record (a JSON object with an int 'epoch' >= 1)")
    bad = [k for k in NUMERIC_RECORD_FIELDS if value.get(k) is not None and not _is_number(value[k])]
    if bad:
        raise CheckpointError(f"{path}: {where} has non-numeric {', '.join(bad)}")
    return value


def check_trainer_state(path: Path, state: dict[str, Any], loader: dict[str, Any]) -> dict[str, Any]:
    """`state` with every field a resumed Trainer reads checked (defaults filled in); CheckpointError otherwise."""
    out = dict(state)
    step = out.setdefault("step_in_epoch", 0)
    if not (_is_int(step) and step >= 0):
        raise CheckpointError(f"{path}: trainer.step_in_epoch must be an int >= 0, got {step!r:.100}")
    steps = out.get("steps_per_epoch")
    if steps is not None and not (_is_int(steps) and steps >= 0):
        raise CheckpointError(f"{path}: trainer.steps_per_epoch must be an int >= 0, got {steps!r:.100}")
    for key in ("train_loss", "train_correct"):
        out[key] = _running_mean(path, key, out.get(key, {"total": 0, "count": 0}))
    seconds = out.setdefault("train_seconds", 0.0)
    if not (_is_number(seconds) and seconds >= 0):
        raise CheckpointError(f"{path}: trainer.train_seconds must be a number >= 0, got {seconds!r:.100}")
    history = out.setdefault("history", [])
    if not isinstance(history, list):
        raise CheckpointError(f"{path}: trainer.history must be a JSON array, got {type(history).__name__}")
    for i, record in enumerate(history):
        _record(path, f"trainer.history[{i}]", record)
    if out.get("best") is not None:
        _record(path, "trainer.best", out["best"])
    seed = loader.get("seed")
    if seed is not None and not _is_int(seed):
        raise CheckpointError(f"{path}: rng/loader.seed must be an int, got {seed!r:.100}")
    return out
