"""`minicoconv inspect RUN_OR_CHECKPOINT`: what the routing of every dynamic layer does.

    minicoconv inspect runs/resnet18-coconv                 # the run's best checkpoint
    minicoconv inspect runs/resnet18-coconv/last.npz --layer layers.7.conv2 --eval-subset 2000

Per dynamic layer, on the test images: each expert's share of the routing weight, the
routing entropy (1 = uniform over experts, 0 = one expert), the share of saturated gates,
and per-class expert usage. Writes routing.json and, with matplotlib (the `plot` extra),
expert_usage.png, class_routing.png (one layer: --layer, default the last) and, when the
run logged routing statistics each epoch, routing_entropy.png. The math is in
minicoconv/diagnostics/routing.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="routing diagnostics of a dynamic model: expert usage, entropy, per class",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="RUN_OR_CHECKPOINT", help="a run folder (its best.npz) or a .npz checkpoint")
    p.add_argument("--out", metavar="DIR", help="where to write the JSON and pictures (default RUN/inspect)")
    p.add_argument("--layer", help="the layer of class_routing.png (default: the last routed layer)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="DIR", help="CIFAR-100 archive or folder (default: the checkpoint's data)")
    source.add_argument("--synthetic", action="store_true", help="the synthetic stand-in's test set")
    p.add_argument("--eval-subset", type=int, metavar="N", default=2000,
                   help="use the first N test images (default 2000)")
    p.add_argument("--batch-size", type=int, default=128, metavar="N")
    p.add_argument("--no-pictures", action="store_true", help="only routing.json")
    p.set_defaults(run=run_inspect, parser=p)


def _checkpoint_path(source: Path) -> Path | None:
    if source.is_dir():
        for name in ("best.npz", "last.npz"):
            if (source / name).is_file():
                return source / name
        return None
    return source if source.is_file() else None


def run_inspect(args: argparse.Namespace) -> int:
    from ..data import BatchLoader
    from ..diagnostics import pictures, routing_summary
    from ..train import CheckpointError, ConfigError, DataNotFoundError, load_datasets
    from ..train.metrics import read_metrics
    from ..train.prepare import model_from_checkpoint
    from .eval import _data_config

    if args.batch_size < 1 or args.eval_subset < 1:
        args.parser.error("--batch-size and --eval-subset must be >= 1")
    source = Path(args.source)
    ckpt_path = _checkpoint_path(source)
    if ckpt_path is None:
        print(f"minicoconv inspect: {source} is neither a checkpoint nor a run folder holding best.npz or last.npz",
              file=sys.stderr)
        return 1
    try:
        model, ckpt = model_from_checkpoint(ckpt_path)
    except (CheckpointError, ConfigError) as e:
        print(f"minicoconv inspect: {e}", file=sys.stderr)
        return 1
    cfg = _data_config(ckpt, args)
    try:
        _, _, test = load_datasets(cfg, log=lambda line: None)
    except DataNotFoundError as e:
        print(f"minicoconv inspect: {e}", file=sys.stderr)
        return 1
    stats = routing_summary(model, BatchLoader(test, args.batch_size, shuffle=False), cfg.device,
                            num_classes=len(test.classes))
    if not stats:
        print(f"minicoconv inspect: {cfg.model}/{cfg.conv} has no layer with expert routing "
              "(static convolutions; DGC's gates prune channels instead)", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else ckpt_path.parent / "inspect"
    out.mkdir(parents=True, exist_ok=True)
    run_dir = ckpt_path.parent
    records = read_metrics(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").is_file() else []
    report = {"checkpoint": str(ckpt_path), "model": cfg.model, "conv": cfg.conv, "epoch": ckpt.epoch,
              "images": stats[0]["images"], "synthetic": test.synthetic, "layers": stats,
              "epochs": [{"epoch": r["epoch"], "routing": r["routing"]} for r in records if "routing" in r]}
    (out / "routing.json").write_text(json.dumps(report, indent=1))
    tag = " [SYNTHETIC data]" if test.synthetic else ""
    print(f"{ckpt_path}: {cfg.model}/{cfg.conv}, epoch {ckpt.epoch}, {stats[0]['images']} test images{tag}")
    print(f"{'layer':<28} {'kind':<10} {'entropy':>7} {'saturated':>9}  usage per expert")
    for s in stats:
        usage = " ".join(f"{u:.2f}" for u in s["usage"])
        print(f"{s['name']:<28} {s['kind']:<10} {s['entropy']:>7.3f} {s['saturated']:>9.3f}  {usage}")
    written = [out / "routing.json"]
    if not args.no_pictures:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("pictures need matplotlib, an optional extra: pip install 'minicoconv[plot]'", file=sys.stderr)
        else:
            layer = next((s for s in stats if s["name"] == args.layer), None) if args.layer else stats[-1]
            if layer is None:
                print(f"minicoconv inspect: no routed layer named {args.layer!r}; they are: "
                      + ", ".join(s["name"] for s in stats), file=sys.stderr)
                return 1
            written.append(pictures.expert_usage(stats, out / "expert_usage.png", f"{cfg.model}/{cfg.conv}"))
            written.append(pictures.class_routing(layer, out / "class_routing.png", test.classes))
            curve = pictures.entropy_over_epochs(records, out / "routing_entropy.png")
            if curve is not None:
                written.append(curve)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
