"""The gathered convolution (DGC's sparse inference): the CUDA backend, which runs the generic
form on `Backend` (gathered kernels + per-sample convolution), against the CPU kernel."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_helpers import assert_matches

pytestmark = pytest.mark.cuda


def case(dtype, kernel, kept, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 4, 5, 4)).astype(dtype)
    weight = rng.standard_normal((2, 3, 4, kernel, kernel)).astype(dtype)
    idx = np.sort(np.argsort(rng.random((2, 2, 4)), axis=2)[..., :kept], axis=2)
    scale = rng.uniform(0.1, 2.0, idx.shape).astype(dtype)
    return x, weight, idx, scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (1, 2, 0)])
def test_gathered_conv_matches_cpu(be, cpu, dtype, kernel, stride, padding):
    for kept in (0, 2):
        x, weight, idx, scale = case(dtype, kernel, kept)
        args = ((stride, stride), (padding, padding))
        got = be.gathered_conv2d_forward(be.asarray(x), be.asarray(weight), idx, be.asarray(scale), *args)
        assert_matches(be, got, cpu.gathered_conv2d_forward(x, weight, idx, scale, *args))


def test_bad_indices_are_refused(be):
    x, weight, idx, scale = case(np.float64, 3, 2)
    with pytest.raises(ValueError, match=r"idx in \[0, C\)"):
        be.gathered_conv2d_forward(be.asarray(x), be.asarray(weight), idx + 3, be.asarray(scale), 1, 1)
