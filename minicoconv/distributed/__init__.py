"""Synchronous data-parallel training over MPI: `mpiexec -n K minicoconv train ...`.

K processes (ranks) each hold the whole model. Every step, the global batch of B
images is split into K contiguous shards; rank r computes the gradient of its
share of the batch loss, and an allreduce sums the shares, so every rank applies
the same update as one process would on the whole batch:

    L = (1/B) sum_b l_b = sum_r (n_r/B) L_r,   L_r = (1/n_r) sum_{b in shard r} l_b
    grad L = sum_r grad((n_r/B) L_r)            (the gradient of a sum is the sum of gradients)

Files, one concern each:
    world.py            the MPI communicator (mpi4py, imported only here and only under mpiexec)
    sharding.py         the same seeded order and augmentation on every rank; each takes its shard
    gradients.py        gradients summed in place, in buckets
    sync_batchnorm.py   BatchNorm statistics over the global batch (--sync-bn)
    trainer.py          the Trainer with those pieces; rank 0 alone writes
    placement.py        each rank's share of the node's cores, and its GPU (--device cuda)
    launch.py           the CLI entry: a failing rank aborts the whole job (MPI_Abort)

Nothing here is imported by `minicoconv train` run without mpiexec; `launched_by_mpi`
reads the launcher's environment and imports nothing.
"""

from __future__ import annotations

import os

#: environment variables an MPI launcher sets for its processes, with the world size
#: (MPICH/Hydra and Intel MPI: PMI_SIZE; Open MPI: OMPI_COMM_WORLD_SIZE; MVAPICH: MV2_COMM_WORLD_SIZE)
WORLD_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_by_mpi(environ: os._Environ | dict[str, str] | None = None) -> bool:
    """True when this process is one of K > 1 ranks started by mpiexec/srun (read from the environment only).

    A single process (`mpiexec -n 1` included) trains exactly as without MPI.
    """
    env = os.environ if environ is None else environ
    for name in WORLD_SIZE_VARIABLES:
        value = env.get(name, "")
        if value.isdigit():
            return int(value) > 1
    return False


__all__ = ["WORLD_SIZE_VARIABLES", "launched_by_mpi"]
