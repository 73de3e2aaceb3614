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
- expert mixing (CoConv): expert_weighted_sum_forward/_backward, expert_scale_forward/_backward
  (generic forms on `Backend`, fused kernels on the CPU and CUDA backends)
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

    # -- expert mixing (CoConv; generic forms, the CPU and CUDA backends override them with kernels) --
    # Expert-stacked maps (N, G*n*D, H, W): channel (g*n + i)*D + d is expert i's channel
    # g*D + d; routing weights r (N, G, n, D); plain maps (N, G*D, H, W); one float dtype.
    # Backward functions return (grad of the first input, dr), each None unless its need_*
    # flag is set. Kernel versions validate shapes and dtypes (ValueError) before they run.
    def expert_weighted_sum_forward(self, z, r):
        """y[b, g*D + d] = sum_i r[b, g, i, d] * z[b, (g*n + i)*D + d]:  z stacked -> y plain."""
        z6, r6, _ = self._expert_views(z, r)
        y = self.sum(self.multiply(z6, r6), axis=2)
        return self.reshape(y, (z.shape[0], r.shape[1] * r.shape[3], *z.shape[2:]))

    def expert_weighted_sum_backward(self, gy, z, r, need_dz=True, need_dr=True):
        """(dz, dr): dz[b, (g*n + i)*D + d] = r[b, g, i, d] * gy[b, g*D + d], dr = sum over (H, W) of z * gy."""
        z6, r6, g6 = self._expert_views(z, r, gy)
        dz = self.reshape(self.multiply(g6, r6), z.shape) if need_dz else None
        dr = self.sum(self.multiply(z6, g6), axis=(4, 5)) if need_dr else None
        return dz, dr

    def expert_scale_forward(self, x, r):
        """xs[b, (g*n + i)*D + d] = r[b, g, i, d] * x[b, g*D + d]:  x plain -> xs stacked."""
        _, r6, x6 = self._expert_views(None, r, x)
        return self.reshape(self.multiply(x6, r6), (x.shape[0], r.shape[1] * r.shape[2] * r.shape[3], *x.shape[2:]))

    def expert_scale_backward(self, gxs, x, r, need_dx=True, need_dr=True):
        """(dx, dr): dx[b, g*D + d] = sum_i r[b, g, i, d] * gxs[b, (g*n + i)*D + d], dr = sum over (H, W) of gxs * x."""
        dx = self.expert_weighted_sum_forward(gxs, r) if need_dx else None
        g6, _, x6 = self._expert_views(gxs, r, x)
        dr = self.sum(self.multiply(g6, x6), axis=(4, 5)) if need_dr else None
        return dx, dr

    def _expert_views(self, stacked, r, plain=None):
        """6-d views for broadcasting: stacked (N, G, n, D, H, W), r (N, G, n, D, 1, 1), plain (N, G, 1, D, H, W)."""
        n_batch, n_groups, n_exp, depth = r.shape
        spatial = tuple((plain if stacked is None else stacked).shape[2:])
        s6 = None if stacked is None else self.reshape(stacked, (*r.shape, *spatial))
        p6 = None if plain is None else self.reshape(plain, (n_batch, n_groups, 1, depth, *spatial))
        return s6, self.reshape(r, (*r.shape, 1, 1)), p6

    def __repr__(self) -> str:
        return f"<backend {self.name}>"
