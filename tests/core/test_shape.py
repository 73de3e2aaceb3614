"""Shape ops: reshape/view, permute/transpose/T, expand, getitem, cat/stack, pad, squeeze/unsqueeze."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import arrays, expand_targets, layouts, leaf, shapes

import minicoconv as mc
from minicoconv.testing import gradcheck


# ---- reshape --------------------------------------------------------------------------
@st.composite
def reshape_targets(draw, shape: tuple) -> tuple:
    """A shape with the same number of elements: dims shuffled, merged, 1s added, maybe one -1."""
    dims = list(draw(st.permutations(shape)))
    if len(dims) >= 2 and draw(st.booleans()):
        i = draw(st.integers(0, len(dims) - 2))
        dims[i:i + 2] = [dims[i] * dims[i + 1]]
    for _ in range(draw(st.integers(0, 2))):
        dims.insert(draw(st.integers(0, len(dims))), 1)
    if dims and draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    return tuple(dims)


@given(data=st.data(), layout=layouts, method=st.sampled_from(["reshape", "view"]))
def test_reshape(data, layout, method):
    shape = data.draw(shapes(), label="shape")
    target = data.draw(reshape_targets(shape), label="target")
    a = data.draw(arrays(shape), label="a")
    x = leaf(a, layout)
    out = getattr(x, method)(*target)
    np.testing.assert_array_equal(out.numpy(), a.reshape(target))
    np.testing.assert_array_equal(getattr(x, method)(target).numpy(), a.reshape(target))  # tuple form
    assert gradcheck(lambda t: getattr(t, method)(target), x, name=method)


@given(a=arrays(shapes(min_dims=1)), layout=layouts)
def test_flatten_squeeze_unsqueeze(a, layout):
    x = leaf(a, layout)
    np.testing.assert_array_equal(x.flatten().numpy(), a.reshape(-1))
    np.testing.assert_array_equal(x.flatten(1).numpy(), a.reshape(*a.shape[:1], -1))
    np.testing.assert_array_equal(x.squeeze().numpy(), np.squeeze(a))
    for dim in range(-a.ndim, a.ndim):
        np.testing.assert_array_equal(x.squeeze(dim).numpy(), np.squeeze(a, dim) if a.shape[dim] == 1 else a)
    for dim in range(-a.ndim - 1, a.ndim + 1):
        np.testing.assert_array_equal(x.unsqueeze(dim).numpy(), np.expand_dims(a, dim))
    assert gradcheck(lambda t: t.unsqueeze(0).squeeze(), x, name="unsqueeze/squeeze")


# ---- permute / transpose / T ---------------------------------------------------------
@given(data=st.data(), layout=layouts)
def test_permute(data, layout):
    shape = data.draw(shapes(max_dims=4), label="shape")
    perm = data.draw(st.permutations(range(len(shape))), label="perm")
    negative = data.draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)), label="negative")
    axes = tuple(p - len(shape) if neg else p for p, neg in zip(perm, negative))
    a = data.draw(arrays(shape), label="a")
    x = leaf(a, layout)
    np.testing.assert_array_equal(x.permute(*axes).numpy(), np.transpose(a, axes))
    np.testing.assert_array_equal(x.permute(axes).numpy(), np.transpose(a, axes))
    assert gradcheck(lambda t: t.permute(axes), x, name="permute")


@given(data=st.data())
def test_transpose_and_T(data):
    shape = data.draw(shapes(min_dims=2, max_dims=4), label="shape")
    d0, d1 = data.draw(st.tuples(*[st.integers(-len(shape), len(shape) - 1)] * 2), label="dims")
    a = data.draw(arrays(shape), label="a")
    x = leaf(a)
    np.testing.assert_array_equal(x.transpose(d0, d1).numpy(), np.swapaxes(a, d0, d1))
    np.testing.assert_array_equal(x.transpose().numpy(), np.swapaxes(a, -2, -1))
    np.testing.assert_array_equal(x.T.numpy(), a.T)
    assert gradcheck(lambda t: t.transpose(d0, d1), x, name="transpose")
    assert gradcheck(lambda t: t.T, x, name="T")


# ---- expand / broadcast_to ------------------------------------------------------------
@given(data=st.data(), layout=layouts, method=st.sampled_from(["expand", "broadcast_to"]))
def test_expand(data, layout, method):
    shape = data.draw(shapes(), label="shape")
    target = data.draw(expand_targets(shape), label="target")
    a = data.draw(arrays(shape), label="a")
    x = leaf(a, layout)
    out = getattr(x, method)(*target)
    np.testing.assert_array_equal(out.numpy(), np.broadcast_to(a, target))
    assert gradcheck(lambda t: getattr(t, method)(target), x, name=method)


def test_expand_keeps_dims_given_as_minus_one():
    x = leaf(np.arange(3.0).reshape(3, 1))
    assert x.expand(2, -1, 4).shape == (2, 3, 4)
    assert gradcheck(lambda t: t.expand(2, -1, 4), x, name="expand")


# ---- getitem --------------------------------------------------------------------------
@given(data=st.data(), layout=layouts)
def test_getitem_basic_indices(data, layout):
    """Ints (negative too), slices with steps (negative too), None and Ellipsis."""
    shape = data.draw(shapes(max_dims=3, max_side=5), label="shape")
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True), label="index")
    a = data.draw(arrays(shape), label="a")
    x = leaf(a, layout)
    np.testing.assert_array_equal(x[index].numpy(), a[index])
    assert gradcheck(lambda t: t[index], x, name="getitem")


@given(data=st.data())
def test_getitem_integer_arrays_with_repeats(data):
    shape = data.draw(shapes(min_dims=1, max_side=3), label="shape")
    index = data.draw(hnp.integer_array_indices(shape, result_shape=shapes(min_dims=1, max_dims=2, max_side=5)),
                      label="index")
    a = data.draw(arrays(shape), label="a")
    x = leaf(a)
    np.testing.assert_array_equal(x[index].numpy(), a[index])
    assert gradcheck(lambda t: t[index], x, name="getitem[int arrays]")


def test_getitem_repeated_indices_accumulate():
    x = leaf(np.arange(4.0))
    x[[0, 0, 3, 0]].backward(mc.tensor([1.0, 2.0, 3.0, 4.0], dtype=mc.float64))
    np.testing.assert_array_equal(x.grad.numpy(), [7.0, 0.0, 0.0, 3.0])


@given(data=st.data(), as_tensor=st.booleans())
def test_getitem_boolean_masks(data, as_tensor):
    shape = data.draw(shapes(min_dims=1), label="shape")
    a = data.draw(arrays(shape), label="a")
    full_mask = data.draw(hnp.arrays(np.bool_, shape), label="mask")
    row_mask = data.draw(hnp.arrays(np.bool_, shape[:1]), label="row_mask")
    x = leaf(a)
    for mask in (full_mask, row_mask):
        index = mc.tensor(mask) if as_tensor else mask
        np.testing.assert_array_equal(x[index].numpy(), a[mask])
        assert gradcheck(lambda t, i=index: t[i], x, name="getitem[mask]")


def test_getitem_mixed_indices_and_tensor_indices():
    a = np.arange(24.0).reshape(2, 3, 4)
    x = leaf(a)
    cases = [
        (np.array([1, 0, 1]), slice(None, None, -1), 2),
        (Ellipsis, [3, 3, 0]),
        (0, None, slice(1, None), np.array([[True, False, True, True]]).reshape(4)),
        (mc.tensor([1, 1]), mc.tensor([0, 2])),
        (slice(None), mc.tensor([2, 0])),
    ]
    for index in cases:
        np_index = tuple(i.numpy() if isinstance(i, mc.Tensor) else i for i in index)
        np.testing.assert_array_equal(x[index].numpy(), a[np_index])
        assert gradcheck(lambda t, i=index: t[i], x, name=f"getitem{index}")


def test_iterating_a_tensor_yields_rows():
    x = mc.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert [r.tolist() for r in x] == [[1.0, 2.0], [3.0, 4.0]]


# ---- cat / stack ----------------------------------------------------------------------
@given(data=st.data(), count=st.integers(1, 3))
def test_cat(data, count):
    shape = data.draw(shapes(min_dims=1), label="shape")
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=count, max_size=count), label="sizes")
    parts = [data.draw(arrays(shape[:axis % len(shape)] + (n,) + shape[axis % len(shape) + 1:])) for n in sizes]
    xs = [leaf(p) for p in parts]
    np.testing.assert_array_equal(mc.cat(xs, axis).numpy(), np.concatenate(parts, axis))
    np.testing.assert_array_equal(mc.concatenate(xs, axis=axis).numpy(), np.concatenate(parts, axis))
    assert gradcheck(lambda *ts: mc.cat(ts, axis), *xs, name="cat")


@given(data=st.data(), count=st.integers(1, 3))
def test_stack(data, count):
    shape = data.draw(shapes(), label="shape")
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)), label="axis")
    parts = [data.draw(arrays(shape)) for _ in range(count)]
    xs = [leaf(p) for p in parts]
    np.testing.assert_array_equal(mc.stack(xs, axis).numpy(), np.stack(parts, axis))
    assert gradcheck(lambda *ts: mc.stack(ts, axis), *xs, name="stack")


def test_cat_gradient_reaches_only_inputs_that_need_it():
    a, b = leaf(np.ones((2, 2))), mc.tensor(np.zeros((1, 2)))
    mc.cat([a, b]).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), np.ones((2, 2)))
    assert b.grad is None


# ---- pad ------------------------------------------------------------------------------
@given(data=st.data(), value=st.floats(-2, 2), layout=layouts)
def test_pad(data, value, layout):
    shape = data.draw(shapes(min_dims=1), label="shape")  # np.pad itself refuses 0-d arrays
    widths = tuple(data.draw(st.tuples(st.integers(0, 2), st.integers(0, 2))) for _ in shape)
    a = data.draw(arrays(shape), label="a")
    x = leaf(a, layout)
    want = np.pad(a, widths, constant_values=value)
    np.testing.assert_array_equal(x.pad(widths, value).numpy(), want)
    np.testing.assert_array_equal(mc.pad(x, widths, value=value).numpy(), want)
    assert gradcheck(lambda t: t.pad(widths, value), x, name="pad")


@pytest.mark.parametrize("value", [0.0, -1.5])
def test_pad_keeps_float32(value):
    x = mc.ones(2, 3, requires_grad=True)
    y = x.pad(((1, 0), (0, 2)), value)
    assert y.dtype == mc.float32 and y.shape == (3, 5)
    assert y.numpy()[0, 0] == value
