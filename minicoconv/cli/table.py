"""`minicoconv table RUN_DIR...`: the paper's Table 1 from run folders (or grid roots).

    minicoconv table runs/t1                  # Markdown to stdout
    minicoconv table runs/t1 --csv t1.csv     # and one CSV row per cell

Top-1 as mean ± std over seeds with the number of runs, the paper's figure beside it,
the epoch chosen by the validation split (never by the test set), params and MACs.
Exit status: 0, 1 when no run could be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("table", help="Table 1 from run folders: mean ± std over seeds beside the paper",
                       description="Group runs by cell (backbone, conv type, ablation options); report test "
                                   "top-1 at the epoch chosen by validation as mean ± std over seeds, the "
                                   "paper's figure, params and MACs. Incomplete runs are listed, not averaged.")
    p.add_argument("paths", nargs="+", metavar="RUN_DIR", help="run folders or folders holding them (a grid root)")
    p.add_argument("--csv", metavar="FILE", help="also write one CSV row per cell to FILE ('-': CSV to stdout "
                                                 "instead of Markdown)")
    p.add_argument("--no-counts", dest="counts", action="store_false",
                   help="skip params and MACs (they build each cell's model once)")
    p.set_defaults(run=run_table, parser=p)


def run_table(args: argparse.Namespace) -> int:
    from ..experiments import render, table
    from ..experiments.runs import RunError, find_runs, read_run
    from ..train.atomic import atomic_write

    try:
        folders = find_runs(args.paths)
    except RunError as e:
        print(f"minicoconv table: {e}", file=sys.stderr)
        return 1
    runs = []
    for folder in folders:
        try:
            runs.append(read_run(folder))
        except RunError as e:
            print(f"minicoconv table: skipping {e}", file=sys.stderr)
    if not runs:
        print(f"minicoconv table: no readable run folder under {', '.join(args.paths)}", file=sys.stderr)
        return 1
    cells = table.summarize(runs, counts=args.counts)
    ablations = table.ablation_fields(cells)
    synthetic = any(r.config.synthetic for r in runs)
    differences = table.recipe_differences(runs)
    if args.csv == "-":
        sys.stdout.write(render.csv_text(cells, ablations, synthetic))
        return 0
    sys.stdout.write(render.markdown(cells, ablations, synthetic, differences))
    if args.csv:
        text = render.csv_text(cells, ablations, synthetic).encode("utf-8")
        atomic_write(Path(args.csv), lambda f: f.write(text))
        print(f"wrote {args.csv}", file=sys.stderr)
    return 0
