"""Under mpiexec -n K with --device cuda: each rank takes its local GPU, steps agree with one CPU process.

    NUMBA_ENABLE_CUDASIM=1 mpiexec -n 2 python tests/distributed/mpi_scripts/cuda_ranks.py

Every rank selects GPU local_rank mod (visible GPUs) before the CUDA backend loads, trains a small
float64 network (conv, sync-BN, CoConv, linear) on its shard with gradients staged through host
memory, and compares with the one-process CPU steps on the whole batch: exit 1 beyond 1e-10
relative. Under the simulator there is one (simulated) GPU, which every rank shares.
"""

from __future__ import annotations

import sys

import numpy as np

from minicoconv import nn, optim
from minicoconv import random as R
from minicoconv.distributed.gradients import GradientAllreduce
from minicoconv.distributed.placement import select_local_gpu
from minicoconv.distributed.sharding import shard_bounds
from minicoconv.distributed.sync_batchnorm import convert_sync_batchnorm
from minicoconv.distributed.trainer import data_parallel_step
from minicoconv.distributed.world import World
from minicoconv.tensor import Tensor
from minicoconv.train.step import train_step

TOLERANCE = 1e-10


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.CoConv2d(4, 4, 3, padding=1, experts=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 5))


def main() -> int:
    world = World()
    gpu = select_local_gpu(world.local_rank)
    R.manual_seed(0)
    ref = small_net().double()
    R.manual_seed(0)
    dp = small_net().double()
    convert_sync_batchnorm(dp, world)
    dp.to("cuda")
    opt_ref = optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    opt_dp = optim.SGD(dp.parameters(), lr=0.1, momentum=0.9)
    gradients = GradientAllreduce(dp.parameters(), world)
    rng = np.random.default_rng(1)
    batch = 4
    lo, hi = shard_bounds(batch, world.rank, world.size)
    worst = 0.0
    for _ in range(2):
        x, y = rng.standard_normal((batch, 3, 8, 8)), rng.integers(0, 5, batch)
        loss_ref, _ = train_step(ref, opt_ref, Tensor(x), y)
        loss_dp, *_ = data_parallel_step(dp, opt_dp, gradients, Tensor(x[lo:hi], device="cuda"), y[lo:hi],
                                         (lo, hi, batch))
        worst = max(worst, abs(loss_dp - loss_ref) / abs(loss_ref))
    for a, b in zip(ref.state_dict().values(), dp.to("cpu").state_dict().values()):
        worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300)))
    print(f"rank {world.rank}: GPU {gpu}, worst relative difference {worst:.2e}", flush=True)
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
