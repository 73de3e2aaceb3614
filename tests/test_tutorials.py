"""Every tutorial runs to completion in its --quick mode.

Tutorials are found by the glob ``tutorials/[0-9]*.py``, so a new one is tested
as soon as it is added. Each runs as a subprocess from the repository root,
with ``NUMBA_ENABLE_CUDASIM=1`` for tutorials whose file name contains "gpu"
(so they run on the CUDA simulator when no GPU is present).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9]*.py"))
TIMEOUT_S = 300


def test_tutorials_are_found():
    assert TUTORIALS, f"no tutorials matched {ROOT / 'tutorials' / '[0-9]*.py'}"


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs(path: Path):
    env = dict(os.environ)
    if "gpu" in path.name:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    try:
        result = subprocess.run(
            [sys.executable, str(path), "--quick"], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else err.stdout or ""
        pytest.fail(f"{path.name} --quick did not finish in {TIMEOUT_S} s\n--- stdout (tail) ---\n{out[-2000:]}")
    assert result.returncode == 0, (
        f"{path.name} --quick exited with {result.returncode}\n"
        f"--- stderr ---\n{result.stderr[-5000:]}\n--- stdout (tail) ---\n{result.stdout[-2000:]}"
    )
