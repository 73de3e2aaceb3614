"""The backend interface: every array operation the autodiff core may call.

A backend is an object that owns one kind of array (NumPy arrays for "cpu",
numba.cuda device arrays for "cuda") and implements the functions below on it.
Ops in `minicoconv.ops` never touch NumPy or Numba directly: they call
`ctx.backend.<name>(...)`, so a new backend slots in without changing autodiff.

The interface mirrors NumPy's names and semantics (broadcasting, `axis`,
`keepdims`), so the CPU backend is mostly NumPy itself. Arrays must expose
`.shape`, `.ndim`, `.dtype` and `.size`. Elementwise functions accept Python
scalars for either operand and keep the array's dtype (NumPy 2 "weak scalar"
rule): float32 stays float32.

Groups of functions (see `CPUBackend` for the reference implementation):
- creation/transfer: asarray, to_numpy, zeros, full, copy, astype
- elementwise: add subtract multiply divide negative power exp log sqrt abs sign
  tanh sigmoid maximum minimum where greater less equal
- reductions: sum, max, argmax (NumPy `axis`/`keepdims`)
- linear algebra: matmul (batched, broadcasting)
- shape: reshape, transpose, broadcast_to, getitem, scatter_add, concatenate, pad
- fused: softmax, log_softmax, relu_forward, relu_backward (generic forms on `Backend`)
- kernels (added by the nn issue): convolution, pooling, batch norm, SGD update
"""

from __future__ import annotations


class Backend:
    """Base class of backends; see the module docstring for the contract."""

    name: str = "abstract"

    def is_available(self) -> bool:
        """Whether this backend can run on this machine."""
        return True

    # -- activations (generic forms; a backend may override them with fused kernels) -----------
    def relu_forward(self, a):
        """max(a, 0)."""
        return self.maximum(a, 0)

    def relu_backward(self, g, y):
        """g * [y > 0] for the forward output y (0 where y <= 0, NaN in g included, as PyTorch)."""
        return self.where(self.greater(y, 0), g, self.zeros(g.shape, g.dtype))

    def __repr__(self) -> str:
        return f"<backend {self.name}>"
