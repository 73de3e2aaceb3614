"""Per-sample convolutions: the computational core of the dynamic convolutions.

PerSampleConv2d:  y_b = conv(x_b, K_b) for explicit per-sample kernels K.
DynamicConv2d:    y_b = conv(x_b, s_b * sum_i coef_bi W_i) for an expert bank W (n, C', C/g, k, k)
                  and mixing weights coef (N, n) (one per expert: CondConv, DY-CNN, ODConv)
                  or (N, n, C') (one per expert and output channel: CoConv's fused form),
                  without ever holding all N per-sample kernels.

DynamicConv2d takes one of two paths, chosen per call:

- small maps (H' * W' <= SMALL_MAP_PIXELS), groups 1:
  backend.mixture_conv2d_forward / _backward, one pass per direction that never holds a
  whole kernel (CPU: backend/cpu/mixture_conv.py). A sample's kernel serves only H'*W'
  multiply-adds per entry there, so materialising it costs as much memory traffic as the
  convolution, and BLAS runs the skinny per-sample GEMMs at half speed.
- otherwise, chunks of samples whose aggregated kernels take at most KERNEL_BUDGET_BYTES
  (sized to stay in cache between aggregation and convolution), per chunk B:
      forward:   K_B = aggregate_kernels(W, coef_B),  y_B = per_sample_conv(x_B, K_B)
      backward:  dx_B, dK_B = per_sample_conv_backward(...)
                 dW += , dcoef_B = aggregate_kernels_backward(dK_B, W, coef_B, dbank=dW)
  backward re-aggregates each chunk instead of keeping it.

Where the small-map pass pays was measured layer by layer (docs/performance.md): at 8x8 the
two paths were within noise of each other, so it is used up to 16 pixels.
"""

from __future__ import annotations

from ..autograd import Function

#: bytes of aggregated per-sample kernels held at once by DynamicConv2d's chunked path (8 MB:
#: 3 samples of ResNet18's 8x8 stage, whose forward took 1.4x a static conv against 2.2x with
#: one 75 MB chunk; at 16x16, 4 to 256 MB were within noise of each other)
KERNEL_BUDGET_BYTES = 8 * 2**20
#: DynamicConv2d uses backend.mixture_conv2d_* when the output map has at most this many pixels
SMALL_MAP_PIXELS = 16


