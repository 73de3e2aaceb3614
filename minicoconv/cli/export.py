"""`minicoconv export CKPT OUT --format torch`: a checkpoint's weights as a PyTorch state_dict (safetensors).

    minicoconv export runs/resnet18-coconv/best.npz resnet18-coconv.safetensors --format torch

Load it in PyTorch (no minicoconv needed beyond minicoconv.interop.torch_models):
    module = torch_models.build("resnet18", "coconv"); module.load_state_dict(load_file(OUT))
Exit status: 0, 1 unreadable checkpoint or missing safetensors, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write a checkpoint's weights for PyTorch (safetensors)",
                       description="Rebuild the model from a checkpoint and write its state_dict under the keys "
                                   "of minicoconv.interop's PyTorch model, as safetensors (no pickle).")
    p.add_argument("checkpoint", metavar="CKPT", help="a .npz file written by minicoconv train")
    p.add_argument("out", metavar="OUT", help="the .safetensors file to write")
    p.add_argument("--format", choices=("torch",), default="torch", help="torch: a PyTorch state_dict (default)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(run=run_export, parser=p)


def run_export(args: argparse.Namespace) -> int:
    from ..interop.describe import InteropError
    from ..interop.export import export_safetensors
    from ..train import CheckpointError, ConfigError
    from ..train.prepare import model_from_checkpoint

    out = Path(args.out)
    if out.exists() and not args.force:
        args.parser.error(f"{out} exists; pass --force to replace it")
    if out.is_dir():
        args.parser.error(f"{out} is a folder; give a file name")
    try:
        model, ckpt = model_from_checkpoint(args.checkpoint)
        export_safetensors(model, out, extra={"epoch": ckpt.epoch})
    except (CheckpointError, ConfigError, InteropError) as e:
        print(f"minicoconv export: {e}", file=sys.stderr)
        return 1
    except ImportError as e:
        print(f"minicoconv export: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({ckpt.config.get('model')}/{ckpt.config.get('conv')}, epoch {ckpt.epoch}; "
          "PyTorch state_dict keys of minicoconv.interop.torch_models)")
    return 0
