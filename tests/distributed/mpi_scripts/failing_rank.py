"""Under mpiexec -n 2: rank 1 fails after its second step while rank 0 goes on into the next allreduce.

    mpiexec -n 2 python tests/distributed/mpi_scripts/failing_rank.py OUT_DIR raise|exit

Through `run_under_mpi` (what `minicoconv train` uses) the job must end with rank 1's
message and a non-zero status; without the abort, rank 0 would wait for ever.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import minicoconv  # noqa: F401
from minicoconv import optim
from minicoconv import random as R
from minicoconv.data import synthetic_cifar100
from minicoconv.distributed.launch import run_under_mpi
from minicoconv.distributed.sharding import ShardedBatchLoader
from minicoconv.distributed.trainer import DistributedTrainer

sys.path.insert(0, str(Path(__file__).parent))
from netlib import AllNorms  # noqa: E402


def train(args: argparse.Namespace, world) -> int:
    def on_step(trainer) -> None:
        if world.rank == 1 and trainer.global_step == 2:
            if args.how == "exit":
                sys.exit(3)
            raise RuntimeError("rank 1 gives up at step 2")

    train_set, _ = synthetic_cifar100(64, 8)
    R.manual_seed(0)
    model = AllNorms(classes=100, odconv=False)
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = ShardedBatchLoader(train_set, 8, world.rank, world.size, augment=True, prefetch=True)
    trainer = DistributedTrainer(model, optimizer, loader, world=world, epochs=2, out_dir=args.out, on_step=on_step)
    trainer.fit()
    return 0


if __name__ == "__main__":
    sys.exit(run_under_mpi(train, argparse.Namespace(out=sys.argv[1], how=sys.argv[2])))
