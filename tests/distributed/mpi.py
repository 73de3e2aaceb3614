"""Running a command under mpiexec from a test, with a bounded time; skipping when MPI is absent.

MPI tests need mpi4py and an mpiexec (the `mpi` extra: pip install -e ".[mpi]"). Every run
has a timeout: a job that hangs fails the test instead of the CI run.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minicoconv.bench.data_parallel import find_mpiexec

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = find_mpiexec()
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or not HAVE_MPI4PY,
    reason='needs mpi4py and mpiexec (pip install -e ".[mpi]")' if HAVE_MPI4PY or MPIEXEC else
    'needs mpi4py and mpiexec, neither is installed (pip install -e ".[mpi]")')


def environment() -> dict[str, str]:
    """This process's environment, with this checkout first on PYTHONPATH and no MPI launcher variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "MV2_", "HYDRA_", "PMIX_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run(args: list[str], ranks: int | None = None, timeout: float = 300, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python ARGS` (ranks None) or `mpiexec -n RANKS python ARGS`, with `env` added to the environment;
    pytest.fail if it outlives `timeout`."""
    cmd = [sys.executable, *args]
    if ranks is not None:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**environment(), **(env or {})}, cwd=cwd or ROOT)
    except subprocess.TimeoutExpired as e:
        out = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or ""
        pytest.fail(f"{' '.join(cmd)} did not end within {timeout} s (hung?)\n--- stderr ---\n{out[-3000:]}")


def describe(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}"
