"""Tests for the gathered convolution (DGC's sparse inference): the CPU kernel
(minicoconv/backend/cpu/gathered_conv.py) and the generic form on `Backend`.

Oracle: direct loops in float64, one sample and group at a time, each term a strided slice
of the zero-padded input channel.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicoconv.backend import get_backend
from minicoconv.backend.base import Backend
from minicoconv.backend.cpu import gathered_conv as gc
from minicoconv.backend.cpu.gathered_conv import gathered_conv2d_forward

CPU = get_backend("cpu")


def reference(x, weight, idx, scale, stride, padding):
    """y[b, g*Cg + o] = sum_j scale[g, b, j] * conv2d(x[b, idx[g, b, j]], weight[g, o, idx[g, b, j]])."""
    (sh, sw), (ph, pw) = stride, padding
    n_batch, _, height, width = x.shape
    n_groups, c_out_g, _, kh, kw = weight.shape
    out_h, out_w = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n_batch, n_groups * c_out_g, out_h, out_w))
    for g in range(n_groups):
        for b in range(n_batch):
            for c, s in zip(idx[g, b], scale[g, b]):
                for i in range(kh):
                    for j in range(kw):
                        patch = xp[b, c, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw]
                        taps = weight[g, :, c, i, j].astype(np.float64)[:, None, None]
                        y[b, g * c_out_g:(g + 1) * c_out_g] += s * taps * patch
    return y


def case(n_batch, c_in, c_out_g, heads, kept, size, kernel, dtype, seed=0, sort=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_batch, c_in, *size)).astype(dtype)
    weight = rng.standard_normal((heads, c_out_g, c_in, kernel, kernel)).astype(dtype)
    idx = np.argsort(rng.random((heads, n_batch, c_in)), axis=2)[..., :kept]
    if sort:
        idx = np.sort(idx, axis=2)
    scale = rng.uniform(0.1, 2.0, idx.shape).astype(dtype)
    return x, weight, idx, scale


def tolerance(dtype):
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-11, "atol": 1e-11}


def check(x, weight, idx, scale, stride, padding):
    expected = reference(x, weight, idx, scale, stride, padding)
    got = gathered_conv2d_forward(x, weight, idx, scale, stride, padding)
    assert got.dtype == x.dtype and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **tolerance(x.dtype))
    generic = Backend.gathered_conv2d_forward(CPU, x, weight, idx, scale, stride, padding)
    assert generic.dtype == x.dtype
    np.testing.assert_allclose(generic, expected, **tolerance(x.dtype))


# --------------------------------------------------------------------------------------
# Against the oracle (the CPU kernel and the generic form)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (3, 2, 1), (3, 1, 0), (1, 1, 0), (1, 2, 0),
                                                     (3, 2, 0)])
@pytest.mark.parametrize("heads", [1, 2, 4])
def test_matches_reference(dtype, kernel, stride, padding, heads):
    c_in = 8
    for kept in (1, c_in // 4, c_in // 2, c_in):
        x, weight, idx, scale = case(3, c_in, 5, heads, kept, (7, 6), kernel, dtype, seed=kept)
        check(x, weight, idx, scale, (stride, stride), (padding, padding))


def test_rectangular_stride_and_padding():
    x, weight, idx, scale = case(2, 6, 3, 2, 4, (9, 5), 3, np.float64)
    check(x, weight, idx, scale, (2, 1), (0, 2))


def test_unsorted_and_repeated_channels_add_up():
    """idx need not be sorted; a channel listed twice contributes twice."""
    x, weight, idx, scale = case(2, 6, 4, 2, 4, (5, 5), 3, np.float64, sort=False)
    idx[0, 1, 2] = idx[0, 1, 0]
    check(x, weight, idx, scale, (1, 1), (1, 1))


@pytest.mark.parametrize("tile_pixels, tile_bytes", [(1, 1 << 20), (10, 1 << 20), (1000, 3000)],
                         ids=["one-row-tiles", "two-row-tiles", "bytes-bound-tiles"])
def test_tiles_and_remainders(monkeypatch, tile_pixels, tile_bytes):
    """Tiles of output rows, a last tile shorter than the others, pixel counts that are not a
    multiple of 4 and output channels per group that are not a multiple of 4 (blocks of 4)."""
    monkeypatch.setattr(gc, "TILE_PIXELS", tile_pixels)
    monkeypatch.setattr(gc, "TILE_BYTES", tile_bytes)
    for c_out_g in (1, 6, 9):
        x, weight, idx, scale = case(2, 5, c_out_g, 1, 3, (7, 5), 3, np.float64, seed=c_out_g)
        check(x, weight, idx, scale, (1, 1), (1, 1))


@pytest.mark.parametrize("itemsize", [4, 8])
def test_column_rows_span_an_odd_number_of_cache_lines(itemsize):
    for n in (1, 9, 144, 160, 1152):
        row = gc._row_len(n, itemsize)
        lines, rest = divmod(row * itemsize, gc.CACHE_LINE)
        assert row >= n and rest == 0 and lines % 2 == 1 and row - n < 2 * gc.CACHE_LINE // itemsize


def test_layouts_are_copied_not_trusted():
    """Non-contiguous views and any integer dtype for idx give the same result."""
    x, weight, idx, scale = case(2, 6, 4, 2, 3, (6, 6), 3, np.float64)
    expected = gathered_conv2d_forward(x, weight, idx, scale, 1, 1)
    xt = np.asfortranarray(x)
    wt = np.ascontiguousarray(weight.transpose(0, 2, 1, 3, 4)).transpose(0, 2, 1, 3, 4)
    st_ = np.asfortranarray(scale)
    strided_idx = np.repeat(idx.astype(np.int32), 2, axis=2)[..., ::2]
    assert not strided_idx.flags.c_contiguous
    got = gathered_conv2d_forward(xt, wt, strided_idx, st_, 1, 1)
    np.testing.assert_array_equal(got, expected)


def test_nothing_kept_or_no_samples():
    x, weight, idx, scale = case(2, 4, 3, 2, 2, (5, 5), 3, np.float32)
    y = gathered_conv2d_forward(x, weight, idx[..., :0], scale[..., :0], 1, 1)
    assert y.shape == (2, 6, 5, 5) and y.dtype == np.float32 and not y.any()
    generic = Backend.gathered_conv2d_forward(CPU, x, weight, idx[..., :0], scale[..., :0], 1, 1)
    np.testing.assert_array_equal(generic, y)
    empty = gathered_conv2d_forward(x[:0], weight, idx[:, :0], scale[:, :0], 2, 1)
    assert empty.shape == (0, 6, 3, 3)


def test_generic_form_in_chunks(monkeypatch):
    """The generic form gathers a budget's worth of kernels at a time: same result."""
    x, weight, idx, scale = case(5, 6, 3, 2, 3, (4, 4), 3, np.float64)
    whole = Backend.gathered_conv2d_forward(CPU, x, weight, idx, scale, 1, 1)
    monkeypatch.setattr(Backend, "gathered_kernel_budget_bytes", 2 * 6 * 3 * 9 * 8)  # two samples a chunk
    np.testing.assert_allclose(Backend.gathered_conv2d_forward(CPU, x, weight, idx, scale, 1, 1), whole,
                               rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.sampled_from([1, 2, 4]), st.integers(1, 5), st.integers(1, 4),
       st.sampled_from([1, 3]), st.integers(1, 2), st.integers(0, 1), st.integers(3, 7), st.integers(3, 7),
       st.integers(0, 2**31 - 1))
