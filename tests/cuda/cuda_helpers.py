"""Helpers shared by the CUDA backend tests (imported as `from cuda_helpers import ...`)."""

from __future__ import annotations

import numpy as np


def tolerance(dtype) -> float:
    return 1e-5 if np.dtype(dtype) == np.float32 else 1e-10


def assert_matches(be, got, expected, tol=None):
    """A CUDA backend array equals a CPU result: same shape, same dtype, close values."""
    assert hasattr(got, "copy_to_host"), f"expected a device array, got {type(got).__name__}"
    host = be.to_numpy(got)
    expected = np.asarray(expected)
    assert host.shape == expected.shape, f"shape {host.shape} != {expected.shape}"
    assert host.dtype == expected.dtype, f"dtype {host.dtype} != {expected.dtype}"
    if expected.dtype.kind in "fc":
        tol = tolerance(expected.dtype) if tol is None else tol
        np.testing.assert_allclose(host, expected, rtol=tol, atol=tol, equal_nan=True)
    else:
        np.testing.assert_array_equal(host, expected)
