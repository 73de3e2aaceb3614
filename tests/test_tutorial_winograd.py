"""Tutorial 10 (Winograd): imports silently under -W error with NumPy first, and --plots writes a PNG.

(tests/test_tutorials.py already runs every tutorial in --quick mode; this file adds the checks
specific to tutorial 10 without editing that shared file.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "tutorials" / "10_winograd.py"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def test_importing_the_tutorial_is_silent():
    code = ("import numpy, importlib.util; "
            f"spec = importlib.util.spec_from_file_location('tutorial10', {str(TUTORIAL)!r}); "
            "spec.loader.exec_module(importlib.util.module_from_spec(spec))")
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "" and result.stderr == ""


@pytest.mark.slow
def test_quick_run_checks_the_engine_and_writes_a_plot(tmp_path):
    result = subprocess.run([sys.executable, "-W", "error", str(TUTORIAL), "--quick", "--plots", str(tmp_path)],
                            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cpu dW" in result.stdout and "F(4x4,3x3)" in result.stdout
    png = tmp_path / "10_winograd_precision.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
