"""The multi-tensor SGD update of the CUDA backend against the CPU's per-parameter update."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_helpers import assert_matches

from minicoconv.backend.cuda import sgd as cuda_sgd
from minicoconv.backend.cuda.counters import counting

pytestmark = pytest.mark.cuda


def _tensors(n, seed=0):
    """n parameters and gradients of mixed sizes and both float dtypes."""
    rng = np.random.default_rng(seed)
    shapes = [(3,), (2, 5), (1,), (7,), (1, 1, 2)]
    dtypes = [np.float32, np.float64]
    out = []
    for k in range(n):
        shape, dtype = shapes[k % len(shapes)], dtypes[(k // 2) % 2]
        out.append((rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)))
    return out


@pytest.mark.parametrize("momentum,weight_decay,nesterov", [(0.0, 0.0, False), (0.9, 5e-4, False), (0.9, 0.0, True)])
def test_many_equals_one_at_a_time_on_the_cpu(be, cpu, momentum, weight_decay, nesterov):
    n = cuda_sgd.CHUNK + 5  # more than one launch of a dtype
    pairs = _tensors(n)
    params = [be.asarray(p) for p, _ in pairs]
    host = [p.copy() for p, _ in pairs]
    bufs, ref_bufs = [None] * n, [None] * n
    for step in range(3):  # the first step makes the buffers, later ones use them
        grads = [np.asarray(g * (step + 1)) for _, g in pairs]  # (a 0-d product is a NumPy scalar)
        bufs = be.sgd_update_many(params, [be.asarray(g) for g in grads], bufs, 0.1, momentum, weight_decay,
                                  nesterov)
        ref_bufs = [cpu.sgd_update(p, g, b, 0.1, momentum, weight_decay, nesterov)
                    for p, g, b in zip(host, grads, ref_bufs)]
    for got, want in zip(params, host):
        assert_matches(be, got, want)
    for got, want in zip(bufs, ref_bufs):
        assert (got is None) == (want is None)
        if want is not None:
            assert_matches(be, got, want)


def test_launches_per_chunk_of_one_dtype(be):
    pairs = _tensors(2 * cuda_sgd.CHUNK + 4)  # CHUNK + 2 tensors of each dtype
    params = [be.asarray(p) for p, _ in pairs]
    grads = [be.asarray(g) for _, g in pairs]
    with counting(run_kernels=False) as c:
        be.sgd_update_many(params, grads, [None] * len(params), 0.1, 0.9, 0.0, False)
    assert c.by_kernel["_sgd_many_kernel"] == c.launches == 4


def test_many_validates_every_triple(be):
    p = be.asarray(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="sgd_update_many: expected grad of shape"):
        be.sgd_update_many([p], [be.asarray(np.ones(4, np.float32))], [None], 0.1, 0.0, 0.0, False)
    with pytest.raises(ValueError, match="as many params, grads and bufs"):
        be.sgd_update_many([p], [], [None], 0.1, 0.0, 0.0, False)
    with pytest.raises(ValueError, match="CUDA device array"):
        be.sgd_update_many([p], [np.ones(3, np.float32)], [None], 0.1, 0.0, 0.0, False)
