"""The CUDA backend's tests (tests/cuda) under numba's CUDA simulator, on any machine.

numba reads NUMBA_ENABLE_CUDASIM when it is first imported, and this process has long
imported numba for the CPU kernels, so the simulator run is a subprocess: it runs
`python -m pytest tests/cuda` with NUMBA_ENABLE_CUDASIM=1 and must pass. On a machine
with a GPU, tests/cuda also runs for real in this process (select it with `-m cuda`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 900


def _numba_cuda():
    try:
        from numba import cuda
    except ImportError as err:
        pytest.skip(f"numba's CUDA target is not installed ({err}): pip install \"minicoconv[cuda12]\"")
    return cuda


@pytest.mark.slow
def test_cuda_backend_under_the_simulator():
    _numba_cuda()
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    command = [sys.executable, "-m", "pytest", "tests/cuda", "-p", "no:cacheprovider", "-m", "not gpu_only"]
    try:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the simulator run of tests/cuda did not finish in {TIMEOUT_S} s")
    report = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0, f"NUMBA_ENABLE_CUDASIM=1 {' '.join(command[1:])} failed:\n{report}"
    assert " passed" in result.stdout and "skipped" not in result.stdout.splitlines()[-1], report


def test_cuda_without_a_gpu_is_one_clear_error():
    """Without a GPU (and without the simulator), asking for "cuda" says what is missing and how to fix it."""
    cuda = _numba_cuda()
    if cuda.is_available():
        pytest.skip("a CUDA GPU (or the simulator) is available here")
    import minicoconv as mc

    with pytest.raises(RuntimeError, match="device 'cuda' is not available") as err:
        mc.zeros(2, device="cuda")
    assert "minicoconv[cuda12]" in str(err.value) and "NUMBA_ENABLE_CUDASIM=1" in str(err.value)
