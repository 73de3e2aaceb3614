"""The reference backend against the CPU backend: every primitive, float32 and float64.

The cases (tests/backend/reference_cases.py) are written once; tests/cuda runs the same
ones against the CUDA backend.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference_cases import CASES, compare

from minicoconv.backend import get_backend


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reference_matches_cpu(case, dtype):
    ref, cpu = get_backend("reference"), get_backend("cpu")
    expected = case.run(cpu, case.make(np.random.default_rng(0), np.dtype(dtype)))
    got = case.run(ref, case.make(np.random.default_rng(0), np.dtype(dtype)))
    compare(got, expected, dtype, case.name)
