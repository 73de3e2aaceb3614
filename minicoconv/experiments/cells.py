"""A grid of training runs: cells (backbone x conv type x ablation options) times seeds.

A cell fixes the model: backbone, conv type, and the options that the paper ablates
(experts n, CoConv's attention on output or input channels, multi- or single-scale
routing). Options that do not apply to a conv type do not multiply its cells (a
static cell ignores --experts). Each run is a folder ROOT/CELL/seedS and one
`minicoconv train` command; every other train option is passed through unchanged,
conv-specific ones (--activation, --anneal, ...) only to the conv types that take them (as the
conv-type registry declares).
"""

from __future__ import annotations

import itertools
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..nn.dynamic.registry import conv_option_types
from ..train.config import ConfigError, TrainConfig

#: train options that the grid itself sets per run
GRID_OPTIONS = ("model", "conv", "experts", "attention", "multiscale", "seed", "out")
EXPERT_CONVS = ("condconv", "dycnn", "coconv", "odconv")


@dataclass(frozen=True)
class Cell:
    """One model of the grid; `name` is its folder under the grid root."""

    model: str
    conv: str
    experts: int = 4
    attention: str = "output"
    multiscale: bool = True

    @property
    def name(self) -> str:
        parts = [self.model, self.conv]
        if self.conv in EXPERT_CONVS:
            parts.append(f"n{self.experts}")
        if self.attention != "output":
            parts.append(f"{self.attention}-attention")
        if not self.multiscale:
            parts.append("single-scale")
        return "-".join(parts)

    def options(self) -> dict[str, Any]:
        """TrainConfig fields of this cell (defaults left out)."""
        options: dict[str, Any] = {"model": self.model, "conv": self.conv}
        if self.conv in EXPERT_CONVS:
            options["experts"] = self.experts
        if self.attention != "output":
            options["attention"] = self.attention
        if not self.multiscale:
            options["multiscale"] = False
        return options


def cells(models: list[str], convs: list[str], experts: list[int], attention: list[str],
          multiscale: list[bool]) -> list[Cell]:
    """Every distinct cell of models x convs x the ablation values that apply to each conv type."""
    out: list[Cell] = []
    for model, conv in itertools.product(models, convs):
        ns = experts if conv in EXPERT_CONVS else [4]
        atts = attention if conv == "coconv" else ["output"]
        scales = multiscale if conv == "coconv" else [True]
        for n, att, ms in itertools.product(ns, atts, scales):
            cell = Cell(model, conv, n, att, ms)
            if cell not in out:
                out.append(cell)
    return out


@dataclass
class Run:
    """One run of the grid: its folder, its config (checked) and its `minicoconv train` arguments."""

    cell: Cell
    seed: int
    out: Path
    config: TrainConfig
    argv: list[str]

    def command(self) -> str:
        return shlex.join(["minicoconv", "train", *self.argv])


def plan(grid_cells: list[Cell], seeds: list[int], root: Path, train_options: dict[str, Any]) -> list[Run]:
    """The runs of the grid, each config validated (ConfigError naming the run otherwise)."""
    clash = sorted(set(train_options) & set(GRID_OPTIONS))
    if clash:
        raise ConfigError("the grid sets " + ", ".join(f"--{_flag(k)}" for k in clash) + " itself (use --models, "
                          "--convs, --experts, --attention, --scales, --seeds, --root)")
    runs = []
    conv_only = conv_option_types()  # option -> the conv types that declare it
    for cell, seed in itertools.product(grid_cells, seeds):
        out = root / cell.name / f"seed{seed}"
        passed = {k: v for k, v in train_options.items() if k not in conv_only or cell.conv in conv_only[k]}
        options = {**cell.options(), **passed, "seed": seed, "out": str(out)}
        try:
            config = TrainConfig(**options).validate()
        except ConfigError as e:
            raise ConfigError(f"run {out}: {e}") from e
        runs.append(Run(cell, seed, out, config, to_flags(options)))
    return runs


def to_flags(options: dict[str, Any]) -> list[str]:
    """Train options -> command-line arguments: True -> --name, False -> --no-name, else --name value."""
    argv: list[str] = []
    for key, value in options.items():
        if value is True:
            argv.append(f"--{_flag(key)}")
        elif value is False:
            argv.append(f"--no-{_flag(key)}")
        elif value is not None:
            argv += [f"--{_flag(key)}", str(value)]
    return argv


def _flag(name: str) -> str:
    return name.replace("_", "-")
