"""`minicoconv train`: train a model on CIFAR-100 (or the synthetic stand-in) with the paper's recipe.

    minicoconv train --model resnet18 --conv coconv --experts 4 --synthetic --epochs 3 --train-subset 2000
    minicoconv train --out runs/resnet18-coconv --resume       # continue exactly where it stopped

Exit status: 0 done, 1 bad input or failed run (no data, bad checkpoint or run folder, too big for memory,
diverged, disk full), 2 bad arguments, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..models import MODELS
from .plugins import add_plugin_argument, conv_arg, load_plugins

#: options that a resumed run may change; everything else must match the run's config
RESUMABLE_CHANGES = ("epochs", "data", "device", "out", "sync_bn")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model (paper recipe by default)",
        description="Train AlexNet, ResNet18 or MobileNetV2 with static or dynamic convolutions on CIFAR-100. "
                    "Defaults are the paper's recipe: SGD momentum 0.9, weight decay 5e-4, batch 128, 90 epochs, "
                    "lr 0.01 divided by 10 every 30 epochs. Writes metrics.jsonl, config.json, last.npz and "
                    "best.npz to the run folder.",
        argument_default=argparse.SUPPRESS)  # so that we know which options were given (see --resume)
    model = p.add_argument_group("model")
    model.add_argument("--model", choices=sorted(MODELS), help="network (default resnet18)")
    model.add_argument("--conv", metavar="NAME",
                       help="convolution type: static, condconv, dycnn, coconv, odconv, dgc, or one registered by "
                            "a --plugin (default static)")
    model.add_argument("--experts", type=int, metavar="N", help="experts per dynamic convolution (default 4)")
    model.add_argument("--activation", choices=("sigmoid", "softmax"), help="CoConv routing activation")
    model.add_argument("--attention", choices=("output", "input"), help="CoConv attention on output or input channels")
    model.add_argument("--no-multiscale", dest="multiscale", action="store_false",
                       help="CoConv single-scale routing (paper Table 6)")
    model.add_argument("--no-expert-bn", dest="expert_bn", action="store_false",
                       help="CoConv without a BatchNorm per expert")
    model.add_argument("--reduction", type=int, metavar="R", help="CoConv/DY-CNN routing reduction (default 16)")
    model.add_argument("--anneal", action="store_true",
                       help="the layer's temperature schedule (DY-CNN, ODConv: 30 -> 1 over the first 10 epochs)")
    for alias in ("--dycnn-anneal", "--odconv-anneal"):  # the earlier spellings, kept for scripts
        model.add_argument(alias, dest="anneal", action="store_true", help="the same as --anneal")
    model.add_argument("--conv-arg", dest="conv_args", type=conv_arg, action="append", metavar="KEY=VALUE",
                       help="any other option the conv type declares (VALUE read as JSON if it parses)")
    add_plugin_argument(model)
    data = p.add_argument_group("data")
    data.add_argument("--data", metavar="DIR", help="CIFAR-100 archive or folder (default: look in the usual places)")
    data.add_argument("--synthetic", action="store_true", help="train on the synthetic stand-in (labelled as such)")
    data.add_argument("--synthetic-train", type=int, metavar="N", help="synthetic training images (default 50000)")
    data.add_argument("--synthetic-test", type=int, metavar="N", help="synthetic test images (default 10000)")
    data.add_argument("--val-split", type=int, metavar="N",
                      help="hold out N training images (seeded) to choose the best epoch (default 0)")
    data.add_argument("--train-subset", type=int, metavar="N", help="train on the first N training images")
    data.add_argument("--eval-subset", type=int, metavar="N", help="evaluate on the first N val/test images")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, metavar="N", help="default 90")
    opt.add_argument("--batch-size", type=int, metavar="N", help="default 128")
    opt.add_argument("--lr", type=float, help="initial learning rate (default 0.01)")
    opt.add_argument("--momentum", type=float, help="default 0.9")
    opt.add_argument("--weight-decay", type=float, help="default 5e-4")
    opt.add_argument("--lr-step", type=int, metavar="EPOCHS", help="divide the lr every EPOCHS epochs (default 30)")
    opt.add_argument("--lr-gamma", type=float, help="by this factor (default 0.1)")
    opt.add_argument("--max-steps", type=int, metavar="N", help="at most N steps per epoch (quick runs)")
    opt.add_argument("--sync-bn", action="store_true",
                     help="under mpiexec -n K: BatchNorm statistics over the global batch, as one process "
                          "(default: per rank)")
    run = p.add_argument_group("run")
    run.add_argument("--out", metavar="DIR", help="run folder (default runs/MODEL-CONV[-synthetic])")
    run.add_argument("--resume", action="store_true", help="continue exactly from last.npz in the run folder")
    run.add_argument("--seed", type=int, help="seeds init, data order, augmentation, dropout (default 0)")
    run.add_argument("--device", choices=("cpu", "cuda", "reference"), help="default cpu")
    run.add_argument("--no-progress", dest="progress", action="store_false",
                     help="no progress bar (it is shown only when stderr is a terminal anyway)")
    p.set_defaults(run=run_train, parser=p)


def run_train(args: argparse.Namespace) -> int:
    """Train here, or as one rank of `mpiexec -n K` (see `_train`)."""
    from ..distributed import launched_by_mpi

    if launched_by_mpi():  # mpiexec -n K (K > 1): synchronous data-parallel training, see minicoconv.distributed
        from ..distributed.launch import run_under_mpi

        return run_under_mpi(_train, args)
    return _train(args)


def _train(args: argparse.Namespace, world=None) -> int:
    """Check everything cheap first (options, --out, the checkpoint to resume, memory), then train.

    `world` (a distributed.World) makes this one rank's part of a K-rank run.
    Exit status: 0 done, 1 bad input (data, checkpoint, run folder, too big for memory) or
    a failed run (diverged, disk full), 2 options that make no sense, 130 interrupted.
    """
    from ..train import CheckpointError, ConfigError, DataNotFoundError, TrainConfig, Trainer, TrainingDiverged
    from ..train.checkpoint import load_checkpoint
    from ..train.memory import ResourceError, check_memory
    from ..train.prepare import config_from_checkpoint
    from ..train.run_dir import RunDirError, prepare_run_dir

    options = {k: v for k, v in vars(args).items() if k not in ("command", "run", "parser", "resume", "progress")}
    if "plugins" in options:
        options["plugins"] = load_plugins(args.parser, options["plugins"])
    if "conv_args" in options:
        options["conv_args"] = dict(options["conv_args"])
    resume = getattr(args, "resume", False)
    try:
        cfg = TrainConfig(**options).validate()
    except ConfigError as e:
        args.parser.error(str(e))
    last = Path(cfg.run_dir()) / "last.npz"
    trainer = None
    try:
        if world is None or world.rank == 0:  # only rank 0 writes the run folder
            prepare_run_dir(cfg.run_dir())
        if resume:
            if not last.exists():
                raise ConfigError(f"--resume: no {last} to continue from (is --out right?)")
            cfg = _resumed_config(config_from_checkpoint(load_checkpoint(last)), options)
            cfg.out = str(last.parent)
        elif last.exists():
            raise ConfigError(f"{cfg.run_dir()} already holds a run ({last}); pass --resume to continue it, "
                              "or choose another --out")
        check_memory(cfg)
        progress = None if getattr(args, "progress", True) else False
        if world is None:
            trainer = Trainer.from_config(cfg, progress=progress)
        else:
            from ..distributed.trainer import DistributedTrainer

            trainer = DistributedTrainer.from_config(cfg, world, progress=progress)
        if resume:
            trainer.resume(last)
        result = trainer.fit()
    except ConfigError as e:
        args.parser.error(str(e))
    except (DataNotFoundError, CheckpointError, TrainingDiverged, RunDirError, ResourceError) as e:
        print(f"minicoconv train: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        print(f"minicoconv train: {_interrupted(trainer, last)}", file=sys.stderr)
        return 130
    return 130 if result.interrupted else 0


def _interrupted(trainer, last: Path) -> str:
    """What an interruption outside the first Ctrl-C's orderly save leaves on disk."""
    if not last.exists():
        return "interrupted before any checkpoint was written; nothing was saved"
    if trainer is None:
        return f"interrupted before training started; {last} is unchanged"
    return (f"interrupted; {last} holds the last completed save (a save cut short leaves it unchanged). "
            f"Resume with: minicoconv train --out {last.parent} --resume")


def _resumed_config(saved, given: dict):
    """The saved config, with the options a resumed run may change; other differences are refused."""
    from ..train import ConfigError

    clashes = [f"--{k.replace('_', '-')} {v!r} (the run has {getattr(saved, k)!r})" for k, v in given.items()
               if k not in RESUMABLE_CHANGES and getattr(saved, k) != v]
    if clashes:
        raise ConfigError("--resume continues a run with its own config; these options differ from it: "
                          + "; ".join(clashes) + f". Only {', '.join('--' + k for k in RESUMABLE_CHANGES)} may "
                          "change on resume.")
    for key in RESUMABLE_CHANGES:
        if key in given:
            setattr(saved, key, given[key])
    return saved.validate()
