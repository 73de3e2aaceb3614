"""cuBLAS GEMMs (through CuPy) against the tiled kernel they replace, on a real GPU.

Under the simulator there is no cuBLAS: the tiled kernel runs everywhere and these tests skip.
The row-major to column-major argument mapping itself is checked on any machine in
tests/backend/test_cublas_layout.py.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.cuda, pytest.mark.gpu_only]


@pytest.fixture
def engines(be):
    from minicoconv.backend.cuda import cublas, linalg

    if be.simulator or not cublas.available():
        pytest.skip("cuBLAS needs a real GPU and CuPy (the `cuda12`/`cuda13` extra)")
    return linalg


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", [((33, 70), (70, 45)), ((3, 17, 64), (64, 9)), ((2, 1, 5, 300), (4, 300, 7))])
def test_cublas_matches_tiled(be, engines, shapes, dtype):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(dtype) for s in shapes)
    out = {}
    for engine in ("cublas", "tiled"):
        old = engines.set_gemm_engine(engine)
        try:
            assert engines.gemm_engine() == engine
            out[engine] = be.to_numpy(be.matmul(be.asarray(a), be.asarray(b)))
        finally:
            engines.set_gemm_engine(old)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out["cublas"], out["tiled"], rtol=tol, atol=tol)
    np.testing.assert_allclose(out["cublas"], np.matmul(a, b), rtol=tol, atol=tol)


def test_conv_backward_matches_with_either_engine(be, engines, cpu):
    """The convolutions' transposed, offset and accumulated GEMM operands, through cuBLAS and the tile."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 6, 9, 9)).astype(np.float32)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((3, 8, 9, 9)).astype(np.float32)
    want = cpu.conv2d_backward(gy, x, w, None, 1, 1, 1, 2)
    for engine in ("cublas", "tiled"):
        old = engines.set_gemm_engine(engine)
        try:
            got = be.conv2d_backward(be.asarray(gy), be.asarray(x), be.asarray(w), None, 1, 1, 1, 2)
        finally:
            engines.set_gemm_engine(old)
        for g, e in zip(got, want):
            np.testing.assert_allclose(be.to_numpy(g), e, rtol=1e-4, atol=1e-4)
