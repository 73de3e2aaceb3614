"""Tutorial 09: data parallelism, one training step spread over K processes (MPI).

Run:  python tutorials/09_data_parallel.py [--quick] [--measure] [--plots DIR]
      (from a notebook: main(["--quick"]); importing this file runs nothing)
      mpiexec -n 2 minicoconv train --model resnet18 --synthetic --sync-bn ...   (the real thing)

1. Why it works. The batch loss is a mean over samples, L = (1/B) sum_b l_b. Split the
   batch into K shards of n_r samples and L = sum_r (n_r/B) L_r, with L_r the mean over
   shard r. Differentiation is linear, so the gradient of a sum is the sum of the
   gradients: grad L = sum_r grad((n_r/B) L_r). Each process computes one term on its
   own shard; one allreduce (a sum over processes that leaves the result on all of them)
   gives every process grad L, and the same SGD update keeps their weights identical.
2. What BatchNorm does to that. In training, BN normalises with the mean and variance of
   the batch, so l_b depends on the *other* samples: the terms above are no longer
   independent. With per-rank statistics (PyTorch DDP's default) each shard is normalised
   by its own mean and variance: a different, noisier computation. With --sync-bn the
   per-channel sums are allreduced, so every rank uses the global batch's statistics:
   mean = sum_r m_r mean_r / M and var = sum_r m_r (var_r + mean_r^2) / M - mean^2.
3. What it costs: the allreduce of every gradient each step, and the per-step latency of
   the small collectives. `--measure` times K = 1 and 2 with `minicoconv bench --data-parallel`.

Steps 1 and 2 run in one process here (shards are just slices), in float64. With --plots DIR
a picture shows, per parameter tensor, how far the sum of shard gradients is from the whole
batch's with and without BatchNorm.

The engine behind it: minicoconv/distributed/gradients.py (the allreduce of the gradients),
sync_batchnorm.py (--sync-bn), sharding.py, trainer.py and launch.py; the measurement is
minicoconv/bench/data_parallel.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from minicoconv import nn
from minicoconv import random as R
from minicoconv.distributed.sharding import shard_bounds
from minicoconv.nn import functional as F
from minicoconv.tensor import Tensor

#: measured on the 2-core development machine while it was otherwise idle (load average 1-2), ResNet18-CoConv,
#: global batch 128, per-rank BatchNorm, 2 timed steps: (ranks, median step ms, allreduce ms)
#: (`minicoconv bench --data-parallel 1 2 --model resnet18 --conv coconv --batch-size 128 --repeats 2`)
MEASURED_HERE = [(1, 8685, 0.0), (2, 6911, 98.6)]


def small_net(batch_norm: bool) -> nn.Module:
    """conv 3->8 (+ BN) + ReLU, global average pool, linear -> 10 classes, in float64."""
    R.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, 1, 1, bias=False)] + ([nn.BatchNorm2d(8)] if batch_norm else [])
    return nn.Sequential(*layers, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).double()


def gradients(model: nn.Module, x: np.ndarray, y: np.ndarray, weight: float = 1.0) -> list[np.ndarray]:
    """d(weight * mean cross-entropy of model(x))/d(parameters)."""
    model.zero_grad()
    (F.cross_entropy(model(Tensor(x)), y) * weight).backward()
    return [p.grad.numpy().copy() for p in model.parameters()]


def sum_of_shard_gradients(model: nn.Module, x: np.ndarray, y: np.ndarray, ranks: int) -> list[np.ndarray]:
    """sum_r grad((n_r/B) L_r): what the gradient allreduce computes, one shard after the other."""
    total = None
    for r in range(ranks):
        lo, hi = shard_bounds(len(y), r, ranks)
        g = gradients(model, x[lo:hi], y[lo:hi], (hi - lo) / len(y))
        total = g if total is None else [a + b for a, b in zip(total, g)]
    return total


def worst_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(p - q)) / np.max(np.abs(p))) for p, q in zip(a, b))


def combined_statistics(x: np.ndarray, ranks: int) -> tuple[np.ndarray, np.ndarray]:
    """The global per-channel mean and biased variance of x (N, C, H, W) from each shard's own, as --sync-bn does."""
    count = mean_sum = square_sum = 0.0
    for r in range(ranks):
        lo, hi = shard_bounds(len(x), r, ranks)
        part = x[lo:hi]
        m = part.shape[0] * part.shape[2] * part.shape[3]
        count, mean_sum = count + m, mean_sum + m * part.mean(axis=(0, 2, 3))
        square_sum = square_sum + m * (part.var(axis=(0, 2, 3)) + part.mean(axis=(0, 2, 3)) ** 2)
    mean = mean_sum / count
    return mean, square_sum / count - mean**2


