"""Elementwise ops with NumPy broadcasting.

Each backward returns gradients shaped like the (broadcast) output; the engine
sums them back to each input's shape. `b` may be a Python scalar in binary ops.
"""

from __future__ import annotations

from ..autograd import Function


def _check_broadcast(op: str, a, b) -> None:
    sa, sb = getattr(a, "shape", ()), getattr(b, "shape", ())
    if sa == sb:
        return
    for x, y in zip(reversed(sa), reversed(sb)):
        if x != y and x != 1 and y != 1:
            raise ValueError(f"{op}: shapes {sa} and {sb} cannot be broadcast together")


class Add(Function):
    """y = a + b"""

    @staticmethod
    def forward(ctx, a, b):
        _check_broadcast("add", a, b)
        return ctx.backend.add(a, b)

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Function):
    """y = a - b"""

    @staticmethod
    def forward(ctx, a, b):
        _check_broadcast("sub", a, b)
        return ctx.backend.subtract(a, b)

    @staticmethod
    def backward(ctx, g):
        return g, (ctx.backend.negative(g) if ctx.needs_input_grad[1] else None)


class Mul(Function):
    """y = a * b;  da = g * b,  db = g * a"""

    @staticmethod
    def forward(ctx, a, b):
        _check_broadcast("mul", a, b)
        ctx.save_for_backward(a, b)
        return ctx.backend.multiply(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        m = ctx.backend.multiply
        return (m(g, b) if ctx.needs_input_grad[0] else None,
                m(g, a) if ctx.needs_input_grad[1] else None)


class Div(Function):
    """y = a / b;  da = g / b,  db = -g * y / b"""

    @staticmethod
    def forward(ctx, a, b):
        _check_broadcast("div", a, b)
        y = ctx.backend.divide(a, b)
        ctx.save_for_backward(b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        b, y = ctx.saved
        gb = be.negative(be.divide(be.multiply(g, y), b)) if ctx.needs_input_grad[1] else None
        return (be.divide(g, b) if ctx.needs_input_grad[0] else None), gb


class Pow(Function):
    """y = a ** b;  da = g * b * a**(b-1),  db = g * y * log(a)"""

    @staticmethod
    def forward(ctx, a, b):
        _check_broadcast("pow", a, b)
        y = ctx.backend.power(a, b)
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        a, b = ctx.saved[:2]
        y = ctx.saved[2]
        ga = gb = None
        if ctx.needs_input_grad[0]:
            # b * a**(b-1) would be 0 * inf = nan at a = b = 0, where the derivative of a**0 is 0:
            # use the exponent 1 instead of -1 there (b = 0 still zeroes the product)
            exponent = be.where(be.equal(b, 0), be.full((), 1, dtype=g.dtype), be.subtract(b, 1))
            ga = be.multiply(g, be.multiply(b, be.power(a, exponent)))
        if ctx.needs_input_grad[1]:
            # y * log(a) would be 0 * -inf = nan at a = 0 (b > 0), where the derivative is 0 (as
            # PyTorch): take log(1) = 0 there instead. At a = 0 with b < 0 (a pole) it stays nan.
            safe_a = be.where(be.equal(a, 0), be.full((), 1, dtype=g.dtype), a)
            gb = be.multiply(g, be.multiply(y, be.log(safe_a)))
        return ga, gb


class Maximum(Function):
    """y = max(a, b); where a == b the gradient is split evenly (as PyTorch)."""

    @staticmethod
    def forward(ctx, a, b):
        _check_broadcast("maximum", a, b)
        ctx.save_for_backward(a, b)
        return ctx.backend.maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        return _select_grads(ctx, g, ctx.backend.greater)


class Minimum(Function):
    """y = min(a, b); where a == b the gradient is split evenly (as PyTorch)."""

    @staticmethod
    def forward(ctx, a, b):
        _check_broadcast("minimum", a, b)
        ctx.save_for_backward(a, b)
        return ctx.backend.minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        return _select_grads(ctx, g, ctx.backend.less)


def _select_grads(ctx, g, wins):
    """Route g to the winning operand of max/min, half to each on ties."""
    be = ctx.backend
    a, b = ctx.saved
    share_a = be.add(be.astype(wins(a, b), g.dtype), be.multiply(be.astype(be.equal(a, b), g.dtype), 0.5))
    ga = be.multiply(g, share_a)
    gb = be.subtract(g, ga) if ctx.needs_input_grad[1] else None
    return ga, gb


class Where(Function):
    """y = a where cond else b (cond is a boolean array, no gradient)."""

    same_dtype = False

    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        return ctx.backend.where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        (cond,) = ctx.saved
        zero = be.zeros((), dtype=g.dtype)
        return (None,
                be.where(cond, g, zero) if ctx.needs_input_grad[1] else None,
                be.where(cond, zero, g) if ctx.needs_input_grad[2] else None)


class Neg(Function):
    """y = -a"""

    @staticmethod
    def forward(ctx, a):
        return ctx.backend.negative(a)

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.negative(g)


class Exp(Function):
    """y = e^a;  da = g * y"""

    @staticmethod
    def forward(ctx, a):
        y = ctx.backend.exp(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.multiply(g, ctx.saved[0])


class Log(Function):
    """y = ln a;  da = g / a"""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return ctx.backend.log(a)

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.divide(g, ctx.saved[0])


class Sqrt(Function):
    """y = sqrt(a);  da = g / (2 y)"""

    @staticmethod
    def forward(ctx, a):
        y = ctx.backend.sqrt(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.divide(g, ctx.backend.multiply(ctx.saved[0], 2))


class Abs(Function):
    """y = |a|;  da = g * sign(a) (0 at 0, as PyTorch)"""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return ctx.backend.abs(a)

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.multiply(g, ctx.backend.sign(ctx.saved[0]))


class ReLU(Function):
    """y = max(a, 0);  da = g * [a > 0] (0 at 0, as PyTorch)"""

    @staticmethod
    def forward(ctx, a):
        y = ctx.backend.relu_forward(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.relu_backward(g, ctx.saved[0])


class Sigmoid(Function):
    """y = 1 / (1 + e^-a);  da = g * y * (1 - y)"""

    @staticmethod
    def forward(ctx, a):
        y = ctx.backend.sigmoid(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        y = ctx.saved[0]
        return be.multiply(g, be.multiply(y, be.subtract(1, y)))


class Tanh(Function):
    """y = tanh a;  da = g * (1 - y^2)"""

    @staticmethod
    def forward(ctx, a):
        y = ctx.backend.tanh(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        y = ctx.saved[0]
        return be.multiply(g, be.subtract(1, be.multiply(y, y)))


class Cast(Function):
    """y = a converted to another float dtype; the gradient is converted back."""

    same_dtype = False

    @staticmethod
    def forward(ctx, a, dtype):
        ctx.dtype = a.dtype
        return ctx.backend.astype(a, dtype)

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.astype(g, ctx.dtype), None
