"""Matrix product with batching and broadcasting over leading axes, and the linear layer's product."""

from __future__ import annotations

from ..autograd import Function


def _swap_last(be, a):
    axes = tuple(range(a.ndim - 2)) + (a.ndim - 1, a.ndim - 2)
    return be.transpose(a, axes)


class MatMul(Function):
    """y = a @ b for a (..., m, k), b (..., k, n) -> (..., m, n).

    da = g @ b^T, db = a^T @ g; broadcast batch axes are summed by the engine.
    1-d operands are promoted in `Tensor.matmul`, as NumPy does.
    """

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned "
                             f"(need (..., m, k) @ (..., k, n))")
        try:
            _broadcast_batch(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch shapes of {a.shape} and {b.shape} cannot be broadcast") from None
        ctx.save_for_backward(a, b)
        return ctx.backend.matmul(a, b)

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        a, b = ctx.saved
        ga = be.matmul(g, _swap_last(be, b)) if ctx.needs_input_grad[0] else None
        gb = be.matmul(_swap_last(be, a), g) if ctx.needs_input_grad[1] else None
        return ga, gb


def _broadcast_batch(sa, sb):
    for x, y in zip(reversed(sa), reversed(sb)):
        if x != y and x != 1 and y != 1:
            raise ValueError


class Linear(Function):
    """y = x @ w^T + b for x (M, in), w (out, in), b (out,) or None -> (M, out).

    dx = g @ w,  dw = g^T @ x,  db = sum over M of g.
    A dedicated op rather than matmul(x, w.T): through the transpose, dw would come
    back in w^T's memory order, and every optimizer step would then pay a transposing
    copy (about 0.7 s per step for AlexNet's 4096 x 4096 layer on two cores).
    """

    @staticmethod
    def forward(ctx, x, w, b):
        be = ctx.backend
        ctx.save_for_backward(x, w)
        y = be.matmul(x, be.transpose(w, (1, 0)))
        return y if b is None else be.add(y, b)

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        x, w = ctx.saved
        need_x, need_w, need_b = ctx.needs_input_grad
        dx = be.matmul(g, w) if need_x else None
        dw = be.matmul(be.transpose(g, (1, 0)), x) if need_w else None
        db = be.sum(g, axis=0) if need_b else None
        return dx, dw, db