def run(quick: bool = False, measure: bool = False, plots: Path | None = None) -> None:
    rng = np.random.default_rng(0)
    batch, ranks = (8, 2) if quick else (32, 4)
    x, y = rng.standard_normal((batch, 3, 16, 16)), rng.integers(0, 10, batch)

    print(f"1. the gradient of a sum is the sum of gradients (batch {batch}, {ranks} shards, float64)")
    plain = small_net(batch_norm=False)
    d = worst_difference(gradients(plain, x, y), sum_of_shard_gradients(plain, x, y, ranks))
    print(f"   no BatchNorm:             whole batch vs sum of shard gradients: max relative difference {d:.1e}")
    assert d < 1e-12
    bn = small_net(batch_norm=True)
    d_bn = worst_difference(gradients(bn, x, y), sum_of_shard_gradients(bn, x, y, ranks))
    print(f"   BatchNorm, per-shard stats: max relative difference {d_bn:.1e}  <- another computation")
    assert d_bn > 1e-6
    if plots is not None:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend is chosen or changed

        fig = Figure(figsize=(5, 3))
        ax = fig.subplots()
        ax.bar(["no BatchNorm", "BatchNorm,\nper-shard statistics"], [max(d, 1e-17), d_bn])
        ax.set_yscale("log")
        ax.set_ylabel("max relative difference")
        ax.set_title(f"whole batch vs sum of {ranks} shard gradients")
        plots.mkdir(parents=True, exist_ok=True)
        fig.savefig(plots / "09_shard_gradients.png", dpi=90, bbox_inches="tight")
        print(f"  picture: {plots / '09_shard_gradients.png'}")

    print("\n2. BatchNorm over the global batch from per-shard moments (what --sync-bn allreduces)")
    h = rng.standard_normal((batch, 4, 8, 8)) * 3 + 1
    mean, var = combined_statistics(h, ranks)
    print(f"   combined mean/var vs the whole batch's: {np.max(np.abs(mean - h.mean(axis=(0, 2, 3)))):.1e}, "
          f"{np.max(np.abs(var - h.var(axis=(0, 2, 3)))):.1e}")
    lo, hi = shard_bounds(batch, 0, ranks)
    print(f"   shard 0 alone would use mean {h[lo:hi].mean(axis=(0, 2, 3)).round(3)} instead of {mean.round(3)}")
    print("   the test tests/distributed/test_mpi.py runs both under mpiexec and finds one process's weights "
          "to 1e-10 (float64) with --sync-bn")

    print("\n3. measured scaling (strong: the same global batch over K ranks)")
    base = MEASURED_HERE[0][1]
    for k, step_ms, reduce_ms in MEASURED_HERE:
        print(f"   K={k}: step {step_ms / 1e3:.1f} s, allreduce {100 * reduce_ms / step_ms:.1f} % of it, speedup "
              f"{base / step_ms:.2f}, efficiency {base / step_ms / k:.2f}")
    print("   (on 2 cores: K=1 is one process with 2 threads, K=2 two processes of 1 thread each on the same two\n"
          "   cores, so a perfect speedup would be 1.0 if one process used both cores perfectly. The 1.26 says it\n"
          "   does not: two single-threaded ranks waste less time in thread synchronisation and small kernels than\n"
          "   one two-threaded process. Real scaling needs more cores or machines: K ranks on K x C cores.)")
    if measure:
        from minicoconv.bench.data_parallel import run_scaling

        rows = run_scaling([2], "resnet18", "static", 4, 8 if quick else 32, 0 if quick else 1, 1 if quick else 3)
        for row in rows:
            print(f"   now: K={row['ranks']}: step {row['step_ms']:.0f} ms, allreduce {row['allreduce_pct']:.1f} %, "
                  f"efficiency {row['efficiency']:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the test suite's mode)")
    parser.add_argument("--measure", action="store_true", help="also time K = 1, 2 now (needs the mpi extra)")
    parser.add_argument("--plots", metavar="DIR", type=Path, help="write the picture (PNG) to DIR")
    args = parser.parse_args(argv)
    run(quick=args.quick, measure=args.measure, plots=args.plots)


if __name__ == "__main__":
    main()
