"""Data-parallel training under mpiexec (skipped without mpi4py and mpiexec: pip install -e ".[mpi]").

Every run has a timeout, so a hang fails the test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.distributed.mpi import MPIEXEC, ROOT, describe, environment, needs_mpi, run

pytestmark = [needs_mpi, pytest.mark.mpi]
SCRIPTS = "tests/distributed/mpi_scripts"


@pytest.mark.parametrize("ranks, batch, extra", [(2, 16, []), (3, 7, []), (3, 3, ["--no-odconv"]),
                                                 (2, 16, ["--no-sync-bn"])])
def test_data_parallel_steps_equal_one_process_in_float64(ranks, batch, extra):
    """2 SGD steps: losses, weights, momentum, BN statistics, generator to 1e-10 (and differ without --sync-bn)."""
    done = run([f"{SCRIPTS}/step_equivalence.py", str(batch), *extra], ranks=ranks, timeout=240)
    assert done.returncode == 0, describe(done)


@pytest.mark.slow
def test_cuda_ranks_take_their_gpu_and_equal_one_cpu_process_under_the_simulator():
    """--device cuda with 2 ranks: GPU selection before the backend loads, host-staged allreduce, sync-BN on
    device arrays; float64 steps equal one CPU process to 1e-10 (numba's CUDA simulator, one shared GPU)."""
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip('numba\'s CUDA target is not installed: pip install "minicoconv[cuda12]"')
    done = run([f"{SCRIPTS}/cuda_ranks.py"], ranks=2, timeout=600, env={"NUMBA_ENABLE_CUDASIM": "1"})
    assert done.returncode == 0, describe(done)
    assert done.stdout.count("GPU 0, worst relative difference") == 2, describe(done)


@pytest.mark.parametrize("how", ["raise", "exit"])
def test_a_failing_rank_ends_the_whole_job_with_its_message(tmp_path, how):
    done = run([f"{SCRIPTS}/failing_rank.py", str(tmp_path / "run"), how], ranks=2, timeout=120)
    assert done.returncode != 0, describe(done)
    assert "rank 1 of 2 ended with status" in done.stderr, describe(done)
    if how == "raise":
        assert "rank 1 gives up at step 2" in done.stderr, describe(done)
    assert not list((tmp_path / "run").glob("*.npz")), "nothing may be saved before the first epoch ends"


TRAIN = ["-m", "minicoconv.cli.main", "train", "--model", "resnet18", "--synthetic", "--synthetic-train", "48",
         "--synthetic-test", "16", "--batch-size", "12", "--max-steps", "2", "--no-progress", "--sync-bn"]
# the one-process runs also check that train without mpiexec never imports mpi4py
ONE_PROCESS = ["-c", "import sys; from minicoconv.cli.main import main; rc = main(sys.argv[1:]); "
               "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'; sys.exit(rc)"]


def _metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _close(a: float, b: float, rel: float = 1e-4) -> bool:
    return abs(a - b) <= rel * abs(a)


@pytest.mark.slow
def test_two_ranks_with_sync_bn_equal_one_process_and_checkpoints_are_interchangeable(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    done = run(["-c", ONE_PROCESS[1], "train", *TRAIN[3:], "--epochs", "2", "--out", str(one)], timeout=600)
    assert done.returncode == 0, describe(done)
    done = run([*TRAIN, "--epochs", "2", "--out", str(two)], ranks=2, timeout=600)
    assert done.returncode == 0, describe(done)
    a, b = _metrics(one), _metrics(two)
    assert len(a) == len(b) == 2, "rank 0 alone writes metrics.jsonl: one line per epoch"
    for ra, rb in zip(a, b):
        for key in ("train_loss", "test_loss"):
            assert _close(ra[key], rb[key]), (key, ra[key], rb[key])
    ca, cb = np.load(one / "last.npz"), np.load(two / "last.npz")
    assert sorted(ca.files) == sorted(cb.files)
    assert str(ca["config"]).replace(str(one), "") == str(cb["config"]).replace(str(two), "")
    for key in ca.files:
        if key.startswith("model/"):
            np.testing.assert_allclose(ca[key], cb[key], rtol=0, atol=1e-4, err_msg=key)
    assert sorted(p.name for p in two.iterdir()) == ["best.npz", "config.json", "last.npz", "metrics.jsonl"]
    # swap: the 2-rank checkpoint continues in one process, the one-process checkpoint on 2 ranks
    done = run(["-c", ONE_PROCESS[1], "train", "--out", str(two), "--resume", "--epochs", "3"], timeout=600)
    assert done.returncode == 0, describe(done)
    done = run(["-m", "minicoconv.cli.main", "train", "--out", str(one), "--resume", "--epochs", "3"], ranks=2,
               timeout=600)
    assert done.returncode == 0, describe(done)
    a, b = _metrics(one), _metrics(two)
    assert len(a) == len(b) == 3
    assert _close(a[2]["train_loss"], b[2]["train_loss"]), (a[2]["train_loss"], b[2]["train_loss"])


@pytest.mark.slow
def test_bench_reports_scaling(tmp_path):
    out = tmp_path / "dp.json"
    done = run(["-m", "minicoconv.cli.main", "bench", "--data-parallel", "2", "--model", "resnet18", "--batch-size",
                "4", "--repeats", "1", "--warmup", "0", "--json", str(out)], timeout=600)
    assert done.returncode == 0, describe(done)
    rows = json.loads(out.read_text())["data_parallel"]
    assert [r["ranks"] for r in rows] == [1, 2]
    assert rows[0]["efficiency"] == 1.0 and rows[1]["allreduce_ms"] > 0
    assert "efficiency" in done.stdout


@pytest.mark.slow
def test_ctrl_c_under_mpiexec_stops_every_rank_after_one_step_and_saves(tmp_path):
    """A terminal's Ctrl-C (SIGINT to mpiexec's process group): all ranks finish the same step, rank 0 saves,
    the job exits with 130 without MPI_Abort, and the checkpoint resumes."""
    folder = tmp_path / "run"
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "minicoconv.cli.main", "train", "--model", "resnet18",
           "--synthetic", "--synthetic-train", "16", "--synthetic-test", "8", "--batch-size", "8", "--epochs", "1000",
           "--sync-bn", "--no-progress", "--out", str(folder)]
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(),
                           cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while job.poll() is None and time.monotonic() < deadline and not (folder / "last.npz").exists():
            time.sleep(0.5)  # the first epoch (2 steps) has ended once last.npz exists
        assert job.poll() is None, "the job ended before it could be interrupted"
        time.sleep(1.0)
        os.killpg(job.pid, signal.SIGINT)
        out, err = job.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        out, err = job.communicate()
        pytest.fail(f"the job did not end within 120 s of Ctrl-C (hung?)\n{err[-3000:]}")
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.communicate()
    assert job.returncode == 130, f"exit {job.returncode}\n{out[-2000:]}\n{err[-3000:]}"
    assert "Interrupted at epoch" in out and "aborting every rank" not in err, f"{out[-2000:]}\n{err[-3000:]}"
    saved = np.load(folder / "last.npz")
    assert int(saved["global_step"]) >= 2, "the save is after the last completed step (one epoch is 2 steps)"
    epochs = len(_metrics(folder))  # completed epochs; the interrupted one is finished by the resume
    done = run(["-m", "minicoconv.cli.main", "train", "--out", str(folder), "--resume", "--epochs",
                str(epochs + 1)], ranks=2, timeout=600)
    assert done.returncode == 0, describe(done)
    assert len(_metrics(folder)) == epochs + 1
