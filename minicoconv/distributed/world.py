"""The MPI world as the trainer sees it: rank, size, in-place sums, broadcast, abort.

This is the only module that imports mpi4py. Arrays handed to it are host (NumPy)
arrays: a CUDA rank stages its buffers through host memory.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np


class MPIUnavailableError(RuntimeError):
    """mpiexec started this process but mpi4py cannot be imported; the message says how to install it."""


class World:
    """MPI.COMM_WORLD with the few collectives data-parallel training needs.

    rank: this process's index 0..size-1; size: K; local_rank: its index among the
    ranks on the same node (which GPU it takes), local_size how many ranks that node runs.
    """

    def __init__(self, comm: Any = None):
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise MPIUnavailableError(f"started by mpiexec, but mpi4py is not importable ({e}); install the MPI "
                                      'extra: pip install "minicoconv[mpi]"') from None
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank: int = node.Get_rank()
        self.local_size: int = node.Get_size()
        node.Free()
        # set by the trainer when every rank stopped after the same step (Ctrl-C): no abort needed
        self.stopped_together = False

    @property
    def is_root(self) -> bool:
        """Rank 0: the one that writes files and prints."""
        return self.rank == 0

    def allreduce_sum_(self, buffer: np.ndarray) -> np.ndarray:
        """buffer <- sum over ranks of buffer, in place (a contiguous NumPy array); returns it."""
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
        return buffer

    def start_allreduce_sum_(self, buffer: np.ndarray) -> Any:
        """Start buffer <- sum over ranks of buffer, in place; the returned request's Wait() finishes it."""
        return self.comm.Iallreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)

    def allreduce_max_(self, buffer: np.ndarray) -> np.ndarray:
        """buffer <- elementwise max over ranks, in place."""
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.MAX)
        return buffer

    def wait_all(self, requests: list) -> None:
        """Finish the requests returned by start_allreduce_sum_."""
        self.MPI.Request.Waitall(requests)

    def bcast(self, value: Any, root: int = 0) -> Any:
        """The root's `value` on every rank (any picklable object)."""
        return self.comm.bcast(value, root=root)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now with exit status `code` (MPI_Abort); does not return."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"
