"""Error messages: each names the op and the shapes or dtypes involved, so a learner can act on it."""

from __future__ import annotations

import re

import numpy as np
import pytest

import minicoconv as mc
from minicoconv.autograd import Function
from minicoconv.nn.functional import cross_entropy
from minicoconv.testing import GradcheckError, gradcheck


def _escaped(*parts) -> str:
    """A regex matching all `parts` (str() of each, escaped) in order, anything between them."""
    return ".*".join(re.escape(str(p)) for p in parts)


# ---- broadcasting ---------------------------------------------------------------------
@pytest.mark.parametrize("name, op", [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b), ("pow", lambda a, b: a ** b),
    ("maximum", mc.maximum), ("minimum", mc.minimum),
])
def test_shapes_that_cannot_broadcast(name, op):
    with pytest.raises(ValueError, match=_escaped(name, (2, 3), (4,), "cannot be broadcast")):
        op(mc.ones(2, 3), mc.ones(4))
    with pytest.raises(ValueError, match=_escaped(name, (2, 3), (3, 2))):
        op(mc.ones(2, 3), np.ones((3, 2), dtype=np.float32))


def test_expand_to_an_incompatible_shape():
    with pytest.raises(ValueError, match=_escaped("expand", (2, 3), (4, 3, 3))):
        mc.ones(2, 3).expand(4, 3, 3)
    with pytest.raises(ValueError, match=_escaped("expand", (2, 3), (3,))):
        mc.ones(2, 3).broadcast_to(3)
    with pytest.raises(ValueError, match=_escaped("expand", (3,), (-1, 3))):
        mc.ones(3).expand(-1, 3)  # -1 means "keep this dim", and a new leading dim has nothing to keep


# ---- matmul ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape_a, shape_b", [
    ((2, 3), (4, 5)), ((3,), (2,)), ((3,), (2, 4)), ((2, 3), (2,)), ((2, 3, 4), (3, 4, 5)), ((4, 2, 3), (3, 3, 2)),
])
def test_matmul_of_incompatible_shapes(shape_a, shape_b):
    with pytest.raises(ValueError, match=_escaped("matmul", shape_a, shape_b)):
        mc.ones(*shape_a) @ mc.ones(*shape_b)


def test_matmul_of_a_0d_operand():
    with pytest.raises(ValueError, match=_escaped("matmul", "0-d", (), (2,))):
        mc.tensor(2.0) @ mc.ones(2)


# ---- dtypes ---------------------------------------------------------------------------
@pytest.mark.parametrize("op_name, op", [
    ("Add", lambda a, b: a + b), ("Mul", lambda a, b: b * a), ("MatMul", lambda a, b: a @ b.T),
    ("Maximum", mc.maximum), ("Concatenate", lambda a, b: mc.cat([a, b])),
])
def test_mixing_float32_and_float64(op_name, op):
    a, b = mc.ones(2, 3), mc.ones(2, 3, dtype=mc.float64)
    with pytest.raises(TypeError, match=_escaped(op_name, "dtype mismatch", "float", "float", (2, 3))) as info:
        op(a, b)
    assert "float32" in str(info.value) and "float64" in str(info.value)


def test_mixing_dtypes_through_a_numpy_array():
    with pytest.raises(TypeError, match=_escaped("Add", "float32", "float64", ".to(dtype)")):
        mc.ones(3) + np.ones(3)


def test_where_with_mixed_dtypes_or_a_non_boolean_condition():
    x = mc.ones(2)
    with pytest.raises(TypeError, match=_escaped("where", "float32", "float64")):
        mc.where(x > 0, x, mc.ones(2, dtype=mc.float64))
    with pytest.raises(TypeError, match=_escaped("where", "float32", "float64", "(b)")):
        mc.where(x > 0, x, np.zeros(2))  # a float64 NumPy array is caught too, not only tensors
    with pytest.raises(TypeError, match=_escaped("where", "boolean", "float32")):
        mc.where(x, x, 0.0)


@pytest.mark.parametrize("make", [
    lambda: mc.tensor([1, 2], requires_grad=True),
    lambda: mc.tensor([True], requires_grad=True),
    lambda: mc.zeros(2, dtype=mc.int64, requires_grad=True),
    lambda: mc.arange(3).requires_grad_(),
    lambda: mc.tensor(np.array([1, 2], dtype=np.int32)).requires_grad_(True),
])
def test_requires_grad_on_a_non_float_tensor(make):
    with pytest.raises(TypeError, match=r"only floating-point tensors can require gradients, got (int64|int32|bool)"):
        make()


def test_unsupported_dtype():
    with pytest.raises(TypeError, match=_escaped("unsupported dtype float16", "float32", "float64")):
        mc.tensor([1.0], dtype="float16")
    with pytest.raises(TypeError, match="unsupported dtype complex128"):
        mc.tensor(np.array([1j]))


