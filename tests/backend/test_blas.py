"""blas.gemm / blas.matmul (GEMMs as single-threaded BLAS calls inside Numba's pool) against np.matmul
in float64: every operand layout (row-major, transposed, strided, shared across the batch),
accumulation, empty shapes, 1 and 2 Numba threads; NumPy's BLAS thread count is put back."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_checks import EXAMPLES
from threadpoolctl import threadpool_info

from minicoconv.backend.cpu import blas


def operand(rng, batch, rows, cols, dtype, layout):
    """A (batch, rows, cols) array (2-d when batch is None) stored row-major, transposed or strided."""
    lead = () if batch is None else (batch,)
    if layout == "transposed":
        return rng.standard_normal(lead + (cols, rows)).astype(dtype).swapaxes(-1, -2)
    if layout == "strided":
        return rng.standard_normal(lead + (2 * rows, 3 * cols)).astype(dtype)[..., ::2, ::3]
    return rng.standard_normal(lead + (rows, cols)).astype(dtype)


def tolerance(dtype, k):
    return dict(rtol=1e-4, atol=1e-4 * max(1, k)) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)


@pytest.fixture(scope="module", params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    if request.param > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("Numba has a single thread here")
    before = numba.get_num_threads()
    numba.set_num_threads(request.param)
    yield request.param
    numba.set_num_threads(before)


LAYOUTS = st.sampled_from(["row", "transposed", "strided"])


@EXAMPLES
@given(batch=st.sampled_from([None, 1, 3, 4]), m=st.integers(0, 70), k=st.integers(0, 40), n=st.integers(0, 70),
       a_layout=LAYOUTS, b_layout=LAYOUTS, shared=st.sampled_from([None, "a", "b"]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_gemm_matches_matmul(threads, batch, m, k, n, a_layout, b_layout, shared, dtype, seed):
    rng = np.random.default_rng(seed)
    a = operand(rng, None if shared == "a" else batch, m, k, dtype, a_layout)
    b = operand(rng, None if shared == "b" else batch, k, n, dtype, b_layout)
    out = np.full(((batch,) if batch is not None else ()) + (m, n), np.nan, dtype=dtype)
    expected = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert blas.gemm(a, b, out) is out
    np.testing.assert_allclose(out, expected, **tolerance(dtype, k))
    blas.gemm(a, b, out, accumulate=True)
    np.testing.assert_allclose(out, 2 * expected, **tolerance(dtype, k))


def test_large_gemm_split_across_threads(threads):
    rng = np.random.default_rng(0)
    for m, k, n in [(64, 300, 1000), (700, 200, 48), (33, 17, 65)]:
        a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
        np.testing.assert_allclose(blas.gemm(a, b, np.empty((m, n))), a @ b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shapes", [((2, 3, 4, 5), (3, 5, 6)), ((4, 5), (2, 1, 5, 6)), ((7, 4, 5), (5, 2)),
                                    ((1, 4, 5), (3, 5, 2)), ((3, 4), (4,)), ((0, 4, 5), (5, 3))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_matmul_broadcasts_like_numpy(shapes, dtype):
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal(s).astype(dtype) if dtype != np.int64 else rng.integers(-5, 5, s) for s in shapes)
    got, expected = blas.matmul(a, b), np.matmul(a, b)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, **tolerance(dtype if dtype != np.int64 else np.float64, a.shape[-1]))


def test_gemm_restores_numpys_blas_thread_count():
    before = [p["num_threads"] for p in threadpool_info()]
    a = np.ones((64, 64), dtype=np.float32)
    blas.gemm(a, a, np.empty_like(a))
    assert [p["num_threads"] for p in threadpool_info()] == before


def test_binding_names_the_blas():
    assert isinstance(blas.binding(), str) and blas.binding()


@pytest.mark.parametrize("case, message", [
    (lambda: blas.gemm(np.ones((2, 3)), np.ones((4, 2)), np.empty((2, 2))), "expected a"),
    (lambda: blas.gemm(np.ones((2, 3), np.float32), np.ones((3, 2)), np.empty((2, 2))), "one dtype"),
    (lambda: blas.gemm(np.ones((2, 3), int), np.ones((3, 2), int), np.empty((2, 2), int)), "float32 or float64"),
    (lambda: blas.gemm(np.ones((3, 2, 3)), np.ones((2, 3, 2)), np.empty((3, 2, 2))), "expected a"),
    (lambda: blas.gemm(np.ones((2, 3)), np.ones((3, 2)), np.empty((2, 4))[:, ::2]), "contiguous rows"),
    (lambda: blas.gemm(np.ones(3), np.ones((3, 2)), np.empty((1, 2))), "2-d or 3-d"),
])
def test_gemm_refuses_bad_arguments(case, message):
    with pytest.raises(ValueError, match=message):
        case()


def test_gemm_refuses_an_output_that_overlaps_an_input():
    buf = np.ones((4, 4))
    with pytest.raises(ValueError, match="overlap"):
        blas.gemm(buf, np.ones((4, 4)), buf)
