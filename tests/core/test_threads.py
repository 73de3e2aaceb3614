"""Threads (see minicoconv/threads.py): importing changes nothing outside the package, in any import
order; set_num_threads is the one explicit setting; NumPy's BLAS setting is the user's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import minicoconv

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT",
                    "OMP_WAIT_POLICY", "KMP_DUPLICATE_LIB_OK", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")

# a convolution: runs parallel Numba kernels, so Numba's layer is chosen by then
CONV = "minicoconv.nn.Conv2d(3, 4, 3)(minicoconv.randn(2, 3, 8, 8))"


def run_child(code: str, **env: str) -> subprocess.CompletedProcess:
    """`python -W error -c code` without this process's thread settings, plus `env`."""
    clean = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], env={**clean, **env}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out


@pytest.mark.parametrize("first", ["import minicoconv, numpy", "import numpy, minicoconv",
                                   "import numpy, numba, minicoconv"])
def test_import_changes_no_environment_variable_and_warns_nothing(first):
    code = f"import os; before = dict(os.environ); {first}; print(dict(os.environ) == before)"
    out = run_child(code)
    assert out.stdout.strip() == "True"
    assert out.stderr == ""


def test_import_with_torch_first_is_silent():
    pytest.importorskip("torch")
    out = run_child("import os; before = dict(os.environ); import numpy, torch, minicoconv; "
                    "print(dict(os.environ) == before)")
    assert out.stdout.strip() == "True" and out.stderr == ""


def test_import_leaves_numpy_blas_and_numba_threads_alone():
    # libraries loaded before minicoconv keep their thread counts (importing it may load others)
    code = ("import numba, numpy; from threadpoolctl import threadpool_info; "
            "info = lambda: {p['filepath']: p['num_threads'] for p in threadpool_info()}; "
            "b, n = info(), numba.get_num_threads(); import minicoconv; a = info(); "
            "print(all(a[k] == v for k, v in b.items()), numba.get_num_threads() == n)")
    assert run_child(code).stdout.split() == ["True", "True"]


def test_the_first_cpu_tensor_chooses_the_workqueue_layer_not_the_import():
    code = ("import numba, minicoconv; print(numba.config.THREADING_LAYER); minicoconv.randn(2, 2); "
            f"print(numba.config.THREADING_LAYER); {CONV}; print(numba.threading_layer())")
    assert run_child(code).stdout.split() == ["default", "workqueue", "workqueue"]


@pytest.mark.parametrize("how", ["env", "config", "launched"])
def test_a_layer_the_process_chose_is_kept(how):
    pytest.importorskip("numba.np.ufunc.omppool", reason="Numba has no OpenMP layer here")
    setup = {"env": "", "config": "numba.config.THREADING_LAYER = 'omp'; ",
             "launched": "import numpy; numba.config.THREADING_LAYER = 'omp'; "
                         "numba.njit(parallel=True)(lambda a: a + 1)(numpy.ones(9)); "
                         "numba.config.THREADING_LAYER = 'default'; "}[how]
    env = {"NUMBA_THREADING_LAYER": "omp"} if how == "env" else {}
    code = f"import numba; {setup}import minicoconv; {CONV}; print(numba.threading_layer())"
    assert run_child(code, **env).stdout.split() == ["omp"]


def test_a_users_blas_setting_is_left_alone_by_a_training_step():
    code = ("import minicoconv as mc; from minicoconv import nn; "
            "conv = nn.Conv2d(3, 4, 3, padding=1); conv(mc.randn(2, 3, 8, 8)).sum().backward(); "
            "print(mc.blas_threads())")
    assert run_child(code, OPENBLAS_NUM_THREADS="1").stdout.strip().splitlines()[-1] == "1"


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS caps its threads at the number of cores")
def test_set_blas_threads_changes_a_running_process():
    assert run_child("import numpy, minicoconv; minicoconv.set_blas_threads(1); "
                     "print(minicoconv.blas_threads())").stdout.strip() == "1"


def test_set_num_threads_sets_numbas_count_and_refuses_bad_counts():
    import numba

    before = numba.get_num_threads()
    try:
        assert minicoconv.set_num_threads(1) == 1 == minicoconv.get_num_threads() == numba.get_num_threads()
        assert minicoconv.set_num_threads(10_000) == numba.config.NUMBA_NUM_THREADS  # capped, not an error
    finally:
        numba.set_num_threads(before)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n must be an int >= 1"):
            minicoconv.set_num_threads(bad)


def test_set_blas_threads_refuses_zero():
    with pytest.raises(ValueError, match="n must be >= 1"):
        minicoconv.set_blas_threads(0)
