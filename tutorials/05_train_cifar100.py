"""Tutorial 05: training a dynamic-convolution network on CIFAR-100.

How to run it, from the repository root:

    python tutorials/05_train_cifar100.py                 # SmallCNN-CoConv, 3 epochs of 8,000 synthetic images
    python tutorials/05_train_cifar100.py --data DIR      # the same on real CIFAR-100 (a subset)
    python tutorials/05_train_cifar100.py --out DIR       # keep the run somewhere else (default runs/tutorial05)
    python tutorials/05_train_cifar100.py --quick --plots out   # a few steps, pictures in out/ (the tests)

Or from a notebook: `main(["--quick"])`, or call the section functions one by one.

How long it takes: the full lesson trains for about 3 minutes on 2 CPU cores (more if
the machine is busy; the first run also compiles the Numba kernels, about a minute, and
caches them on disk). --quick takes seconds. The run folder is kept: afterwards
`minicoconv plot runs/tutorial05` draws its curves and `minicoconv inspect runs/tutorial05`
shows what the routing learned.

What you will learn, one printed section each:

1. Data: uint8 images, a BatchLoader that shuffles, augments and normalises, one epoch at a time.
2. A model: `models.build(name, conv=..., experts=...)` and what a CoConv layer holds.
3. One training step by hand: forward, loss, backward, SGD step -- and the loss going down.
4. The Trainer: the same step in a loop, evaluation, metrics.jsonl, last.npz and best.npz
   (picture: the training curves).
5. Checkpoints: what a .npz checkpoint holds, and loading it into a fresh model.
6. Fusing: `nn.fuse(model)`, one aggregated kernel per sample (CoConv paper, eq. 3).
7. Evaluating: top-1 and top-5, the training form and the fused form agree.

Without --data the images are the synthetic stand-in (clearly labelled): a network
can learn it, but its accuracies say nothing about CIFAR-100. The paper's recipe is
a command-line run of 90 epochs: `minicoconv train --model resnet18 --conv coconv --experts 4`.

The model here is SmallCNN (minicoconv/models/smallcnn.py): a static stem and three CoConv
layers, small enough that three epochs take minutes on a laptop CPU. ResNet18 would take
about an hour per epoch of 50,000 images there. The learning rate is 0.05, five times the
paper's 0.01: the paper's schedule runs 90 epochs; for a lesson of three, a larger step
shows the learning sooner, and BatchNorm after every convolution keeps it stable.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import minicoconv as mc
from minicoconv import models, nn, optim
from minicoconv.data import BatchLoader, load_cifar100, synthetic_cifar100
from minicoconv.lesson import check, section
from minicoconv.nn import functional as F
from minicoconv.train import Trainer, evaluate, load_checkpoint, save_checkpoint, train_step


# ---------------------------------------------------------------------------------------
def the_data(args) -> tuple:
    section(1, "Data: uint8 images, batches of normalised floats")
    # Engine: minicoconv/data/dataset.py, synthetic.py, cifar.py, loader.py and transforms.py.

    # A Dataset keeps images as uint8 (N, 3, 32, 32) -- 4x smaller than float32 -- and int64 labels.
    if args.data:
        train, test = load_cifar100(args.data)
        train, test = train.subset(args.train_images), test.subset(args.test_images)
    else:
        train, test = synthetic_cifar100(args.train_images, args.test_images)
    print("train:", train)
    print("test: ", test)
    if train.synthetic:
        print("  (SYNTHETIC stand-in: every number below is about it, not about CIFAR-100)")

    # The loader turns uint8 images into float batches, (pixel / 255 - mean[c]) / std[c]. With
    # augment=True each image is randomly cropped (4-pixel zero padding) and flipped. Epoch k's
    # order and augmentation come from (seed, k) alone, so a resumed run sees the same batches.
    loader = BatchLoader(train, args.batch_size, shuffle=True, augment=True, seed=0)
    x, y = next(iter(loader))
    print(f"one batch: x {x.shape} {x.dtype}, y {y.shape} {y.dtype}; x mean {x.mean():+.3f}, std {x.std():.3f}")
    check(x.shape == (args.batch_size, 3, 32, 32) and x.dtype == np.float32, "batches are (B, 3, 32, 32) float32")
    loader.set_epoch(0)
    again, _ = next(iter(loader))
    check(np.array_equal(x, again), "set_epoch(0) replays epoch 0 exactly (shuffle and augmentation)")
    return train, test


def the_model(args):
    section(2, "A model with dynamic convolutions")
    # Engine: minicoconv/models/__init__.py (build), factory.py (which convs become dynamic),
    # smallcnn.py / resnet.py / ..., and minicoconv/nn/dynamic/coconv.py.

    # The models take a `conv` argument: every convolution the papers make dynamic becomes a
    # CoConv2d (or CondConv2d / DyConv2d / ...); the stem (and ResNet's shortcuts) stay static.
    mc.manual_seed(0)  # the initial weights come from the global generator
    model = models.build(args.model, conv="coconv", experts=args.experts)
    n_params = sum(p.numel() for p in model.parameters())
    layer = next(m for m in model.modules() if isinstance(m, nn.CoConv2d))
    print(f"{args.model} with CoConv, {args.experts} experts: {n_params / 1e6:.2f}M parameters")
    print("a CoConv layer:", layer)
    print("  expert kernels:", layer.weight.shape, "(experts, C', C/groups, k, k)")
    print("  expert BN over all experts' channels:", layer.bn)
    check(layer.weight.shape[0] == args.experts, "each CoConv layer holds one kernel per expert")
    return model


def one_step_by_hand(model, train, args) -> None:
    section(3, "One training step by hand: forward, loss, backward, SGD step")
    # Engine: minicoconv/nn/functional.py (cross_entropy), minicoconv/autograd/engine.py (backward),
    # minicoconv/optim/sgd.py -> minicoconv/backend/cpu/optim_kernels.py, minicoconv/train/step.py.

    # Paper recipe: SGD, momentum 0.9, weight decay 5e-4 (lr 0.01; more here, see the docstring).
    # The steps below are on a copy of the model, so section 4 starts from the untrained weights.
    model = copy_of(model, args)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    x, y = next(iter(BatchLoader(train, args.batch_size, shuffle=False)))
    images = mc.tensor(x)

    logits = model(images)                      # forward: (B, 3, 32, 32) -> (B, 100)
    loss = F.cross_entropy(logits, y)           # mean of -log softmax(logits)[label]
    print(f"logits {logits.shape}; loss {loss.item():.4f}  (a network that knows nothing: ln 100 = "
          f"{np.log(100):.4f})")
    optimizer.zero_grad()
    loss.backward()                             # every parameter p gets p.grad = d loss / d p
    w = layer_weight(model)
    before = w.numpy().copy()
    print(f"gradient of the first CoConv kernel bank: shape {w.grad.shape}, norm "
          f"{np.linalg.norm(w.grad.numpy()):.4f}")
    optimizer.step()                            # p <- p - lr * (momentum buffer of grad + wd * p)
    print(f"the step moved those weights by {np.abs(w.numpy() - before).max():.2e} at most")

    # `train_step` is exactly these four lines (plus a NaN check). Repeat it on the same batch:
    losses = [loss.item()] + [train_step(model, optimizer, images, y)[0] for _ in range(args.hand_steps)]
    print("loss on the same batch, step by step:", " ".join(f"{v:.3f}" for v in losses))
    check(min(losses[1:]) < losses[0], "the loss goes down")


def copy_of(model, args):
    """A freshly built model of the same kind holding `model`'s weights."""
    twin = models.build(args.model, conv="coconv", experts=args.experts)
    twin.load_state_dict(model.state_dict())
    return twin


