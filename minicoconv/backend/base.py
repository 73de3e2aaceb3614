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
- mixtures of expert kernels (CondConv, DY-CNN, fused CoConv): aggregate_kernels(_backward),
  mixture_conv2d_forward/_backward (generic forms on `Backend`, Numba kernels on the CPU)
- gathered convolution (DGC's sparse inference): gathered_conv2d_forward (generic form on
  `Backend`, a Numba kernel on the CPU)

`primitives.PRIMITIVES` lists every name with a one-line signature; the "reference" backend
(backend/reference/) is the plain-NumPy, textbook form of each, the oracle the others match.
"""

from __future__ import annotations

import numpy as np


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

    # -- optimizer (generic form: one sgd_update per parameter; a GPU backend updates many per launch) --
    def sgd_update_many(self, params, grads, bufs, lr, momentum, weight_decay, nesterov):
        """[sgd_update(p, g, b, ...) for each triple]: the momentum buffers, in order."""
        return [self.sgd_update(p, g, b, lr, momentum, weight_decay, nesterov) for p, g, b in zip(params, grads, bufs)]

    # -- gradient accumulation (the engine calls these only for arrays nothing else references) --
    def accumulate(self, total, g):
        """total + g, in total's memory where the backend can (generic form: a new array)."""
        return self.add(total, g)

    def own(self, g):
        """g as an array a `.grad` may keep: g itself where the backend can tell it owns its
        memory, else a copy (generic form: a copy)."""
        return self.copy(g)

    # -- mixtures of expert kernels (generic forms; the CPU backend overrides them with kernels) --
    # bank (n, C', C/g, kh, kw); coef (B, n), one weight per expert, or (B, n, C'), one per
    # expert and output channel; kernels (B, C', C/g, kh, kw). Gradients come back in the
    # shapes of bank and coef, each None unless its need_* flag is set.
    def aggregate_kernels(self, bank, coef):
        """kernels[b, c'] = sum_i coef[b, i(, c')] * bank[i, c']."""
        n, c_out = bank.shape[:2]
        if coef.ndim == 2:
            return self.reshape(self.matmul(coef, self.reshape(bank, (n, -1))), (coef.shape[0], *bank.shape[1:]))
        # per channel: (C', B, n) @ (C', n, R) -> (C', B, R)
        w3 = self.transpose(self.reshape(bank, (n, c_out, -1)), (1, 0, 2))
        per = self.matmul(self.transpose(coef, (2, 0, 1)), w3)
        return self.reshape(self.transpose(per, (1, 0, 2)), (coef.shape[0], *bank.shape[1:]))

    def aggregate_kernels_backward(self, dk, bank, coef, need_dbank=True, need_dcoef=True, dbank=None):
        """(dbank, dcoef): dbank[i, c'] = sum_b coef[b, i(, c')] dk[b, c'], dcoef = <dk[b, c'], bank[i, c']>
        (summed over c' for a 2-d coef). A given `dbank` is added to (in place where the backend can)."""
        n, c_out = bank.shape[:2]
        batch = coef.shape[0]
        part = dcoef = None
        if coef.ndim == 2:
            dflat, flat = self.reshape(dk, (batch, -1)), self.reshape(bank, (n, -1))
            if need_dbank:
                part = self.reshape(self.matmul(self.transpose(coef, (1, 0)), dflat), bank.shape)
            if need_dcoef:
                dcoef = self.matmul(dflat, self.transpose(flat, (1, 0)))
        else:
            dk3 = self.transpose(self.reshape(dk, (batch, c_out, -1)), (1, 0, 2))  # (C', B, R)
            if need_dbank:  # (C', n, B) @ (C', B, R) -> (C', n, R)
                per = self.matmul(self.transpose(coef, (2, 1, 0)), dk3)
                part = self.reshape(self.transpose(per, (1, 0, 2)), bank.shape)
            if need_dcoef:  # (C', B, R) @ (C', R, n) -> (C', B, n)
                w3 = self.transpose(self.reshape(bank, (n, c_out, -1)), (1, 2, 0))
                dcoef = self.transpose(self.matmul(dk3, w3), (1, 2, 0))
        if not need_dbank:
            return None, dcoef
        return (part if dbank is None else self.add(dbank, part)), dcoef

    def mixture_conv2d_forward(self, x, bank, coef, spatial, stride, padding, dilation):
        """y_b = conv2d(x_b, s_b * aggregate_kernels(bank, coef)[b]), groups = 1; returns (y, saved).

        spatial s (N, kh*kw) or None scales each kernel position per sample (ODConv). The
        generic form aggregates the whole batch's kernels at once (the CPU's never holds a
        whole kernel); saved is what mixture_conv2d_backward takes back.
        """
        return self.per_sample_conv2d_forward(x, self._mixture_kernels(bank, coef, spatial)[0], stride, padding,
                                              dilation, 1)[0], None

    def mixture_conv2d_backward(self, gy, x, bank, coef, spatial, saved, stride, padding, dilation, need_dx=True,
                                need_dbank=True, need_dcoef=True, need_ds=False):
        """Gradients of mixture_conv2d_forward: (dx, dbank, dcoef, ds), each None unless asked for."""
        need_ds = need_ds and spatial is not None
        kernels, mixed = self._mixture_kernels(bank, coef, spatial)
        dx, dk = self.per_sample_conv2d_backward(gy, x, kernels, None, stride, padding, dilation, 1, need_dx,
                                                 need_dbank or need_dcoef or need_ds)
        dbank = dcoef = ds = None
        if dk is not None and spatial is not None:
            kk = bank.shape[3] * bank.shape[4]
            dk = self.reshape(dk, (dk.shape[0], -1, kk))
            if need_ds:  # ds_b[q] = sum over the kernel entries at position q of dK * mixture
                ds = self.sum(self.multiply(dk, self.reshape(mixed, dk.shape)), axis=1)
            dk = self.reshape(self.multiply(dk, self.reshape(spatial, (-1, 1, kk))), kernels.shape)
        if dk is not None and (need_dbank or need_dcoef):
            dbank, dcoef = self.aggregate_kernels_backward(dk, bank, coef, need_dbank, need_dcoef)
        return dx, dbank, dcoef, ds

    def _mixture_kernels(self, bank, coef, spatial):
        """(kernels, mixture): the mixture aggregate_kernels(bank, coef) and it scaled by spatial (if any)."""
        mixed = self.aggregate_kernels(bank, coef)
        if spatial is None:
            return mixed, mixed
        return self.multiply(mixed, self.reshape(spatial, (-1, 1, 1, *bank.shape[3:]))), mixed

    # -- gathered convolution (DGC's sparse inference; generic form, the CPU overrides it) ------
    #: bytes of gathered per-sample kernels the generic gathered_conv2d_forward holds at once
    gathered_kernel_budget_bytes = 256 << 20

    def gathered_conv2d_forward(self, x, weight, idx, scale, stride=1, padding=0):
        """Each sample and group convolves only its gathered input channels (inference: no backward).

        x (N, C, H, W), weight (G, C'/G, C, kh, kw), idx (G, N, K) a host (NumPy) integer array
        of input channels in [0, C), scale (G, N, K) -> y (N, C', OH, OW), channel g*C'/G + o:
            y[b, g*C'/G + o] = sum_j scale[g, b, j] * conv2d(x[b, idx[g, b, j]], weight[g, o, idx[g, b, j]])
        with the given stride and padding (dilation 1): N*C'*K*kh*kw*OH*OW multiply-accumulates.
        Bad shapes or indices raise ValueError. Generic form: per chunk of samples, gather the
        scaled channels (n, G*K, H, W) and the samples' kernels (n, C', K, kh, kw), then one
        per-sample grouped convolution (G groups); chunks hold at most
        `gathered_kernel_budget_bytes` of kernels.
        """
        idx = np.asarray(idx)
        n_groups, c_out_g, c_in, kh, kw = weight.shape
        if (idx.ndim != 3 or idx.dtype.kind not in "iu" or idx.shape[:2] != (n_groups, x.shape[0])
                or tuple(scale.shape) != idx.shape or c_in != x.shape[1]):
            raise ValueError(f"gathered_conv2d: expected x (N, C, H, W), weight (G, C'/G, C, kh, kw), integer idx "
                             f"and scale (G, N, K); got x {tuple(x.shape)}, weight {tuple(weight.shape)}, idx "
                             f"{idx.dtype} {idx.shape}, scale {tuple(scale.shape)}")
        if idx.size and (idx.min() < 0 or idx.max() >= c_in):
            raise ValueError(f"gathered_conv2d: expected idx in [0, C) = [0, {c_in}), got [{idx.min()}, {idx.max()}]")
        if idx.shape[2] == 0:  # nothing kept: one channel scaled by 0 (as the dense form computes it)
            idx = np.zeros((n_groups, x.shape[0], 1), dtype=np.int64)
            scale = self.zeros(idx.shape, x.dtype)
        n_keep = idx.shape[2]
        stride, padding = (tuple(v) if isinstance(v, tuple | list) else (v, v) for v in (stride, padding))
        per_sample = n_groups * c_out_g * n_keep * kh * kw * np.dtype(x.dtype).itemsize
        step = max(1, self.gathered_kernel_budget_bytes // per_sample)
        w_t = self.transpose(weight, (0, 2, 1, 3, 4))  # (G, C, C'/G, kh, kw)
        heads = np.arange(n_groups)[:, None, None]
        outs = []
        for s in range(0, x.shape[0], step):
            ib = idx[:, s:s + step]
            n = ib.shape[1]
            xs = self.getitem(x, (np.arange(s, s + n)[None, :, None], ib))  # (G, n, K, H, W)
            sb = self.reshape(self.getitem(scale, (slice(None), slice(s, s + n))), (n_groups, n, n_keep, 1, 1))
            xs = self.reshape(self.transpose(self.multiply(xs, sb), (1, 0, 2, 3, 4)), (n, -1, *x.shape[2:]))
            kernels = self.transpose(self.getitem(w_t, (heads, ib)), (1, 0, 3, 2, 4, 5))  # (n, G, C'/G, K, kh, kw)
            kernels = self.reshape(kernels, (n, n_groups * c_out_g, n_keep, kh, kw))
            outs.append(self.per_sample_conv2d_forward(xs, kernels, stride, padding, (1, 1), n_groups)[0])
        return outs[0] if len(outs) == 1 else self.concatenate(outs, axis=0)

    def __repr__(self) -> str:
        return f"<backend {self.name}>"
