"""BLAS runs single-threaded beside Numba unless the user chose a count (see minicoconv/threads.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPORT = ("from threadpoolctl import threadpool_info; "
          "print(sorted({p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'}))")


def blas_threads_in_child(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                              "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", f"{code}; {REPORT}"], env={**clean, **env}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("code", ["import minicoconv", "import numpy, minicoconv"],
                         ids=["minicoconv first", "numpy first"])
def test_blas_is_single_threaded_by_default(code):
    assert blas_threads_in_child(code) == "[1]"


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS caps its threads at the number of cores")
def test_a_users_blas_setting_is_left_alone_and_set_blas_threads_changes_it():
    assert blas_threads_in_child("import minicoconv", OPENBLAS_NUM_THREADS="2") == "[2]"
    assert blas_threads_in_child("import minicoconv; minicoconv.set_blas_threads(2)") == "[2]"


def test_set_blas_threads_refuses_zero():
    import minicoconv

    with pytest.raises(ValueError, match="n must be >= 1"):
        minicoconv.set_blas_threads(0)
