"""`minicoconv eval CHECKPOINT`: top-1 and top-5 of a saved model on the test set.

    minicoconv eval runs/resnet18-coconv/best.npz            # the training form
    minicoconv eval runs/resnet18-coconv/best.npz --fused    # nn.fuse(model): same numbers, cheaper inference
    minicoconv eval runs/resnet18-coconv                     # a run folder: its best.npz (else last.npz)

The model is rebuilt from the training config stored in the checkpoint. The
data is the checkpoint's own source (CIFAR-100 or the synthetic stand-in)
unless --data or --synthetic says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on the test set",
                       description="Rebuild the model from a checkpoint's config and report test top-1/top-5.")
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a .npz file written by minicoconv train, or a run folder (its best.npz, else last.npz)")
    p.add_argument("--fused", action="store_true", help="evaluate the fused inference form nn.fuse(model)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="DIR", help="CIFAR-100 archive or folder")
    source.add_argument("--synthetic", action="store_true", help="the synthetic stand-in's test set")
    p.add_argument("--eval-subset", type=int, metavar="N", help="only the first N test images")
    p.add_argument("--batch-size", type=int, default=128, metavar="N", help="default 128")
    p.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    p.set_defaults(run=run_eval, parser=p)


def run_eval(args: argparse.Namespace) -> int:
    from .. import nn
    from ..data import BatchLoader
    from ..train import CheckpointError, ConfigError, DataNotFoundError, evaluate, load_datasets
    from ..train.prepare import model_from_checkpoint
    from ..train.step import nonfinite_parameters

    if args.batch_size < 1:
        args.parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.eval_subset is not None and args.eval_subset < 1:
        args.parser.error(f"--eval-subset must be >= 1, got {args.eval_subset}")
    try:
        args.checkpoint = _checkpoint_of(args.checkpoint)
        model, ckpt = model_from_checkpoint(args.checkpoint)
    except (CheckpointError, ConfigError) as e:
        print(f"minicoconv eval: {e}", file=sys.stderr)
        return 1
    cfg = _data_config(ckpt, args)
    try:
        _, _, test = load_datasets(cfg, log=lambda line: None, training=False)
    except DataNotFoundError as e:
        print(f"minicoconv eval: {e}", file=sys.stderr)
        return 1
    trained_synthetic = bool(ckpt.trainer.get("synthetic", ckpt.config.get("synthetic")))
    if trained_synthetic != test.synthetic:
        print(f"warning: the model was trained on {'synthetic' if trained_synthetic else 'CIFAR-100'} data and "
              f"is evaluated on {'synthetic' if test.synthetic else 'CIFAR-100'} data", file=sys.stderr)
    form = "fused" if args.fused else "training form"
    if args.fused:
        model = nn.fuse(model)
    bad = nonfinite_parameters(model)
    if bad:
        print(f"minicoconv eval: {args.checkpoint}: the weights hold NaN/inf ({', '.join(bad[:3])}"
              f"{', ...' if len(bad) > 3 else ''}): its outputs would be meaningless, so there is nothing to "
              "evaluate (a checkpoint saved after training diverged?)", file=sys.stderr)
        return 1
    loader = BatchLoader(test, args.batch_size, shuffle=False, prefetch=True)
    start = time.perf_counter()
    result = evaluate(model, loader, device=cfg.device)
    seconds = time.perf_counter() - start
    if result["nonfinite"]:
        print(f"minicoconv eval: {args.checkpoint}: the model's outputs are NaN/inf for {result['nonfinite']} of "
              f"{result['n']} test images, so top-1/top-5 would be meaningless (its BatchNorm statistics may have "
              "blown up)", file=sys.stderr)
        return 1
    tag = " [SYNTHETIC data]" if test.synthetic else ""
    experts = f" ({cfg.experts} experts)" if cfg.conv != "static" else ""
    source = "synthetic stand-in" if test.synthetic else "CIFAR-100"
    print(f"{args.checkpoint}: {cfg.model}/{cfg.conv}{experts}, epoch {ckpt.epoch}, {form}; {source} test set")
    print(f"test top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  loss {result['loss']:.4f}  "
          f"({result['n']} images, {result['n'] / seconds:.0f} img/s){tag}")
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, "fused": args.fused, "epoch": ckpt.epoch,
                          "synthetic": test.synthetic, **result}))
    return 0


def _checkpoint_of(path: str) -> str:
    """`path` itself, or for a run folder its best.npz (else last.npz); CheckpointError if it has neither."""
    from pathlib import Path

    from ..train import CheckpointError

    folder = Path(path)
    if not folder.is_dir():
        return path
    for name in ("best.npz", "last.npz"):
        if (folder / name).is_file():
            return str(folder / name)
    raise CheckpointError(f"{path}: a folder without best.npz or last.npz (not a run folder of minicoconv train?)")


def _data_config(ckpt, args):
    """The checkpoint's config with the evaluation's data options (no val split, no training subset)."""
    from ..train.prepare import config_from_checkpoint

    cfg = config_from_checkpoint(ckpt)
    if args.data is not None:
        cfg.data, cfg.synthetic = args.data, False
    elif args.synthetic:
        cfg.data, cfg.synthetic = None, True
    cfg.val_split, cfg.train_subset, cfg.eval_subset = 0, None, args.eval_subset
    if cfg.synthetic:
        cfg.synthetic_train = 1  # the test set does not depend on it: generate (almost) no training images
    return cfg
