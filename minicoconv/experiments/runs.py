"""Reading a run folder written by `minicoconv train`: config.json and metrics.jsonl, checked.

Both files are checked for size before they are read and for type after: the config
must be a JSON object that `TrainConfig` accepts, every metrics line a JSON object
whose epoch is an integer and whose accuracies are numbers (or null).

The reported epoch is chosen without the test set: the epoch of the best validation
top-1 (the first of equals, as the trainer's best.npz) when the run held out a
validation split, else the last epoch. A run is complete when its last epoch is the
configured number of epochs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..train.config import ConfigError, TrainConfig
from ..train.metrics import read_metrics

MAX_CONFIG_BYTES = 1 << 20        # a config.json is about 1 KB
MAX_METRICS_BYTES = 64 << 20      # a metrics.jsonl line is about 500 bytes per epoch
MAX_SEARCH_DEPTH = 4              # ROOT/CELL/seedS is depth 2
NUMBER_KEYS = ("val_top1", "test_top1", "test_top5")


class RunError(ValueError):
    """A run folder that cannot be read; the message starts with its path."""


@dataclass
class RunRecord:
    """A run folder: its config, its epochs, and the epoch it reports."""

    path: Path
    config: TrainConfig
    records: list[dict[str, Any]]

    @property
    def epochs_done(self) -> int:
        return self.records[-1]["epoch"] if self.records else 0

    @property
    def complete(self) -> bool:
        return self.epochs_done >= self.config.epochs

    @property
    def by_validation(self) -> bool:
        return any(r.get("val_top1") is not None for r in self.records)

    def chosen(self) -> dict[str, Any] | None:
        """The record of the reported epoch: best validation top-1, else the last (None if no epoch)."""
        if not self.records:
            return None
        if not self.by_validation:
            return self.records[-1]
        scored = [r for r in self.records if r.get("val_top1") is not None]
        return max(scored, key=lambda r: r["val_top1"])  # max keeps the first of equals


def find_runs(paths: list[str | os.PathLike[str]]) -> list[Path]:
    """Run folders (holding config.json) among `paths` and below them (a grid root), sorted, no repeats."""
    found: set[Path] = set()
    for given in map(Path, paths):
        if (given / "config.json").is_file():
            found.add(given)
        elif given.is_dir():
            base = len(given.parts)
            for folder, subfolders, files in os.walk(given):
                if len(Path(folder).parts) - base >= MAX_SEARCH_DEPTH:
                    subfolders.clear()
                if "config.json" in files:
                    found.add(Path(folder))
                    subfolders.clear()  # a run folder holds no other runs
        else:
            raise RunError(f"{given}: no such folder")
    return sorted(found)


def read_run(path: str | os.PathLike[str]) -> RunRecord:
    """The run in folder `path`; RunError naming the file for anything wrong with it."""
    path = Path(path)
    config_path = _checked_size(path / "config.json", MAX_CONFIG_BYTES)
    try:
        config = TrainConfig.from_json(config_path.read_text(encoding="utf-8")).validate()
    except (ConfigError, TypeError, UnicodeDecodeError) as e:
        raise RunError(f"{config_path}: not a minicoconv training config ({e})") from e
    metrics = path / "metrics.jsonl"
    records: list[dict[str, Any]] = []
    if metrics.exists():
        _checked_size(metrics, MAX_METRICS_BYTES)
        try:
            records = read_metrics(metrics)
        except (ValueError, UnicodeDecodeError) as e:
            raise RunError(f"{metrics}: {e}") from e
        for i, record in enumerate(records):
            _check_record(metrics, i + 1, record)
            if i and record["epoch"] <= records[i - 1]["epoch"]:
                raise RunError(f"{metrics}: line {i + 1}: epoch {record['epoch']} after epoch "
                               f"{records[i - 1]['epoch']}")
    return RunRecord(path, config, records)


def _checked_size(path: Path, limit: int) -> Path:
    if not path.is_file():
        raise RunError(f"{path}: missing (is {path.parent} a run folder written by minicoconv train?)")
    size = path.stat().st_size
    if size > limit:
        raise RunError(f"{path}: {size:,} bytes, more than the {limit:,} a run writes; not reading it")
    return path


def _check_record(path: Path, line: int, record: Any) -> None:
    if not isinstance(record, dict):
        raise RunError(f"{path}: line {line} is a JSON {type(record).__name__}, not an object")
    epoch = record.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        raise RunError(f"{path}: line {line} has no epoch number (got {epoch!r})")
    for key in NUMBER_KEYS:
        value = record.get(key)
        if value is not None and not (isinstance(value, int | float) and not isinstance(value, bool)
                                      and math.isfinite(value)):
            raise RunError(f"{path}: line {line}: {key} must be a number or null, got {value!r}")
