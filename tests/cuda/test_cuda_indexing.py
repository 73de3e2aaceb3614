"""The kernels' index helpers, compiled for the CPU (`.host`, the same Python the GPU runs), against NumPy.

Also the host-side layout arithmetic: coalescing axes and the views of basic indexing.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minicoconv.backend.cuda import indexing, layout

pytestmark = pytest.mark.cuda

shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4)


@given(shapes, st.data())
def test_strided_offset_walks_a_transposed_view(shape, data):
    axes = data.draw(st.permutations(range(len(shape))))
    base = np.arange(int(np.prod(shape))).reshape(shape)
    view = base.transpose(axes)
    strides = tuple(layout.c_strides(shape)[a] for a in axes)
    got = [indexing.strided_offset.host(i, view.shape, strides) for i in range(view.size)]
    assert got == view.reshape(-1).tolist()


@given(st.integers(1, 9), st.integers(1, 9))
def test_adaptive_bins_and_their_inverse(length, n_bins):
    for r in range(length):
        lo, hi = indexing.bins_containing.host(r, length, n_bins)
        brute = [i for i in range(n_bins)
                 if indexing.adaptive_bin.host(i, length, n_bins)[0] <= r < indexing.adaptive_bin.host(i, length,
                                                                                                        n_bins)[1]]
        assert list(range(lo, hi)) == brute


@given(st.integers(1, 9), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2))
def test_windows_containing(size, kernel, stride, pad):
    pad = min(pad, kernel // 2)
    n_out = (size + 2 * pad - kernel) // stride + 1
    if n_out < 1:
        return
    for r in range(size):
        lo, hi = indexing.windows_containing.host(r, pad, kernel, stride, n_out)
        assert list(range(lo, hi)) == [o for o in range(n_out) if o * stride - pad <= r < o * stride - pad + kernel]


@given(st.integers(0, 9), st.integers(0, 2), st.integers(0, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 6))
def test_tap_output_inverts_the_window(r, pad, tap, dilation, stride, n_out):
    o = indexing.tap_output.host(r, pad, tap, dilation, stride, n_out)
    matches = [o2 for o2 in range(n_out) if o2 * stride - pad + tap * dilation == r]
    assert (o == -1 and not matches) or [o] == matches


@given(shapes, st.data())
def test_coalesce_keeps_the_enumeration(shape, data):
    expand = data.draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))
    src_shape = tuple(1 if e else n for n, e in zip(shape, expand))
    strides = layout.broadcast_strides(src_shape, shape)
    merged, (merged_strides,) = layout.coalesce(shape, strides)
    size = int(np.prod(shape))
    assert int(np.prod(merged)) == size
    full = [indexing.strided_offset.host(i, shape, strides) for i in range(size)]
    assert full == [indexing.strided_offset.host(i, merged, merged_strides) for i in range(size)]


@pytest.mark.parametrize("index", [(1,), (slice(None, None, -2),), (None, Ellipsis, 0), (slice(1, 3), -1, None),
                                   (Ellipsis,), (0, slice(5, 1, -1), slice(None))], ids=str)
def test_basic_view_matches_numpy(index):
    base = np.arange(60).reshape(3, 4, 5)
    offset, shape, strides = layout.basic_view(index, base.shape)
    expected = base[index]
    got = [offset + indexing.strided_offset.host(i, shape, strides) for i in range(int(np.prod(shape)))]
    assert shape == expected.shape and got == expected.reshape(-1).tolist()
