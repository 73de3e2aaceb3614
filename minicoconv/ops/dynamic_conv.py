"""Per-sample convolutions: the computational core of the dynamic convolutions.

PerSampleConv2d:  y_b = conv(x_b, K_b) for explicit per-sample kernels K.
DynamicConv2d:    y_b = conv(x_b, sum_i r_bi W_i) for an expert bank W (n, C', C/g, k, k)
                  and routing weights r (N, n), without ever holding all N
                  per-sample kernels: the batch is processed in chunks whose
                  aggregated kernels fit a memory budget, and backward
                  re-aggregates each chunk instead of keeping it.

Per chunk B (K_B = r_B @ W_flat is one GEMM):
    forward:   y_B = per_sample_conv(x_B, K_B)
    backward:  dx_B, dK_B = per_sample_conv_backward(...)
               dr_B = dK_B @ W_flat^T,   dW_flat += r_B^T @ dK_B      (two GEMMs)
"""

from __future__ import annotations

from ..autograd import Function

#: bytes of aggregated per-sample kernels held at once by DynamicConv2d
KERNEL_BUDGET_BYTES = 256 * 2**20


def _chunk(per_sample_bytes: int, batch: int) -> int:
    return max(1, min(batch, KERNEL_BUDGET_BYTES // max(per_sample_bytes, 1)))


class PerSampleConv2d(Function):
    """y_b = conv2d(x_b, kernels_b):  x (N, C, H, W), kernels (N, C', C/g, kh, kw) -> (N, C', H', W')."""

    @staticmethod
    def forward(ctx, x, kernels, stride, padding, dilation, groups):
        ctx.args = (stride, padding, dilation, groups)
        y, saved = ctx.backend.per_sample_conv2d_forward(x, kernels, *ctx.args)
        ctx.save_for_backward(x, kernels, saved)
        return y

    @staticmethod
    def backward(ctx, g):
        x, kernels, saved = ctx.saved
        dx, dk = ctx.backend.per_sample_conv2d_backward(g, x, kernels, saved, *ctx.args, *ctx.needs_input_grad[:2])
        return dx, dk, None, None, None, None


class DynamicConv2d(Function):
    """y_b = conv2d(x_b, s_b * sum_i r_bi W_i):  x (N, C, H, W), bank (n, C', C/g, kh, kw), r (N, n).

    `spatial` s (N, kh*kw) or None scales each kernel position per sample (ODConv's
    spatial attention); None means 1.
    """

    @staticmethod
    def forward(ctx, x, bank, r, spatial, stride, padding, dilation, groups):
        be = ctx.backend
        ctx.args = (stride, padding, dilation, groups)
        n_batch = r.shape[0]
        ctx.step = _chunk(bank[0].size * bank.dtype.itemsize, n_batch)
        outs = []
        for s in range(0, n_batch, ctx.step):
            kernels = _aggregate(be, bank, r, spatial, s, ctx.step)[0]
            outs.append(be.per_sample_conv2d_forward(x[s:s + ctx.step], kernels, *ctx.args)[0])
        ctx.save_for_backward(x, bank, r, spatial)
        return outs[0] if len(outs) == 1 else be.concatenate(outs, axis=0)

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        x, bank, r, spatial = ctx.saved
        need_dx, need_dbank, need_dr, need_ds = ctx.needs_input_grad[:4]
        n, kk = bank.shape[0], bank.shape[3] * bank.shape[4]
        flat = be.reshape(bank, (n, -1))
        dxs, drs, dss, dflat = [], [], [], None
        for s in range(0, r.shape[0], ctx.step):
            kernels, mixed = _aggregate(be, bank, r, spatial, s, ctx.step)
            dx, dk = be.per_sample_conv2d_backward(g[s:s + ctx.step], x[s:s + ctx.step], kernels, None, *ctx.args,
                                                   need_dx, need_dbank or need_dr or need_ds)
            dxs.append(dx)
            if dk is None:
                continue
            dk = be.reshape(dk, (dk.shape[0], -1, kk))  # (B, C' * C/g, kh*kw)
            if spatial is not None:
                if need_ds:  # ds_b[p] = sum over kernel entries at position p of dK * mixed
                    dss.append(be.sum(be.multiply(dk, mixed), axis=1))
                dk = be.multiply(dk, be.reshape(spatial[s:s + ctx.step], (-1, 1, kk)))
            dk = be.reshape(dk, (dk.shape[0], -1))
            if need_dr:
                drs.append(be.matmul(dk, be.transpose(flat, (1, 0))))
            if need_dbank:
                part = be.matmul(be.transpose(r[s:s + ctx.step], (1, 0)), dk)
                dflat = part if dflat is None else be.add(dflat, part)
        dx = _join(be, dxs) if need_dx else None
        dr = _join(be, drs) if need_dr else None
        ds = _join(be, dss) if need_ds else None
        dbank = be.reshape(dflat, bank.shape) if need_dbank else None
        return dx, dbank, dr, ds, None, None, None, None


def _aggregate(be, bank, r, spatial, start, step):
    """Kernels of samples [start, start + step): (B, C', C/g, kh, kw), and the unscaled mixture (B, C'C/g, kh*kw)."""
    n, kk = bank.shape[0], bank.shape[3] * bank.shape[4]
    mixed = be.reshape(be.matmul(r[start:start + step], be.reshape(bank, (n, -1))), (-1, bank[0].size // kk, kk))
    kernels = mixed
    if spatial is not None:
        kernels = be.multiply(mixed, be.reshape(spatial[start:start + step], (-1, 1, kk)))
    return be.reshape(kernels, (-1, *bank.shape[1:])), mixed


def _join(be, parts):
    return parts[0] if len(parts) == 1 else be.concatenate(parts, axis=0)