# ---- backward -------------------------------------------------------------------------
def test_backward_on_a_non_scalar_without_gradient():
    y = mc.ones(2, 3, requires_grad=True) * 2.0
    with pytest.raises(RuntimeError, match=_escaped("non-scalar", (2, 3), "explicit gradient")):
        y.backward()


def test_backward_with_a_gradient_of_the_wrong_shape_or_dtype():
    y = mc.ones(2, 3, requires_grad=True) * 2.0
    with pytest.raises(ValueError, match=_escaped((3, 2), "float32", "expected", (2, 3), "float32")):
        y.backward(mc.ones(3, 2))
    with pytest.raises(ValueError, match=_escaped("float64", "expected", (2, 3), "float32")):
        y.backward(mc.ones(2, 3, dtype=mc.float64))


def test_backward_on_a_tensor_that_does_not_require_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mc.ones(2).sum().backward()


class _WrongShape(Function):
    @staticmethod
    def forward(ctx, a):
        return a * 2

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.full((5,), 1.0, dtype=g.dtype)


class _WrongCount(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        return (g,)


class _WrongDtype(Function):
    @staticmethod
    def forward(ctx, a):
        return a * 2

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.astype(g, "float64")


def test_engine_catches_broken_backward_functions():
    x = mc.ones(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=_escaped("_WrongShape.backward", (5,), (2, 3))):
        _WrongShape.apply(x).sum().backward()
    with pytest.raises(RuntimeError, match=_escaped("_WrongCount.backward returned 1 gradients for 2 inputs")):
        _WrongCount.apply(x, x).sum().backward()
    with pytest.raises(RuntimeError, match=_escaped("_WrongDtype.backward", "float64", "float32")):
        _WrongDtype.apply(x).sum().backward()


# ---- reshape and axes -----------------------------------------------------------------
@pytest.mark.parametrize("target", [(5, 3), (7, -1), (0, -1), (4, 4)])
def test_reshape_to_an_incompatible_shape(target):
    with pytest.raises(ValueError, match=_escaped("reshape", (3, 4), "12 elements", target)):
        mc.ones(3, 4).reshape(*target)


@pytest.mark.parametrize("target", [(-1, -1), (3, -2)])
def test_reshape_to_an_invalid_shape(target):
    with pytest.raises(ValueError, match=_escaped("reshape", "invalid shape", target)):
        mc.ones(3, 4).view(target)


@pytest.mark.parametrize("name, call", [
    ("sum", lambda x: x.sum(2)), ("sum", lambda x: x.sum((0, -3))), ("mean", lambda x: x.mean(-3)),
    ("max", lambda x: x.max(5)), ("var", lambda x: x.var(2)), ("min", lambda x: x.min(axis=(1, 2))),
    ("softmax", lambda x: x.softmax(2)), ("log_softmax", lambda x: x.log_softmax(-3)),
    ("transpose", lambda x: x.transpose(0, 2)), ("squeeze", lambda x: x.squeeze(2)),
    ("unsqueeze", lambda x: x.unsqueeze(4)), ("cat", lambda x: mc.cat([x, x], axis=2)),
    ("stack", lambda x: mc.stack([x, x], axis=-4)),
])
def test_bad_axis(name, call):
    with pytest.raises(ValueError, match=_escaped(name, "axis", "out of range")):
        call(mc.ones(2, 3))


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "var"])
def test_repeated_axis(name):
    with pytest.raises(ValueError, match=_escaped(name, "repeated axis", (1, -1))):
        getattr(mc.ones(2, 3), name)((1, -1))


@pytest.mark.parametrize("axes", [(0, 5), (0,), (1, 1), (0, 1, 2), (-3, 0)])
def test_permute_with_a_bad_permutation(axes):
    with pytest.raises(ValueError, match=_escaped("permute", axes, "not a permutation", (2, 3))):
        mc.ones(2, 3).permute(*axes)


def test_cat_stack_pad_with_mismatched_shapes():
    with pytest.raises(ValueError, match=_escaped("cat", (2, 3), (2, 4), "axis 0")):
        mc.cat([mc.ones(2, 3), mc.ones(2, 4)])
    with pytest.raises(ValueError, match=_escaped("stack", (2, 3), (3, 2))):
        mc.stack([mc.ones(2, 3), mc.ones(3, 2)])
    with pytest.raises(ValueError, match=_escaped("pad", "2", "((1, 1),)")):
        mc.ones(2, 3).pad([(1, 1)])
    with pytest.raises(ValueError, match=_escaped("pad", "non-negative", "(-1, 0)")):
        mc.ones(2, 3).pad([(0, 0), (-1, 0)])


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_of_an_empty_tensor(name):
    with pytest.raises(ValueError, match=_escaped(name, "empty")):
        getattr(mc.zeros(0), name)()


# ---- cross_entropy --------------------------------------------------------------------
@pytest.mark.parametrize("targets, match", [
    ([0, 3], _escaped("cross_entropy", "[0, 3)", "from 0 to 3")),
    ([-1, 1], _escaped("cross_entropy", "[0, 3)", "from -1 to 1")),
])
def test_cross_entropy_with_out_of_range_targets(targets, match):
    with pytest.raises(ValueError, match=match):
        cross_entropy(mc.ones(2, 3, requires_grad=True), targets)


