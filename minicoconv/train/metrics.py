"""Accuracy, running averages and the per-epoch metrics file.

Accuracy is computed on the logits' NumPy array (no autodiff, no extra ops):

    top-k correct = #{ b : label_b is among the k largest logits of row b }

`MetricsWriter` appends one JSON object per line to `metrics.jsonl`, flushed at
once, so a crashed or interrupted run keeps every finished epoch and
`minicoconv plot` can read the file while training goes on.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write


def topk_correct(logits: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> list[int]:
    """Number of rows whose label is among the k largest logits, for each k in `ks`.

    logits (N, C), labels (N,) -> [correct@k for k in ks]. With k >= C every row counts.
    Ties count in the label's favour only as argpartition places them (as PyTorch's topk).
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"topk_correct: expected logits (N, C) and labels (N,), got {logits.shape} "
                         f"and {labels.shape}")
    n, c = logits.shape
    out = []
    for k in ks:
        if k == 1:
            hits = logits.argmax(axis=1) == labels
        elif k >= c:
            hits = np.ones(n, dtype=bool)
        else:
            top = np.argpartition(logits, c - k, axis=1)[:, c - k:]  # the k largest, unordered
            hits = (top == labels[:, None]).any(axis=1)
        out.append(int(hits.sum()))
    return out


def accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Top-k accuracy in percent."""
    return 100.0 * topk_correct(logits, labels, (k,))[0] / max(len(labels), 1)


class RunningMean:
    """A mean over samples, updated batch by batch: update(batch_mean, n)."""

    def __init__(self, total: float = 0.0, count: int = 0):
        self.total, self.count = float(total), int(count)

    def update(self, value: float, n: int = 1) -> None:
        self.total += float(value) * n
        self.count += int(n)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def state_dict(self) -> dict[str, float]:
        return {"total": self.total, "count": self.count}

    @classmethod
    def from_state(cls, state: dict[str, float]) -> RunningMean:
        return cls(state["total"], state["count"])


def clean_for_json(value: Any) -> Any:
    """NumPy scalars -> Python numbers, NaN/inf -> None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: clean_for_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_for_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsWriter:
    """Append one JSON object per line to `path` (metrics.jsonl), flushing each line."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def write(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(clean_for_json(record)) + "\n")
            f.flush()

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        """Replace the file's contents with `records` (a resumed run starts from its checkpoint's history)."""
        text = "".join(json.dumps(clean_for_json(r)) + "\n" for r in records)
        atomic_write(self.path, lambda f: f.write(text.encode("utf-8")))


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file, skipping a final line cut short by a crash."""
    records = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break  # a half-written last line
            raise ValueError(f"{path}: line {i + 1} is not JSON ({e})") from e
    return records
