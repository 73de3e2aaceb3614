"""Mixtures of expert kernels on the CPU: the aggregation, and the validation shared with mixture_conv.py.

    kernels[b, c'] = sum_i coef[b, i, c'] * bank[i, c']     bank (n, C', C/g, kh, kw)

coef is (B, n, C') (one weight per expert and output channel: CoConv's fused form) or
(B, n) (one per expert: CondConv, DY-CNN, ODConv), broadcast over C'.

`aggregate_kernels` / `aggregate_kernels_backward`: the mixture alone, for the chunked
path (ops/dynamic_conv.py) that then convolves with im2col + BLAS (per_sample_conv.py).
One Numba pass, parallel over (channels, column block) tasks. Four samples and four
experts per pass: each loaded weight feeds four outputs and each output is stored once
per four experts (a pass per expert would be bound by stores). As a BLAS product
(B, n) @ (n, C'K) its inner dimension would be n, which BLAS runs slowly (docs/performance.md).
Every mixture a sample gets depends on that sample only (the leftover samples of the
four-sample passes are mixed one by one with the same expression), so splitting a batch
never changes an aggregated kernel. Callers validate shapes first: the kernels do no
bounds checks.
"""

import numpy as np
from numba import get_num_threads, njit, prange

from .validation import check_float_array

# Let LLVM reassociate sums (vectorised dot products) and fuse multiply-adds; no nnan/ninf.
FASTMATH = {"reassoc", "contract"}
# aggregate_kernels: columns per task
AGG_COLUMNS = 1024


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def _check_mixture(op, bank, coef):
    """bank (n, C', C/g, kh, kw), coef (B, n) or (B, n, C') -> (bank, coef (B, n, C') contiguous)."""
    bank = check_float_array(op, "bank", bank, 5, "(n, C', C/groups, kh, kw)")
    coef = check_float_array(op, "coef", coef, (2, 3), "(B, n) or (B, n, C')", bank.dtype, like="bank")
    n, c_out = bank.shape[:2]
    if coef.shape[1] != n or (coef.ndim == 3 and coef.shape[2] != c_out):
        raise ValueError(f"{op}: expected coef of shape (B, {n}) or (B, {n}, {c_out}) for bank of shape "
                         f"{bank.shape}, got {coef.shape}")
    if n < 1 or c_out < 1:
        raise ValueError(f"{op}: expected a bank with n >= 1 experts and C' >= 1, got shape {bank.shape}")
    if coef.ndim == 2:
        coef = np.ascontiguousarray(np.broadcast_to(coef[:, :, None], (*coef.shape, c_out)))
    return bank, coef


def _reduce_coef_grad(dcoef, coef_ndim):
    """Per-channel gradient (B, n, C') -> the shape coef came in."""
    return dcoef if coef_ndim == 3 else dcoef.sum(axis=2)