@pytest.mark.parametrize("logits_shape, targets, match", [
    ((3,), [0], _escaped("cross_entropy", "(N, C)", (3,))),
    ((2, 3, 4), [0, 1], _escaped("cross_entropy", "(N, C)", (2, 3, 4))),
    ((2, 3), [0, 1, 2], _escaped("cross_entropy", "(2,)", (2, 3), (3,))),
    ((2, 3), [[0], [1]], _escaped("cross_entropy", "(2,)", (2, 3), (2, 1))),
])
def test_cross_entropy_with_wrong_shapes(logits_shape, targets, match):
    with pytest.raises(ValueError, match=match):
        cross_entropy(mc.ones(*logits_shape), targets)


def test_cross_entropy_with_non_integer_targets():
    with pytest.raises(TypeError, match=_escaped("cross_entropy", "integer", "float32")):
        cross_entropy(mc.ones(2, 3), mc.tensor([0.0, 1.0]))


# ---- devices --------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: mc.tensor([1.0], device="gpu"),
    lambda: mc.zeros(2, device="gpu"),
    lambda: mc.randn(2, device="gpu"),
    lambda: mc.ones(2).to("gpu"),
])
def test_unknown_device_string(make):
    with pytest.raises(ValueError, match=_escaped("unknown device 'gpu'", "'cpu'", "'cuda'")):
        make()


# ---- gradcheck itself -----------------------------------------------------------------
class BadSquare(Function):
    """y = a**2 with a deliberately wrong backward (3a instead of 2a)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * a

    @staticmethod
    def backward(ctx, g):
        return 3 * ctx.saved[0] * g


class BadSecondInput(Function):
    """y = a * b with the gradient of b off by a constant."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        return g * b, g * a + 1e-3


def _gradcheck_error(fn, *inputs) -> str:
    with pytest.raises(GradcheckError) as info:
        gradcheck(fn, *inputs)
    return str(info.value)


def test_gradcheck_can_fail_and_says_where():
    a = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
    x = mc.tensor(a, dtype=mc.float64, requires_grad=True)
    message = _gradcheck_error(BadSquare.apply, x)

    # recompute what gradcheck compares: analytic 3a*R against numeric 2a*R for its cotangent R
    cotangent = np.random.default_rng(0).standard_normal(a.shape)
    analytic, numeric = 3 * a * cotangent, 2 * a * cotangent
    worst = np.unravel_index(np.argmax(np.abs(analytic - numeric) - 1e-4 * np.abs(numeric)), a.shape)
    assert "gradcheck(BadSquare)" in message
    assert "input 0" in message and "(2, 3)" in message
    found = re.search(r"index \((\d+), (\d+)\): analytic (\S+), numeric (\S+)", message)
    assert found, message
    assert (int(found[1]), int(found[2])) == worst
    assert float(found[3]) == pytest.approx(analytic[worst], rel=1e-7)
    assert float(found[4]) == pytest.approx(numeric[worst], rel=1e-6)


def test_gradcheck_names_the_input_that_is_wrong():
    x = mc.tensor([1.0, 2.0], dtype=mc.float64, requires_grad=True)
    y = mc.tensor([3.0, -1.0], dtype=mc.float64, requires_grad=True)
    message = _gradcheck_error(BadSecondInput.apply, x, y)
    assert "gradcheck(BadSecondInput)" in message and "input 1" in message
    assert gradcheck(BadSecondInput.apply, x, y.detach())  # input 0 alone is right


def test_gradcheck_uses_the_name_it_is_given_or_the_function_name():
    x = mc.tensor([1.0], dtype=mc.float64, requires_grad=True)

    def my_square(t):
        return BadSquare.apply(t)

    assert "gradcheck(my_square)" in _gradcheck_error(my_square, x)
    with pytest.raises(GradcheckError, match=r"gradcheck\(custom label\)"):
        gradcheck(BadSquare.apply, x, name="custom label")


def test_gradcheck_refuses_float32_and_inputs_without_grad():
    with pytest.raises(TypeError, match=_escaped("gradcheck(", "input 0 is float32", "float64")):
        gradcheck(lambda t: t * 2.0, mc.ones(2, requires_grad=True))
    with pytest.raises(ValueError, match=_escaped("gradcheck(", "no input requires grad")):
        gradcheck(lambda t: t * 2.0, mc.ones(2, dtype=mc.float64))


def test_item_and_len_errors():
    with pytest.raises(ValueError, match=_escaped("item()", "6 elements")):
        mc.ones(2, 3).item()
    with pytest.raises(TypeError, match="0-d"):
        len(mc.tensor(1.0))
    with pytest.raises(TypeError, match=_escaped("~", "boolean", "float32")):
        ~mc.ones(2)
