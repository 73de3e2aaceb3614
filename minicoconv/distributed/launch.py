"""The entry point of `minicoconv train` under mpiexec: run on every rank, abort the job if any rank fails.

A rank that stops while the others wait in a collective would leave them waiting for
ever (MPI has no timeout). So every way out of a rank other than success (an exception,
a non-zero exit status, argparse's SystemExit) prints that rank's message and calls
MPI_Abort, which ends every process of the job with that status. The one exception is an
orderly Ctrl-C: every rank stopped after the same step and rank 0 saved, so each simply
exits with status 130.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable

from .world import MPIUnavailableError, World


def run_under_mpi(train: Callable[[argparse.Namespace, World], int], args: argparse.Namespace) -> int:
    """train(args, world) on this rank; its status if 0 or an orderly Ctrl-C (130), else MPI_Abort(status)."""
    try:
        world = World()
    except MPIUnavailableError as e:  # no collective has started: every rank can just exit
        print(f"minicoconv train: {e}", file=sys.stderr)
        return 1
    try:
        code = train(args, world)
    except SystemExit as e:  # argparse's error(): it has printed the message
        code = e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # noqa: BLE001 - anything else: say what and where, then end the job
        print(f"minicoconv train: rank {world.rank} of {world.size} failed:", file=sys.stderr)
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
        code = 130 if isinstance(e, KeyboardInterrupt) else 1
    if code == 130 and world.stopped_together:  # Ctrl-C: every rank stopped after the same step, rank 0 saved
        return code
    if code:
        print(f"minicoconv train: rank {world.rank} of {world.size} ended with status {code}: aborting every rank",
              file=sys.stderr)
        world.abort(code)
    return 0
