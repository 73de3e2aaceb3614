"""`minicoconv plot RUN_DIR [--out FILE]`: loss and accuracy curves from metrics.jsonl, as a PNG.

matplotlib is an optional extra (`pip install 'minicoconv[plot]'`); it is
imported only here, with the non-interactive Agg backend.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("plot", help="plot a run's loss and accuracy curves",
                       description="Write loss and accuracy per epoch from RUN_DIR/metrics.jsonl as a PNG.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (or its metrics.jsonl)")
    p.add_argument("--out", metavar="FILE", help="the PNG to write (default RUN_DIR/curves.png)")
    p.set_defaults(run=run_plot)


def run_plot(args: argparse.Namespace) -> int:
    from ..train.metrics import read_metrics

    source = Path(args.run_dir)
    metrics = source if source.is_file() else source / "metrics.jsonl"
    if not metrics.is_file():
        print(f"minicoconv plot: no {metrics} (is {source} a run folder written by minicoconv train?)",
              file=sys.stderr)
        return 1
    try:
        records = read_metrics(metrics)
    except ValueError as e:
        print(f"minicoconv plot: {e}", file=sys.stderr)
        return 1
    if not records:
        print(f"minicoconv plot: {metrics} holds no finished epoch yet", file=sys.stderr)
        return 1
    try:
        import matplotlib
    except ImportError:
        print("minicoconv plot needs matplotlib, an optional extra: pip install 'minicoconv[plot]'",
              file=sys.stderr)
        return 1
    matplotlib.use("Agg")  # files only, no window
    out = Path(args.out) if args.out else metrics.parent / "curves.png"
    plot_curves(records, out, title=metrics.parent.name)
    print(f"wrote {out}")
    return 0


def plot_curves(records: list[dict], out: Path, title: str = "") -> None:
    """Two panels over epochs: losses (train, val, test) and accuracies (top-1, and test top-5 dashed)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in records]

    def series(key):
        points = [(e, r.get(key)) for e, r in zip(epochs, records) if r.get(key) is not None]
        return [p[0] for p in points], [p[1] for p in points]

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "val"), ("test_loss", "test")):
        x, y = series(key)
        if x:
            ax_loss.plot(x, y, marker="o", label=label)
    for key, label, style in (("train_top1", "train top-1", "-"), ("val_top1", "val top-1", "-"),
                              ("test_top1", "test top-1", "-"), ("test_top5", "test top-5", "--")):
        x, y = series(key)
        if x:
            ax_acc.plot(x, y, style, marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.legend()
    if any(r.get("synthetic") for r in records):
        title += " (SYNTHETIC data)"
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
