"""Tests of the numba.cuda backend against the CPU backend (device "cuda").

They run for real on an NVIDIA GPU, and on the CPU under numba's CUDA simulator when
NUMBA_ENABLE_CUDASIM=1 is set before numba is imported. Anywhere else every test here
is skipped with the reason; `tests/test_cuda_simulator.py` then runs this folder in a
subprocess with the simulator switched on, so the default `python -m pytest` covers
the backend on a CPU-only machine. Select these tests alone with `-m cuda`.

Shapes are tiny: the simulator runs every GPU thread as a Python thread.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def cuda_unavailable_reason() -> str | None:
    """None when the CUDA backend can run here (a GPU or the simulator), else why not."""
    try:
        from numba import cuda
    except ImportError as err:
        return f"numba's CUDA target is not installed ({err})"
    if cuda.is_available():
        return None
    return ("no CUDA GPU here and NUMBA_ENABLE_CUDASIM is not set; "
            "tests/test_cuda_simulator.py runs these tests under the simulator")


def pytest_collection_modifyitems(config, items):
    reason = cuda_unavailable_reason()
    if reason is None:
        return
    for item in items:  # (this hook sees every collected test: keep to this folder's)
        if HERE in Path(item.fspath).resolve().parents:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def be():
    """The CUDA backend."""
    from minicoconv.backend import get_backend

    return get_backend("cuda")


@pytest.fixture(scope="session")
def cpu():
    """The CPU backend, the reference every CUDA result is compared with."""
    from minicoconv.backend import get_backend

    return get_backend("cpu")


@pytest.fixture(scope="module", autouse=True)
def one_numba_thread():
    """The CPU references run on tiny arrays, where waking Numba's thread pool costs more than the work."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(previous)