def layer_weight(model):
    return next(m for m in model.modules() if isinstance(m, nn.CoConv2d)).weight


def the_trainer(model, train, test, args, run_dir: Path):
    section(4, "The Trainer: epochs, evaluation, metrics and checkpoints")
    # Engine: minicoconv/train/trainer.py, metrics.py, checkpoint.py and atomic.py; the curves
    # are drawn by minicoconv/cli/plot.py (`minicoconv plot`).

    # A Trainer runs train_step over every batch of every epoch, evaluates on the test set (and a
    # validation set, if given: the best epoch is chosen on it, never on the test set), steps the
    # learning-rate schedule, and writes metrics.jsonl, last.npz and best.npz to out_dir.
    # `minicoconv train` builds the same thing from the command line (Trainer.from_config).
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    scheduler = optim.StepLR(optimizer, step_size=30, gamma=0.1)
    # The run folder is kept (it is yours to plot and inspect). The Trainer appends to
    # metrics.jsonl, so the files of an earlier run of this lesson are removed first.
    for name in ("metrics.jsonl", "last.npz", "best.npz", "weights-only.npz", "curves.png"):
        if (run_dir / name).is_file():
            (run_dir / name).unlink()
            print(f"(removed {run_dir / name} from an earlier run)")
    trainer = Trainer(model, optimizer, BatchLoader(train, args.batch_size, augment=True, seed=0),
                      scheduler=scheduler, test_loader=BatchLoader(test, args.batch_size, shuffle=False),
                      epochs=args.epochs, max_steps=args.max_steps, out_dir=run_dir, progress=False)
    start = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - start
    print(f"training and evaluation took {seconds:.0f} s ({seconds / 60:.1f} min) on this machine")
    print("files written:", sorted(p.name for p in run_dir.iterdir()))
    print(f"{'epoch':>5} {'train loss':>11} {'train top-1':>12} {'test loss':>10} {'test top-1':>11} {'top-5':>7}")
    for r in result.history:
        print(f"{r['epoch']:>5} {r['train_loss']:>11.3f} {r['train_top1']:>11.1f}% {r['test_loss']:>10.3f} "
              f"{r['test_top1']:>10.1f}% {r['test_top5']:>6.1f}%")
    print(f"(an untrained network: loss ln 100 = {np.log(100):.3f}, top-1 1%)")
    check((run_dir / "last.npz").exists() and (run_dir / "metrics.jsonl").exists(), "last.npz and metrics.jsonl")
    first, last = result.history[0], result.final
    if args.expect_learning:
        check(last["train_loss"] < first["train_loss"],
              f"the training loss fell from {first['train_loss']:.3f} to {last['train_loss']:.3f}")
        check(last["train_loss"] < np.log(100), "and it is below an untrained network's ln 100")
        check(last["test_top1"] > 5.0, f"test top-1 {last['test_top1']:.1f}% is well above chance (1%)")
    else:
        print("(--quick: a handful of steps show the mechanics; they are too few to judge learning)")
    if args.plots is not None:
        from minicoconv.cli.plot import plot_curves

        args.plots.mkdir(parents=True, exist_ok=True)
        plot_curves(result.history, args.plots / "05_training_curves.png", title="tutorial 05")
        print(f"  picture: {args.plots / '05_training_curves.png'}")
    return trainer