def test_random_shapes(n_batch, heads, c_per_head, c_out_g, kernel, stride, padding, height, width, seed):
    c_in = heads * c_per_head
    kept = 1 + seed % c_in
    x, weight, idx, scale = case(n_batch, c_in, c_out_g, heads, kept, (height, width), kernel, np.float64,
                                 seed=seed)
    check(x, weight, idx, scale, (stride, stride), (padding, padding))


# --------------------------------------------------------------------------------------
# Bad input is refused before any kernel runs
# --------------------------------------------------------------------------------------


def _bad_inputs():
    x, weight, idx, scale = case(2, 4, 3, 2, 2, (5, 5), 3, np.float32)
    ok = {"x": x, "weight": weight, "idx": idx, "scale": scale, "stride": 1, "padding": 1}
    cases = {
        "idx negative": {"idx": np.where(idx == idx[0, 0, 0], -1, idx)},
        "idx too large": {"idx": np.where(idx == idx[0, 0, 0], 4, idx)},
        "idx float": {"idx": idx.astype(np.float32)},
        "idx 2-d": {"idx": idx[0]},
        "idx wrong groups": {"idx": idx[:1], "scale": scale[:1]},
        "idx wrong batch": {"idx": idx[:, :1], "scale": scale[:, :1]},
        "idx a list": {"idx": idx.tolist()},
        "scale shape": {"scale": scale[..., :1]},
        "scale dtype": {"scale": scale.astype(np.float64)},
        "weight dtype": {"weight": weight.astype(np.float64)},
        "weight channels": {"weight": weight[:, :, :3]},
        "weight 4-d": {"weight": weight[0]},
        "x int": {"x": x.astype(np.int32)},
        "x a list": {"x": x.tolist()},
        "stride 0": {"stride": 0},
        "padding negative": {"padding": -1},
        "kernel larger than input": {"padding": 0, "x": x[:, :, :2, :2]},
    }
    return ok, cases


@pytest.mark.parametrize("name", list(_bad_inputs()[1]))
def test_bad_input_is_refused(name):
    ok, cases = _bad_inputs()
    args = {**ok, **cases[name]}
    with pytest.raises(ValueError, match="gathered_conv2d"):
        gathered_conv2d_forward(**args)


@pytest.mark.parametrize("name", ["idx negative", "idx too large", "idx float", "idx wrong batch",
                                  "scale shape", "weight channels"])
def test_generic_form_refuses_bad_indices_and_shapes(name):
    ok, cases = _bad_inputs()
    args = {**ok, **cases[name]}
    with pytest.raises(ValueError, match="gathered_conv2d"):
        Backend.gathered_conv2d_forward(CPU, **args)


def test_cpu_backend_uses_the_kernel():
    assert CPU.gathered_conv2d_forward is gathered_conv2d_forward
