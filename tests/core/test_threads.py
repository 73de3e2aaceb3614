"""BLAS thread control (see minicoconv/threads.py): the user's setting wins, set_blas_threads changes it live,
and importing NumPy first (too late to stop OpenBLAS's idle spinning) is reported."""

from __future__ import annotations

import os
import subprocess
import sys

import minicoconv

import pytest
from threadpoolctl import threadpool_info


def run_child(code: str, **env: str) -> subprocess.CompletedProcess:
    """`python -c code` without the thread settings of this process's environment, plus `env`."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                              "OMP_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out


def blas_threads_in_child(code: str, **env: str) -> str:
    return run_child(f"{code}; print(minicoconv.blas_threads())", **env).stdout.strip().splitlines()[-1]


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


SPINNING_BLAS = any(p.get("internal_api") == "openblas" and p.get("threading_layer") == "pthreads"
                    and p["num_threads"] > 1 for p in threadpool_info())


@pytest.mark.skipif(not SPINNING_BLAS, reason="NumPy's BLAS here is not a multi-threaded pthreads OpenBLAS: "
                                              "it has no idle workers to warn about")
def test_importing_numpy_first_warns_that_openblas_workers_spin():
    err = run_child("import numpy; import minicoconv").stderr
    assert "RuntimeWarning: NumPy was imported before minicoconv" in err
    assert "OPENBLAS_THREAD_TIMEOUT=4" in err


def test_no_warning_when_minicoconv_comes_first_or_the_timeout_is_set():
    first = run_child("import os, minicoconv, numpy; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])")
    assert first.stdout.strip() == "4" and "RuntimeWarning" not in first.stderr
    assert "RuntimeWarning" not in run_child("import numpy; import minicoconv", OPENBLAS_THREAD_TIMEOUT="4").stderr
    assert "RuntimeWarning" not in run_child("import numpy; import minicoconv", OPENBLAS_NUM_THREADS="1").stderr
