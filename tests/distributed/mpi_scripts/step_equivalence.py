"""Under mpiexec -n K: K ranks' data-parallel steps against one process's steps on the whole batch, float64.

    mpiexec -n 2 python tests/distributed/mpi_scripts/step_equivalence.py BATCH [--no-sync-bn] [--no-odconv]

Every rank also runs the one-process reference itself. With --sync-bn (default) the
losses, parameters, momentum buffers, BN running statistics and the generator state
must agree to 1e-10 relative; exit status 1 (and the worst entries) otherwise.
With --no-sync-bn they must differ (per-rank statistics are another computation).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import minicoconv  # noqa: F401
from minicoconv import optim
from minicoconv import random as R
from minicoconv.distributed.gradients import GradientAllreduce
from minicoconv.distributed.sharding import shard_bounds
from minicoconv.distributed.sync_batchnorm import convert_sync_batchnorm
from minicoconv.distributed.trainer import data_parallel_step
from minicoconv.distributed.world import World
from minicoconv.nn import dynamic
from minicoconv.tensor import Tensor
from minicoconv.train.step import train_step

sys.path.insert(0, str(Path(__file__).parent))
from netlib import AllNorms  # noqa: E402

TOLERANCE = 1e-10


def main() -> int:
    batch, sync, odconv = int(sys.argv[1]), "--no-sync-bn" not in sys.argv, "--no-odconv" not in sys.argv
    world = World()
    R.manual_seed(0)
    ref = AllNorms(odconv=odconv).double()
    R.manual_seed(0)
    dp = AllNorms(odconv=odconv).double()
    if sync:
        convert_sync_batchnorm(dp, world)
    opt_ref = optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt_dp = optim.SGD(dp.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    gradients = GradientAllreduce(dp.parameters(), world, bucket_mb=0.01)  # several buckets
    for model in (ref, dp):
        dynamic.set_dgc_progress(model, 0.5)  # DGC prunes channels
    rng = np.random.default_rng(1)
    lo, hi = shard_bounds(batch, world.rank, world.size)
    worst: list[tuple[float, str]] = []
    for step in range(2):
        x, y = rng.standard_normal((batch, 3, 32, 32)), rng.integers(0, 10, batch)
        R.manual_seed(100 + step)
        loss_ref, _ = train_step(ref, opt_ref, Tensor(x), y)
        state_ref = R.get_rng_state()
        R.manual_seed(100 + step)
        loss_dp, correct, n, _ = data_parallel_step(dp, opt_dp, gradients, Tensor(x[lo:hi]), y[lo:hi],
                                                    (lo, hi, batch))
        worst.append((abs(loss_dp - loss_ref) / abs(loss_ref), f"step {step} loss"))
        worst.append((float(R.get_rng_state() != state_ref), f"step {step} generator state"))
        worst.append((float(n != batch), f"step {step} batch count"))
    for (name, a), b in zip(ref.state_dict().items(), dp.state_dict().values()):
        worst.append((float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300)), name))
    for i, buf in opt_ref.state_dict()["momentum_buffers"].items():
        other = opt_dp.state_dict()["momentum_buffers"][i]
        worst.append((float(np.max(np.abs(buf - other)) / max(np.max(np.abs(buf)), 1e-300)), f"momentum {i}"))
    worst.sort(reverse=True)
    if world.rank == 0:
        print(f"{world.size} ranks, batch {batch}, sync_bn={sync}: worst relative differences "
              + ", ".join(f"{name} {value:.2e}" for value, name in worst[:4]))
    agree = worst[0][0] <= TOLERANCE
    return 0 if agree == sync else 1


if __name__ == "__main__":
    sys.exit(main())
