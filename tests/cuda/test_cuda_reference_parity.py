"""The CUDA backend against the reference backend: the parity cases of tests/backend, run here.

The cases are written once (tests/backend/reference_cases.py) and run on every backend;
here the tiny ones run on "cuda" (a GPU, or the simulator under NUMBA_ENABLE_CUDASIM=1,
which tests/test_cuda_simulator.py sets up) in float64, and a few in float32.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))
from reference_cases import CASES, compare  # noqa: E402

pytestmark = pytest.mark.cuda
TINY = [c for c in CASES if c.tiny]
FLOAT32 = {"conv2d[plain]", "mixture_conv2d[per-channel-spatial]", "batch_norm", "expert_mixing"}


@pytest.fixture(scope="session")
def ref():
    from minicoconv.backend import get_backend

    return get_backend("reference")


@pytest.mark.parametrize("case", TINY, ids=[c.name for c in TINY])
def test_cuda_matches_reference_f64(be, ref, case):
    expected = case.run(ref, case.make(np.random.default_rng(0), np.dtype(np.float64)))
    got = case.run(be, case.make(np.random.default_rng(0), np.dtype(np.float64)))
    compare(got, expected, np.float64, case.name)


TINY_F32 = [c for c in TINY if c.name in FLOAT32]


@pytest.mark.parametrize("case", TINY_F32, ids=[c.name for c in TINY_F32])
def test_cuda_matches_reference_f32(be, ref, case):
    expected = case.run(ref, case.make(np.random.default_rng(0), np.dtype(np.float32)))
    got = case.run(be, case.make(np.random.default_rng(0), np.dtype(np.float32)))
    compare(got, expected, np.float32, case.name)
