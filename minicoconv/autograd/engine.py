"""Reverse-mode differentiation over a recorded graph.

`backward(root, grad)`:
1. orders the graph topologically with an explicit stack (no recursion, so
   graphs thousands of ops deep are fine);
2. walks it from the root, calling each op's `backward` once with the sum of
   the gradients of all its uses;
3. un-broadcasts every input gradient to the input's shape (the one place this
   happens) and checks the shape;
4. accumulates into `.grad` of leaves (and of tensors that asked `retain_grad`);
5. frees each op's saved arrays as soon as they are used.

Sums of several uses are added in place, and a leaf keeps the array its gradient arrived
in instead of a copy, when the engine owns that array (and the backend can tell it is not
a view: `Backend.accumulate` / `own`). A fresh array per sum was a new allocation whose
pages the OS zeroes on first touch (the measured gain: docs/performance.md).

Ownership is tracked explicitly, in the set `owned` of pending gradients only the engine
holds: a sum the engine made, or an array an op's backward returned that is not its incoming
gradient and not returned for two inputs (Add returns its `g` for both). That is the
contract of `Function.backward`: it returns arrays it does not keep, or its incoming `g`
(or views of it), which the engine never writes to. The root's gradient is the caller's.
"""

from __future__ import annotations

from typing import Any


def unbroadcast(backend: Any, grad: Any, shape: tuple, op: str) -> Any:
    """Sum `grad` over the axes that broadcasting added or stretched to reach `shape`."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    if lead < 0:
        raise RuntimeError(f"{op}.backward: gradient shape {grad.shape} has fewer dims than input {shape}")
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    if axes:
        grad = backend.sum(grad, axis=axes, keepdims=True)
    if grad.size != _prod(shape):
        raise RuntimeError(f"{op}.backward: gradient shape {grad.shape} does not reduce to input shape {shape}")
    return backend.reshape(grad, shape)


def _prod(shape: tuple) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def topological_order(root) -> list:
    """Tensors reachable from `root` that need gradients, each after all its inputs."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        if t._ctx is not None:
            if t._ctx.freed:
                raise RuntimeError(
                    f"backward through {t._ctx.fn.__name__} a second time: its saved "
                    "arrays were freed after the first backward (call backward once per forward)"
                )
            stack.extend((p, False) for p in t._ctx.inputs if p is not None and p.requires_grad)
    return order


def backward(root, grad: Any) -> None:
    """Accumulate d(root)/d(leaf) * grad into `.grad` of every leaf that requires it."""
    from ..tensor import Tensor

    grads = {id(root): grad}
    owned: set[int] = set()  # keys of `grads` whose array only the engine holds
    for t in reversed(topological_order(root)):
        g = grads.pop(id(t), None)
        if g is None:
            continue
        g_owned = id(t) in owned
        owned.discard(id(t))
        ctx = t._ctx
        if ctx is None or t._retains_grad:
            if t.grad is not None:
                g_leaf = t._backend.add(t.grad.data, g)
            elif ctx is None and g_owned:
                g_leaf = t._backend.own(g)  # nothing else holds g: no copy needed
            else:
                g_leaf = t._backend.copy(g)
            t.grad = Tensor._from_array(g_leaf, t._backend)
        if ctx is None:
            continue
        input_grads = ctx.fn.backward(ctx, g)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        name = ctx.fn.__name__
        if len(input_grads) != len(ctx.inputs):
            raise RuntimeError(f"{name}.backward returned {len(input_grads)} gradients for {len(ctx.inputs)} inputs")
        returned = [id(pg) for pg in input_grads if pg is not None]
        for parent, pg in zip(ctx.inputs, input_grads):
            if parent is None or pg is None or not parent.requires_grad:
                continue
            fresh = (pg is not g or g_owned) and returned.count(id(pg)) == 1
            pg = unbroadcast(ctx.backend, pg, parent.shape, name)
            if pg.dtype != parent.dtype:
                raise RuntimeError(f"{name}.backward: gradient dtype {pg.dtype} != input dtype {parent.dtype}")
            key = id(parent)
            if key not in grads:
                grads[key] = pg
                if fresh:
                    owned.add(key)
            elif key in owned:  # only the engine holds the sum so far: add in place
                grads[key] = ctx.backend.accumulate(grads[key], pg)
            else:
                grads[key] = ctx.backend.add(grads[key], pg)
                owned.add(key)
        ctx.free()
