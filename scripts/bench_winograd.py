"""Winograd against im2col, each against PyTorch: the 3x3 layers and whole training steps.

    python scripts/bench_winograd.py [--layers] [--models] [--repeats 5] [--batch-size 32]

A default process (NumPy and torch imported first, then minicoconv); the bench module's own
functions (minicoconv.bench.layers.bench_layers, minicoconv.bench.models.bench_model) run once
per setting of minicoconv.backend.cpu.winograd.set_conv_algorithm: "im2col" (never Winograd)
and "auto" (the measured rule of winograd.prefer_winograd). Figures: docs/performance.md.
"""

from __future__ import annotations

import argparse

import numpy as np  # noqa: F401  (a user's default process: NumPy and torch first)
import torch

from minicoconv.backend.cpu import winograd
from minicoconv.bench.layers import LAYER_CASES, Setup, bench_layers
from minicoconv.bench.models import bench_model

SETTINGS = ("im2col", "auto", "winograd")


def layer_rows(setup: Setup, batch: int) -> None:
    cases = [c for c in LAYER_CASES if c.kind == "conv" and c.groups == 1]
    for setting in SETTINGS:
        winograd.set_conv_algorithm(setting)
        for row in bench_layers(setup, batch, cases):
            print(f"{setting:<9}{row['layer']:<40}{row['min_ms']:9.1f} ms  torch {row['torch_min_ms']:8.1f} ms  "
                  f"ratio {row['ratio']:.2f}", flush=True)


def model_rows(setup: Setup, batch: int, convs) -> None:
    for conv in convs:
        for setting in SETTINGS[:2]:
            winograd.set_conv_algorithm(setting)
            row = bench_model(setup, "resnet18", conv, batch, memory=False)
            theirs, ratio = row.get("torch_train_min_ms") or float("nan"), row.get("train_ratio") or float("nan")
            print(f"{setting:<9}resnet18 {conv:<8} train {row['train_min_ms']:9.1f} ms  torch {theirs:9.1f} ms  "
                  f"ratio {ratio:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", action="store_true")
    parser.add_argument("--models", action="store_true")
    parser.add_argument("--convs", nargs="+", default=["static", "coconv"], help="ResNet18 conv types (--models)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    setup = Setup(torch=torch, repeats=args.repeats)
    if args.layers or not args.models:
        layer_rows(setup, args.batch_size)
    if args.models:
        model_rows(setup, args.batch_size, args.convs)


if __name__ == "__main__":
    main()
