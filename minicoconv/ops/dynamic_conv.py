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
    """y_b = conv2d(x_b, sum_i r_bi W_i):  x (N, C, H, W), bank (n, C', C/g, kh, kw), r (N, n)."""

    @staticmethod
    def forward(ctx, x, bank, r, stride, padding, dilation, groups):
        be = ctx.backend
        ctx.args = (stride, padding, dilation, groups)
        n_batch, n = r.shape
        flat = be.reshape(bank, (n, -1))
        step = _chunk(flat.shape[1] * flat.dtype.itemsize, n_batch)
        outs = []
        for s in range(0, n_batch, step):
            kernels = be.reshape(be.matmul(r[s:s + step], flat), (-1, *bank.shape[1:]))
            outs.append(be.per_sample_conv2d_forward(x[s:s + step], kernels, *ctx.args)[0])
        ctx.save_for_backward(x, bank, r)
        ctx.step = step
        return outs[0] if len(outs) == 1 else be.concatenate(outs, axis=0)

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        x, bank, r = ctx.saved
        need_dx, need_dbank, need_dr = ctx.needs_input_grad[:3]
        n_batch, n = r.shape
        flat = be.reshape(bank, (n, -1))
        dxs, drs, dflat = [], [], None
        for s in range(0, n_batch, ctx.step):
            rb = r[s:s + ctx.step]
            kernels = be.reshape(be.matmul(rb, flat), (-1, *bank.shape[1:]))
            dx, dk = be.per_sample_conv2d_backward(g[s:s + ctx.step], x[s:s + ctx.step], kernels, None, *ctx.args,
                                                   need_dx, need_dbank or need_dr)
            dxs.append(dx)
            if dk is not None:
                dk = be.reshape(dk, (dk.shape[0], -1))
                if need_dr:
                    drs.append(be.matmul(dk, be.transpose(flat, (1, 0))))
                if need_dbank:
                    part = be.matmul(be.transpose(rb, (1, 0)), dk)
                    dflat = part if dflat is None else be.add(dflat, part)
        dx = (dxs[0] if len(dxs) == 1 else be.concatenate(dxs, axis=0)) if need_dx else None
        dr = (drs[0] if len(drs) == 1 else be.concatenate(drs, axis=0)) if need_dr else None
        dbank = be.reshape(dflat, bank.shape) if need_dbank else None
        return dx, dbank, dr, None, None, None, None