def checkpoints(model, run_dir: Path, args):
    section(5, "Checkpoints: everything needed to resume, in one .npz")
    # Engine: minicoconv/train/checkpoint.py, resume_state.py and atomic.py.

    # A checkpoint is a plain .npz (read with allow_pickle=False: loading it cannot run code):
    # model/<name> arrays, optimizer/ momentum buffers, the scheduler, epoch and step, the RNG
    # states, and the run's config. It is written to a temporary file and renamed into place, so
    # Ctrl-C never leaves half a file.
    ckpt = load_checkpoint(run_dir / "last.npz")
    with np.load(run_dir / "last.npz", allow_pickle=False) as npz:
        keys = npz.files
    n_model = sum(k.startswith("model/") for k in keys)
    n_momentum = sum(k.startswith("optimizer/momentum/") for k in keys)
    others = [k for k in keys if not k.startswith(("model/", "optimizer/momentum/"))]
    print(f"last.npz: {len(keys)} arrays: {n_model} model/<name>, {n_momentum} optimizer/momentum/<i>, and {others}")
    print(f"epoch {ckpt.epoch}, global step {ckpt.global_step}, loader state {ckpt.loader}")

    # Load it into a freshly built model (different random init) and compare outputs.
    mc.manual_seed(123)
    fresh = models.build(args.model, conv="coconv", experts=args.experts)
    ckpt.load_model(fresh)
    x = mc.randn(4, 3, 32, 32)
    model.eval()
    fresh.eval()
    same = np.array_equal(model(x).numpy(), fresh(x).numpy())
    check(same, "a fresh model with the checkpoint's weights computes exactly the same outputs")

    # save_checkpoint works for any model, optimizer or not:
    path = save_checkpoint(run_dir / "weights-only.npz", model)
    print(f"save_checkpoint(..., model) wrote {path.name}: {path.stat().st_size / 1e6:.1f} MB")
    return fresh


