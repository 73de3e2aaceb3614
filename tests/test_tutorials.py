"""Every tutorial imports silently and runs to completion in its --quick mode, drawing its pictures.

Tutorials are found by the glob ``tutorials/[0-9]*.py``, so a new one is tested as
soon as it is added. Each is checked twice, in a subprocess from the repository root:

- imported (not run) by path, after NumPy (and PyTorch, when installed), with warnings
  as errors: it must print nothing, leave os.environ alone and define ``main``, so a
  notebook can import it and call its functions;
- run with ``--quick --plots DIR``: it must exit 0 and write the pictures listed in
  PICTURES for it (PNG files). Tutorials whose file name contains "gpu" run with
  ``NUMBA_ENABLE_CUDASIM=1`` (the CUDA simulator, when no GPU is present).
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
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: the pictures each tutorial's --plots writes (a tutorial not listed must write at least one PNG)
PICTURES = {
    "01_tensors_and_autodiff.py": ["01_line_fit_loss.png"],
    "02_im2col_convolution.py": ["02_im2col_matrix.png"],
    "03_pooling_and_batchnorm.py": ["03_running_statistics.png"],
    "04_dynamic_convolutions.py": ["04_mixed_kernels.png", "04_routing_per_image.png", "04_coconv_channel_gates.png"],
    "05_train_cifar100.py": ["05_training_curves.png"],
    "06_gpu_backend.py": ["06_threads_to_elements.png"],
    "07_odconv_and_dgc.py": ["07_odconv_spatial_attention.png", "07_temperature_routing.png"],
    "08_write_your_own_conv.py": ["08_routing_and_gate.png", "08_training_loss.png"],
    "09_data_parallel.py": ["09_shard_gradients.png"],
}

IMPORT_CHECK = """
import importlib.util, os, sys
import numpy
try:
    import torch  # noqa: F401  (the order users have: NumPy and PyTorch first)
except ImportError:
    pass
before = dict(os.environ)
spec = importlib.util.spec_from_file_location("tutorial_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
assert callable(getattr(module, "main", None)), "no main() function"
assert dict(os.environ) == before, "importing the tutorial changed os.environ"
assert not any(m == "numba.cuda" for m in sys.modules) or "gpu" not in sys.argv[1], "imported numba.cuda"
"""


def _env(path: Path) -> dict:
    env = dict(os.environ)
    if "gpu" in path.name:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


def test_tutorials_are_found():
    assert TUTORIALS, f"no tutorials matched {ROOT / 'tutorials' / '[0-9]*.py'}"


def test_the_tutorials_draw_at_least_six_pictures():
    named = [p.name for p in TUTORIALS]
    assert sum(len(PICTURES.get(n, [None])) for n in named) >= 6
    for required in ("04_routing_per_image.png", "04_coconv_channel_gates.png", "04_mixed_kernels.png",
                     "07_odconv_spatial_attention.png", "07_temperature_routing.png", "05_training_curves.png"):
        assert any(required in PICTURES.get(n, []) for n in named), f"no tutorial draws {required}"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_imports_silently(path: Path):
    result = subprocess.run([sys.executable, "-W", "error", "-c", IMPORT_CHECK, str(path)], cwd=ROOT,
                            env=dict(os.environ), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, f"importing {path.name} failed:\n{result.stderr[-3000:]}"
    assert result.stdout == "" and result.stderr == "", (
        f"importing {path.name} printed something:\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}")


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs_and_draws(path: Path, tmp_path: Path):
    plots = tmp_path / "plots"
    command = [sys.executable, str(path), "--quick", "--plots", str(plots)]
    if path.name.startswith(("05_", "08_")):
        command += ["--out", str(tmp_path / "run")]  # not runs/tutorialNN inside the repository
    try:
        result = subprocess.run(command, cwd=ROOT, env=_env(path), capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else err.stdout or ""
        pytest.fail(f"{path.name} --quick did not finish in {TIMEOUT_S} s\n--- stdout (tail) ---\n{out[-2000:]}")
    assert result.returncode == 0, (
        f"{path.name} --quick exited with {result.returncode}\n"
        f"--- stderr ---\n{result.stderr[-5000:]}\n--- stdout (tail) ---\n{result.stdout[-2000:]}"
    )
    written = sorted(p.name for p in plots.glob("*.png")) if plots.is_dir() else []
    expected = PICTURES.get(path.name)
    if expected is None:
        assert written, f"{path.name} --plots wrote no PNG"
    else:
        assert sorted(expected) == written, f"{path.name}: expected pictures {expected}, got {written}"
    for name in written:
        data = (plots / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000, f"{name} is not a real PNG"
    if path.name.startswith("05_"):
        run = tmp_path / "run"
        assert (run / "metrics.jsonl").is_file() and (run / "last.npz").is_file(), "tutorial 05 kept no run folder"
        from minicoconv.cli.main import main as cli

        assert cli(["plot", str(run)]) == 0 and (run / "curves.png").is_file(), "the `minicoconv plot` hint fails"