def _chunk(per_sample_bytes: int, batch: int) -> int:
    return max(1, min(batch, KERNEL_BUDGET_BYTES // max(per_sample_bytes, 1)))


def uses_small_map_path(x_shape, bank_shape, stride, padding, dilation, groups) -> bool:
    """Whether DynamicConv2d takes the small-map path (see the module docstring)."""
    if groups != 1:
        return False
    pixels = 1
    for size, k, s, p, d in zip(x_shape[2:], bank_shape[3:], stride, padding, dilation):
        pixels *= max(0, (size + 2 * p - d * (k - 1) - 1) // s + 1)
    return pixels <= SMALL_MAP_PIXELS


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
    """y_b = conv2d(x_b, s_b * sum_i coef_bi W_i):  x (N, C, H, W), bank (n, C', C/g, kh, kw),
    coef (N, n) or (N, n, C') (coef_bi then a vector over the output channels).

    `spatial` s (N, kh*kw) or None scales each kernel position per sample (ODConv's
    spatial attention); None means 1. `small_map` (None: the SMALL_MAP_PIXELS rule) forces
    a path; the tests use it to cover both.
    """

    @staticmethod
    def forward(ctx, x, bank, coef, spatial, stride, padding, dilation, groups, small_map=None):
        be = ctx.backend
        ctx.args = (stride, padding, dilation, groups)
        if small_map is None:
            small_map = uses_small_map_path(x.shape, bank.shape, stride, padding, dilation, groups)
        elif small_map and groups != 1:
            raise ValueError("dynamic_conv2d: the small-map path needs groups = 1")
        ctx.small_map = small_map
        if small_map:
            y, saved = be.mixture_conv2d_forward(x, bank, coef, spatial, stride, padding, dilation)
            ctx.save_for_backward(x, bank, coef, spatial, saved)
            return y
        n_batch = coef.shape[0]
        ctx.step = _chunk(bank[0].size * bank.dtype.itemsize, n_batch)
        outs = []
        for s in range(0, n_batch, ctx.step):
            kernels = _aggregate(be, bank, coef, spatial, s, ctx.step)[0]
            outs.append(be.per_sample_conv2d_forward(x[s:s + ctx.step], kernels, *ctx.args)[0])
        ctx.save_for_backward(x, bank, coef, spatial, None)
        return _join(be, outs)

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        x, bank, coef, spatial, saved = ctx.saved
        need_dx, need_dbank, need_dcoef, need_ds = ctx.needs_input_grad[:4]
        if ctx.small_map:
            grads = be.mixture_conv2d_backward(g, x, bank, coef, spatial, saved, *ctx.args[:3], need_dx, need_dbank,
                                               need_dcoef, need_ds)
            return _pad(ctx, grads)
        dxs, dcoefs, dss, dbank = [], [], [], None
        for s in range(0, coef.shape[0], ctx.step):
            kernels, mixed, scale = _aggregate(be, bank, coef, spatial, s, ctx.step)
            dx, dk = be.per_sample_conv2d_backward(g[s:s + ctx.step], x[s:s + ctx.step], kernels, None, *ctx.args,
                                                   need_dx, need_dbank or need_dcoef or need_ds)
            dxs.append(dx)
            if dk is None:
                continue
            if spatial is not None:
                dk = be.reshape(dk, mixed.shape)  # (B, C', R)
                if need_ds:  # ds_b[p] = sum over kernel entries at position p of dK * mixed
                    per_column = be.sum(be.multiply(dk, mixed), axis=1)  # (B, R)
                    dss.append(be.sum(be.reshape(per_column, (dk.shape[0], -1, spatial.shape[1])), axis=1))
                dk = be.reshape(be.multiply(dk, scale), kernels.shape)
            if need_dbank or need_dcoef:  # dbank accumulates over the chunks
                dbank, dcoef = be.aggregate_kernels_backward(dk, bank, coef[s:s + ctx.step], need_dbank, need_dcoef,
                                                             dbank)
                dcoefs.append(dcoef)
        dx = _join(be, dxs) if need_dx else None
        dcoef = _join(be, dcoefs) if need_dcoef else None
        ds = _join(be, dss) if need_ds else None
        return _pad(ctx, (dx, dbank, dcoef, ds))


def _pad(ctx, grads) -> tuple:
    """The four tensor gradients, then None for each other input given to apply (geometry, and
    `small_map` when it was passed positionally or not at all: the count must match either way)."""
    return (*grads, *(None,) * (len(ctx.inputs) - 4))


def _aggregate(be, bank, coef, spatial, start, step):
    """Kernels of samples [start, start + step): (B, C', C/g, kh, kw); with a spatial factor also
    the unscaled mixture (B, C', R) and the factor as a row per sample (B, 1, R), R = C/g*kh*kw.

    The factor s_b[p] is spread over a whole kernel row (R entries, position p repeating every
    kh*kw) so that every product and sum runs along rows of R entries: with (.., kh*kw) as
    the last axis NumPy looped over 9 entries at a time (ODConv's 8x8 stage spent half its
    training step there; docs/performance.md).
    """
    mixed = be.aggregate_kernels(bank, coef[start:start + step])
    if spatial is None:
        return mixed, None, None
    n_batch, c_out = mixed.shape[:2]
    kk = bank.shape[3] * bank.shape[4]
    rows = bank[0, 0].size
    scale = be.reshape(be.broadcast_to(be.reshape(spatial[start:start + step], (n_batch, 1, 1, kk)),
                                       (n_batch, 1, rows // kk, kk)), (n_batch, 1, rows))
    mixed = be.reshape(mixed, (n_batch, c_out, rows))
    kernels = be.multiply(mixed, scale)
    return be.reshape(kernels, (-1, *bank.shape[1:])), mixed, scale


def _join(be, parts):
    return parts[0] if len(parts) == 1 else be.concatenate(parts, axis=0)
