"""Batch norm far from zero: the cases where folding the mean into a shift cancels.

Shared by the CPU test (tests/backend) and the CUDA test (tests/cuda), each passing its
backend `be` and a `to_host` that brings a result back as a NumPy array.
"""

from __future__ import annotations

import numpy as np


def constant_channel() -> np.ndarray:
    """(2, 1, 3, 3) float32, every value 1e6: the normalised output is exactly 0."""
    return np.full((2, 1, 3, 3), 1e6, dtype=np.float32)


def offset_channel() -> np.ndarray:
    """(4, 1, 8, 8) float32 at 1e4 with unit spread (values exact in float32)."""
    rng = np.random.default_rng(0)
    return (1e4 + np.round(rng.standard_normal((4, 1, 8, 8)) * 64) / 64).astype(np.float32)


def check_train_forward(be, to_host) -> None:
    """Training mode: constant channel -> 0; offset channel within 1e-5 of the float64 result (std units)."""
    y, _, _ = be.batch_norm_train_forward(be.asarray(constant_channel()), None, None, 1e-5)
    np.testing.assert_array_equal(to_host(y), 0.0)
    x = offset_channel()
    y, _, _ = be.batch_norm_train_forward(be.asarray(x), None, None, 1e-5)
    x64 = x.astype(np.float64)
    exact = (x64 - x64.mean()) / np.sqrt(x64.var() + 1e-5)
    assert np.abs(to_host(y) - exact).max() < 1e-5   # folding the mean gave 2.4e-4


def check_eval_forward(be, to_host) -> None:
    """Eval mode with the running mean at the data's level: constant channel -> bias exactly."""
    x = constant_channel()
    one = np.ones(1, np.float32)
    y = be.batch_norm_eval_forward(be.asarray(x), be.asarray(np.full(1, 1e6, np.float32)), be.asarray(one * 1e-3),
                                   be.asarray(one * 3), be.asarray(one * 0.5), 1e-5)
    np.testing.assert_array_equal(to_host(y), 0.5)