def _block(total, target, align=1):
    """Block size near `target` (a multiple of `align`) cutting `total` into a multiple of
    the thread count of blocks, so that no thread idles at the end of a parallel loop."""
    threads = get_num_threads()
    n_blocks = -(-max(1, round(total / target)) // threads) * threads
    size = -(-total // min(n_blocks, total))
    return max(1, -(-size // align) * align)


# --------------------------------------------------------------------------------------
# Aggregation: four samples x four experts per pass
# --------------------------------------------------------------------------------------
# Pattern of the arithmetic kernels below: a `prange` over tasks, each task one call of a serial
# function (`_*_task`) whose helpers are inlined into it. LLVM vectorises the loops of
# such a function well, and the views its loops take share one reference count update
# per task; loops written directly in the parallel body vectorised worse here, and views
# passed to non-inlined helpers cost an atomic reference count update (contended across
# threads) per call.


@njit(inline="always")
def _weight(coef, b, i, c):
    """coef[b, i, c]; 0 for an expert slot past the last (the padding of a four-expert pass)."""
    if i < coef.shape[1]:
        return coef[b, i, c]
    return coef.dtype.type(0)


@njit(inline="always", fastmath=FASTMATH)
def _mix_rows(coef, w, b0, c, k0, k1, o0, o1, o2, o3):
    """o_s[:k1-k0] = sum_i coef[b_s, i, c] * w[i, c, k0:k1] for b_s = min(b0 + s, B - 1), s = 0..3.

    coef (B, n, C'), w (n, C', K). Experts go four per pass (slots past n weigh 0 and
    read the last expert's row); samples past the batch repeat the last sample.
    """
    n_batch, n = coef.shape[0], coef.shape[1]
    m = k1 - k0
    last = n_batch - 1
    b1, b2, b3 = min(b0 + 1, last), min(b0 + 2, last), min(b0 + 3, last)
    for i0 in range(0, n, 4):
        w0 = w[i0, c, k0:k1]
        w1 = w[min(i0 + 1, n - 1), c, k0:k1]
        w2 = w[min(i0 + 2, n - 1), c, k0:k1]
        w3 = w[min(i0 + 3, n - 1), c, k0:k1]
        a00, a01, a02, a03 = (_weight(coef, b0, i0, c), _weight(coef, b0, i0 + 1, c), _weight(coef, b0, i0 + 2, c),
                              _weight(coef, b0, i0 + 3, c))
        a10, a11, a12, a13 = (_weight(coef, b1, i0, c), _weight(coef, b1, i0 + 1, c), _weight(coef, b1, i0 + 2, c),
                              _weight(coef, b1, i0 + 3, c))
        a20, a21, a22, a23 = (_weight(coef, b2, i0, c), _weight(coef, b2, i0 + 1, c), _weight(coef, b2, i0 + 2, c),
                              _weight(coef, b2, i0 + 3, c))
        a30, a31, a32, a33 = (_weight(coef, b3, i0, c), _weight(coef, b3, i0 + 1, c), _weight(coef, b3, i0 + 2, c),
                              _weight(coef, b3, i0 + 3, c))
        if i0 == 0:
            for k in range(m):
                x0, x1, x2, x3 = w0[k], w1[k], w2[k], w3[k]
                o0[k] = a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3
                o1[k] = a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3
                o2[k] = a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3
                o3[k] = a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3
        else:
            for k in range(m):
                x0, x1, x2, x3 = w0[k], w1[k], w2[k], w3[k]
                o0[k] += a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3
                o1[k] += a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3
                o2[k] += a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3
                o3[k] += a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3


@njit(inline="always", fastmath=FASTMATH)
def _mix_row(coef, w, b, c, k0, k1, o):
    """_mix_rows for one sample: the same expression per output, so the same result."""
    n = coef.shape[1]
    m = k1 - k0
    for i0 in range(0, n, 4):
        w0 = w[i0, c, k0:k1]
        w1 = w[min(i0 + 1, n - 1), c, k0:k1]
        w2 = w[min(i0 + 2, n - 1), c, k0:k1]
        w3 = w[min(i0 + 3, n - 1), c, k0:k1]
        a0, a1, a2, a3 = (_weight(coef, b, i0, c), _weight(coef, b, i0 + 1, c), _weight(coef, b, i0 + 2, c),
                          _weight(coef, b, i0 + 3, c))
        if i0 == 0:
            for k in range(m):
                o[k] = a0 * w0[k] + a1 * w1[k] + a2 * w2[k] + a3 * w3[k]
        else:
            for k in range(m):
                o[k] += a0 * w0[k] + a1 * w1[k] + a2 * w2[k] + a3 * w3[k]


@njit(cache=True, fastmath=FASTMATH)
def _aggregate_task(coef, w, c0, c1, k0, k1, out):
    """Channels [c0, c1), columns [k0, k1) of every sample's mixture (the last 1-3 samples one by one)."""
    n_batch = out.shape[0]
    full = n_batch - n_batch % 4
    for c in range(c0, c1):
        for b0 in range(0, full, 4):
            _mix_rows(coef, w, b0, c, k0, k1, out[b0, c, k0:k1], out[b0 + 1, c, k0:k1], out[b0 + 2, c, k0:k1],
                      out[b0 + 3, c, k0:k1])
        for b in range(full, n_batch):
            _mix_row(coef, w, b, c, k0, k1, out[b, c, k0:k1])


@njit(parallel=True, cache=True)
def _aggregate_kernel(coef, w, out):
    """out (B, C', K) = mixtures of w (n, C', K) with coef (B, n, C'); tasks: about AGG_COLUMNS
    entries of K each, or blocks of channels when K is shorter (depthwise kernels: K = 9)."""
    c_out, k_total = out.shape[1], out.shape[2]
    n_cols = (k_total + AGG_COLUMNS - 1) // AGG_COLUMNS
    per_task = max(1, AGG_COLUMNS // k_total)  # channels per task
    n_rows = (c_out + per_task - 1) // per_task
    for task in prange(n_rows * n_cols):
        r = task // n_cols
        k0 = (task - r * n_cols) * AGG_COLUMNS
        _aggregate_task(coef, w, r * per_task, min(c_out, (r + 1) * per_task), k0, min(k_total, k0 + AGG_COLUMNS),
                        out)


@njit(cache=True, fastmath=FASTMATH)
def _aggregate_backward_task(dk, coef, w, c, need_dbank, need_dcoef, accumulate, dw, dcoef):
    n_batch, n = coef.shape[0], coef.shape[1]
    k_total = w.shape[2]
    for i in range(n):
        wi = w[i, c]
        if need_dbank:
            out = dw[i, c]
            a = coef[0, i, c]
            src = dk[0, c]
            if accumulate:
                for k in range(k_total):
                    out[k] += a * src[k]
            else:
                for k in range(k_total):
                    out[k] = a * src[k]
            for b in range(1, n_batch):
                a = coef[b, i, c]
                src = dk[b, c]
                for k in range(k_total):
                    out[k] += a * src[k]
        if need_dcoef:
            for b in range(n_batch):
                dcoef[b, i, c] = _dot(dk[b, c], wi, k_total)


@njit(parallel=True, cache=True)
def _aggregate_backward_kernel(dk, coef, w, need_dbank, need_dcoef, accumulate, dw, dcoef):
    """dw[i, c] (= or +=) sum_b coef[b, i, c] dk[b, c];  dcoef[b, i, c] = <dk[b, c], w[i, c]>; tasks: channels."""
    for c in prange(dk.shape[1]):
        _aggregate_backward_task(dk, coef, w, c, need_dbank, need_dcoef, accumulate, dw, dcoef)


@njit(inline="always", fastmath=FASTMATH)
def _dot(a, b, m):
    acc = a.dtype.type(0)
    for k in range(m):
        acc += a[k] * b[k]
    return acc


def aggregate_kernels(bank, coef):
    """kernels[b, c'] = sum_i coef[b, i(, c')] * bank[i, c']:  bank (n, C', C/g, kh, kw),
    coef (B, n) or (B, n, C') -> (B, C', C/g, kh, kw)."""
    bank, coef3 = _check_mixture("aggregate_kernels", bank, coef)
    n, c_out = bank.shape[:2]
    out = np.empty((coef3.shape[0], *bank.shape[1:]), dtype=bank.dtype)
    if out.size:
        _aggregate_kernel(coef3, bank.reshape(n, c_out, -1), out.reshape(coef3.shape[0], c_out, -1))
    return out


def aggregate_kernels_backward(dk, bank, coef, need_dbank=True, need_dcoef=True, dbank=None):
    """Gradients of aggregate_kernels for dk (B, C', C/g, kh, kw): (dbank, dcoef), None where not needed.

    dbank: None, or an array the bank gradient is added to in place (and returned): the
    chunked dynamic conv sums its chunks' gradients so, without a pass per chunk.
    """
    op = "aggregate_kernels"
    bank, coef3 = _check_mixture(op, bank, coef)
    dk = check_float_array(op, "dk", dk, 5, "(B, C', C/groups, kh, kw)", bank.dtype, like="bank")
    if dk.shape != (coef3.shape[0], *bank.shape[1:]):
        raise ValueError(f"{op}: expected dk of shape {(coef3.shape[0], *bank.shape[1:])}, got {dk.shape}")
    accumulate = dbank is not None
    if accumulate and (not isinstance(dbank, np.ndarray) or dbank.shape != bank.shape or dbank.dtype != bank.dtype
                       or not dbank.flags.c_contiguous):
        raise ValueError(f"{op}: expected dbank to accumulate into: a C-contiguous array like bank "
                         f"{bank.shape} {bank.dtype}, got {getattr(dbank, 'shape', type(dbank).__name__)}")
    n, c_out = bank.shape[:2]
    if need_dbank and not accumulate:
        dbank = np.empty(bank.shape, dtype=bank.dtype)
    dcoef = np.empty(coef3.shape, dtype=bank.dtype) if need_dcoef else None
    if coef3.shape[0] == 0:
        if need_dbank and not accumulate:
            dbank.fill(0)
    elif need_dbank or need_dcoef:
        empty = np.empty((0, 0, 0), dtype=bank.dtype)
        _aggregate_backward_kernel(dk.reshape(dk.shape[0], c_out, -1), coef3, bank.reshape(n, c_out, -1),
                                   need_dbank, need_dcoef, accumulate,
                                   empty if dbank is None else dbank.reshape(n, c_out, -1),
                                   empty if dcoef is None else dcoef)
    return (dbank if need_dbank else None), (_reduce_coef_grad(dcoef, np.ndim(coef)) if need_dcoef else None)
