"""Runs grouped by cell: top-1 mean and standard deviation over seeds, paper figure, params and MACs.

A cell is what fixes the model (backbone, conv type, experts, CoConv's options, the
annealing switches); the seeds of a cell are its runs. For each complete run the
test top-1 is read at its chosen epoch (best validation top-1, or the last epoch
without a validation split; runs.py). Over the n complete runs of a cell:

    mean = sum(x) / n,    std = sqrt(sum((x - mean)^2) / (n - 1))   (sample std; none for n = 1)

Incomplete runs are counted and listed, never averaged in. Params and MACs per image
(training form and fused inference form) come from `minicoconv.summary.count`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..models import MODELS, conv_types
from ..train.config import TrainConfig
from .cells import EXPERT_CONVS
from .paper import paper_top1
from .runs import RunRecord

#: TrainConfig fields that make a cell; the others are the recipe (plus seed, out, data, device)
CELL_FIELDS = ("model", "conv", "experts", "activation", "attention", "multiscale", "expert_bn", "reduction",
               "anneal", "num_classes")
PER_RUN_FIELDS = ("seed", "out", "data", "device")
MODEL_ORDER = ("alexnet", "resnet18", "mobilenetv2")


@dataclass
class CellSummary:
    """One cell of the table."""

    key: dict[str, Any]
    complete: list[RunRecord] = field(default_factory=list)
    incomplete: list[RunRecord] = field(default_factory=list)
    params: int | None = None
    macs_train: int | None = None
    macs_fused: int | None = None

    @property
    def top1(self) -> list[float]:
        values = [r.chosen().get("test_top1") for r in self.complete]
        return [v for v in values if v is not None]

    @property
    def mean(self) -> float | None:
        return sum(self.top1) / len(self.top1) if self.top1 else None

    @property
    def std(self) -> float | None:
        x = self.top1
        if len(x) < 2:
            return None
        m = sum(x) / len(x)
        return math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1))

    @property
    def chosen_epochs(self) -> list[int]:
        return [r.chosen()["epoch"] for r in self.complete]

    @property
    def selection(self) -> str:
        """How the epochs were chosen: 'validation', 'last epoch' (no split) or 'mixed'."""
        kinds = {r.by_validation for r in self.complete}
        return "mixed" if len(kinds) > 1 else ("validation" if kinds == {True} else "last epoch")

    @property
    def paper(self) -> float | None:
        return paper_top1(self.key["model"], self.key["conv"], self.key)


def cell_key(config: TrainConfig) -> dict[str, Any]:
    """The cell fields of a run's config (experts only for conv types that have experts)."""
    key = {name: getattr(config, name) for name in CELL_FIELDS}
    if config.conv not in EXPERT_CONVS:
        key["experts"] = None
    return key


def summarize(runs: list[RunRecord], counts: bool = True) -> list[CellSummary]:
    """One CellSummary per cell, in Table 1 order (backbone, conv type, then options)."""
    cells: dict[tuple, CellSummary] = {}
    for run in runs:
        key = cell_key(run.config)
        cell = cells.setdefault(tuple(key.items()), CellSummary(key))
        (cell.complete if run.complete and run.chosen() is not None else cell.incomplete).append(run)
    ordered = sorted(cells.values(), key=_order)
    if counts:
        for cell in ordered:
            cell.params, cell.macs_train, cell.macs_fused = model_counts(cell.key)
    return ordered


def recipe_differences(runs: list[RunRecord]) -> dict[str, list]:
    """Recipe fields (epochs, lr, data, ...) whose values differ between the runs: field -> values."""
    skip = set(CELL_FIELDS) | set(PER_RUN_FIELDS)
    out = {}
    for name in TrainConfig.__dataclass_fields__:
        values = {repr(getattr(r.config, name)) for r in runs}
        if name not in skip and len(values) > 1:
            out[name] = sorted(values)
    return out


def ablation_fields(cells: list[CellSummary]) -> list[str]:
    """Cell fields other than backbone and conv type whose values differ between cells."""
    return [name for name in CELL_FIELDS[2:]
            if len({repr(c.key[name]) for c in cells if c.key[name] is not None}) > 1]


def model_counts(key: dict[str, Any]) -> tuple[int, int, int]:
    """(parameters, MACs per image in training form, in fused inference form) of the cell's model."""
    from .. import models
    from ..summary import count

    config = TrainConfig(**{k: v for k, v in key.items() if v is not None})
    model = models.build(config.model, conv=config.conv, experts=config.experts, num_classes=config.num_classes,
                         **config.conv_options())
    rows = count(model)
    return (sum(p.numel() for p in model.parameters()), sum(r.macs_train for r in rows),
            sum(r.macs_fused for r in rows))


def _order(cell: CellSummary) -> tuple:
    key = cell.key
    model = MODEL_ORDER.index(key["model"]) if key["model"] in MODEL_ORDER else len(MODELS)
    known = conv_types()
    conv = known.index(key["conv"]) if key["conv"] in known else len(known)
    return (conv, model, tuple(repr(key[name]) for name in CELL_FIELDS[2:]))
