"""`minicoconv summary --model M --conv C`: parameters and MACs, training and fused form."""

from __future__ import annotations

import argparse

from ..models import MODELS
from .plugins import add_plugin_argument, load_plugins


def add_parser(sub) -> None:
    p = sub.add_parser("summary", help="parameters and multiply-accumulates of a model",
                       description="Per-layer parameters and MACs (per 32x32 image) for the training form and "
                                   "the fused inference form (for DGC: the sparse form, only the kept channels).")
    p.add_argument("--model", choices=sorted(MODELS), default="resnet18")
    p.add_argument("--conv", default="static", metavar="NAME", help="a registered conv type (default static)")
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--keep", type=float, default=None,
                   help="--conv dgc: kept fraction of input channels (default 0.5); its fused (sparse) form "
                        "convolves only those")
    p.add_argument("--num-classes", type=int, default=100)
    p.add_argument("--totals-only", action="store_true", help="print only the totals line")
    add_plugin_argument(p)
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    from .. import models
    from ..summary import summary

    load_plugins(args.parser, args.plugins, args.conv)
    if args.experts < 1:
        raise SystemExit("minicoconv summary: --experts must be >= 1")
    options = {}
    if args.keep is not None:
        if args.conv != "dgc":
            raise SystemExit("minicoconv summary: --keep applies to --conv dgc")
        if not 0 < args.keep <= 1:
            raise SystemExit("minicoconv summary: --keep must be in (0, 1]")
        options["keep"] = args.keep
    try:
        model = models.build(args.model, conv=args.conv, experts=args.experts, num_classes=args.num_classes,
                             **options)
    except ValueError as e:  # e.g. DGC on MobileNetV2's depthwise convs
        raise SystemExit(f"minicoconv summary: {e}") from e
    printer = (lambda line: print(line) if line.startswith("total") else None) if args.totals_only else print
    summary(model, print_fn=printer)
    return 0
