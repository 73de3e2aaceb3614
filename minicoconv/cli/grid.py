"""`minicoconv grid`: the paper's comparison as a set of runs, cells x seeds, one folder each.

    minicoconv grid --models resnet18 --convs static coconv --seeds 0 1 2 --root runs/t1 --dry-run \\
        -- --val-split 5000
    minicoconv grid --models resnet18 --convs static coconv --seeds 0 1 --root runs/t1 --jobs 2 \\
        -- --synthetic --epochs 2 --max-steps 5

Everything after `--` is passed to every `minicoconv train` (conv-specific options only to the
conv types that take them). --dry-run prints one train command per run (for a cluster job
array or GNU parallel); otherwise the runs go N at a time here (--jobs N), finished runs are
skipped and interrupted ones resumed. Exit status: 0 all done, 1 a run failed, 2 bad arguments,
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..models import MODELS, conv_types

TABLE1_CONVS = ["static", "condconv", "dycnn", "coconv"]


def add_parser(sub) -> None:
    p = sub.add_parser("grid", help="a grid of training runs (cells x seeds), printed or run here",
                       description="Train every cell (backbone x conv type x ablation options) with every seed, "
                                   "one run folder ROOT/CELL/seedS each. Options after `--` go to minicoconv train.")
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["resnet18"], metavar="MODEL",
                   help=f"backbones ({', '.join(sorted(MODELS))}; default resnet18)")
    p.add_argument("--convs", nargs="+", choices=conv_types(), default=TABLE1_CONVS, metavar="CONV",
                   help=f"conv types ({', '.join(conv_types())}; default Table 1's: {' '.join(TABLE1_CONVS)})")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="S", help="default 0 1 2")
    p.add_argument("--experts", nargs="+", type=int, default=[4], metavar="N",
                   help="experts per dynamic conv, an ablation (paper Table 5: 2 4; default 4)")
    p.add_argument("--attention", nargs="+", choices=("output", "input"), default=["output"],
                   help="CoConv attention on output and/or input channels (paper Table 5; default output)")
    scales = p.add_mutually_exclusive_group()
    scales.add_argument("--scales", nargs="+", choices=("multi", "single"), default=["multi"],
                        help="CoConv multi- and/or single-scale routing (paper Table 6; default multi)")
    scales.add_argument("--no-multiscale", dest="scales", action="store_const", const=["single"],
                        help="CoConv single-scale routing only (= --scales single)")
    p.add_argument("--root", default="runs/grid", metavar="DIR", help="where the run folders go (default runs/grid)")
    p.add_argument("--dry-run", action="store_true", help="print the train commands, run nothing")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="runs at a time on this machine (default 1)")
    p.add_argument("train_args", nargs=argparse.REMAINDER, metavar="-- TRAIN_OPTIONS",
                   help="options for every minicoconv train (after --)")
    p.set_defaults(run=run_grid, parser=p)


def run_grid(args: argparse.Namespace) -> int:
    from ..experiments import cells, runner
    from ..train.config import ConfigError

    if args.jobs < 1:
        args.parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if any(n < 1 for n in args.experts):
        args.parser.error(f"--experts must be >= 1, got {args.experts}")
    if any(s < 0 for s in args.seeds):
        args.parser.error(f"--seeds must be >= 0, got {args.seeds}")
    options = _train_options(args)
    grid_cells = cells.cells(args.models, args.convs, _unique(args.experts), _unique(args.attention),
                             [s == "multi" for s in _unique(args.scales)])
    try:
        runs = cells.plan(grid_cells, _unique(args.seeds), Path(args.root), options)
    except ConfigError as e:
        args.parser.error(str(e))
    if args.dry_run:
        for run in runs:
            print(run.command())
        return 0
    print(f"grid: {len(runs)} run(s) ({len(grid_cells)} cell(s) x {len(set(args.seeds))} seed(s)) under "
          f"{args.root}, {args.jobs} at a time", file=sys.stderr)
    return runner.run_grid(runs, args.jobs, log=lambda line: print(line, file=sys.stderr, flush=True))


def _train_options(args: argparse.Namespace) -> dict:
    """The pass-through options, parsed and checked by `minicoconv train`'s own parser."""
    from .main import build_parser

    extra = list(args.train_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    if extra and not extra[0].startswith("-"):
        args.parser.error(f"unexpected argument {extra[0]!r}; train options go after `--`")
    parser = build_parser()
    try:
        parsed = parser.parse_args(["train", *extra])
    except SystemExit as e:  # the train parser printed what is wrong
        raise SystemExit(2) from e
    options = {k: v for k, v in vars(parsed).items() if k not in ("command", "run", "parser", "progress")}
    if options.pop("resume", False):
        args.parser.error("--resume is the grid's call: it resumes unfinished runs by itself")
    return options


def _unique(values: list) -> list:
    return list(dict.fromkeys(values))