def fusing(model):
    section(6, "Fusing: one aggregated kernel per sample")
    # Engine: minicoconv/nn/dynamic/fused.py (nn.fuse, FusedCoConv2d), minicoconv/ops/dynamic_conv.py.

    # In eval mode every expert BN is an affine map a_i z + c_i, so
    #     y_b = sum_i r_bi (a_i conv(x_b, W_i) + c_i) = conv(x_b, sum_i r_bi a_i W_i) + sum_i r_bi c_i:
    # ONE convolution per sample instead of n. nn.fuse returns that form, sharing the weights.
    model.eval()
    fused = nn.fuse(model)
    x = mc.randn(8, 3, 32, 32)
    with mc.no_grad():
        y, y_fused = model(x).numpy(), fused(x).numpy()
    diff = np.abs(y - y_fused).max()
    print(f"max |training form - fused form| = {diff:.2e} (logits of size ~{np.abs(y).max():.2f})")
    check(diff <= 1e-4 * max(1.0, np.abs(y).max()), "the fused form computes the same logits (float32 rounding)")
    return fused


def evaluating(model, fused, test, args, run_dir: Path) -> None:
    section(7, "Evaluating: top-1 and top-5")
    # Engine: evaluate() in minicoconv/train/step.py; `minicoconv eval` is minicoconv/cli/eval.py.

    # evaluate() runs the model in eval mode without recording a graph, batch by batch; top-k
    # accuracy is read off the logits' NumPy array: is the label among the k largest logits?
    loader = BatchLoader(test, args.batch_size, shuffle=False)
    plain, fast = evaluate(model, loader), evaluate(fused, loader)
    tag = " (synthetic data)" if test.synthetic else ""
    print(f"training form: top-1 {plain['top1']:.2f}%  top-5 {plain['top5']:.2f}%  on {plain['n']} images{tag}")
    print(f"fused form:    top-1 {fast['top1']:.2f}%  top-5 {fast['top5']:.2f}%")
    check(plain["top1"] == fast["top1"] and plain["top5"] == fast["top5"], "both forms give the same accuracy")
    print(f"\nThis run is in {run_dir}; look at it with:")
    print(f"  minicoconv plot {run_dir}         # writes {run_dir / 'curves.png'}")
    print(f"  minicoconv inspect {run_dir}      # what the routing learned, per layer and per class")
    print(f"  minicoconv eval {run_dir / 'best.npz'} --fused")
    print("The same training from the command line (the README's demo runs it on 4,000 images):")
    print(f"  minicoconv train --model {args.model} --conv coconv --experts {args.experts} --synthetic "
          f"--synthetic-train {args.train_images} --synthetic-test {args.test_images} --epochs {args.epochs} "
          f"--batch-size {args.batch_size} --lr {args.lr} --out runs/demo")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps on few images (the tests run this)")
    parser.add_argument("--data", metavar="DIR", help="a CIFAR-100 copy (default: the synthetic stand-in)")
    parser.add_argument("--out", metavar="DIR", type=Path, default=Path("runs/tutorial05"),
                        help="the run folder, kept afterwards (default runs/tutorial05)")
    parser.add_argument("--plots", metavar="DIR", type=Path, help="write the training curves (PNG) to DIR")
    args = parser.parse_args(argv)
    args.model, args.experts, args.lr = "smallcnn", 2, 0.05
    if args.quick:  # two epochs of 2 steps of 16 images: the mechanics, not the learning
        args.batch_size, args.train_images, args.test_images = 16, 64, 32
        args.epochs, args.max_steps, args.hand_steps, args.expect_learning = 2, 2, 2, False
    else:  # three epochs of 8,000 images: about 3 minutes on 2 cores (see the docstring)
        args.batch_size, args.train_images, args.test_images = 64, 8000, 1000
        args.epochs, args.max_steps, args.hand_steps, args.expect_learning = 3, None, 3, True

    train, test = the_data(args)
    model = the_model(args)
    one_step_by_hand(model, train, args)
    the_trainer(model, train, test, args, args.out)
    loaded = checkpoints(model, args.out, args)
    fused = fusing(loaded)
    evaluating(loaded, fused, test, args, args.out)
    print("\nDone: data, a model, one step by hand, the Trainer, checkpoints, fusing and evaluation.")


if __name__ == "__main__":
    main()
