"""BLAS thread control (see minicoconv/threads.py): the user's setting wins, set_blas_threads changes it live."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import minicoconv


def blas_threads_in_child(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                              "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", f"{code}; print(minicoconv.blas_threads())"],
                         env={**clean, **env}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_a_users_blas_setting_is_left_alone():
    assert blas_threads_in_child("import minicoconv", OPENBLAS_NUM_THREADS="1") == "1"


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS caps its threads at the number of cores")
def test_set_blas_threads_changes_a_running_process():
    assert blas_threads_in_child("import numpy, minicoconv; minicoconv.set_blas_threads(1)") == "1"
    assert blas_threads_in_child("import minicoconv; minicoconv.set_blas_threads(2)",
                                 OPENBLAS_NUM_THREADS="1") == "2"


def test_set_blas_threads_refuses_zero():
    with pytest.raises(ValueError, match="n must be >= 1"):
        minicoconv.set_blas_threads(0)
