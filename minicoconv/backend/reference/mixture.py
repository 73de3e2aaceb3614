"""Mixtures of expert kernels (CondConv, DY-CNN, fused CoConv, ODConv), written with einsum.

    bank (n, C', C/g, kh, kw); coef (B, n), one weight per expert, or (B, n, C'), one per
    expert and output channel -> kernels (B, C', C/g, kh, kw):
    kernels[b, c'] = sum_i coef[b, i(, c')] * bank[i, c']

A mixture convolution is a per-sample convolution with those kernels, each scaled per
kernel position q = i*kw + j by spatial[b, q] (ODConv) when given:
    y[b] = conv2d(x[b], spatial[b] * kernels[b]),  groups = 1.
"""

from __future__ import annotations

import numpy as np

from .checks import float_array, same_shape
from .conv import per_sample_conv2d_backward, per_sample_conv2d_forward


def _check_mixture(op: str, bank: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Validate bank and coef; return coef as (B, n, C') (a 2-d coef broadcast over C')."""
    float_array(op, "bank", bank, 5, "(n, C', C/groups, kh, kw)")
    if not isinstance(coef, np.ndarray) or coef.ndim not in (2, 3) or coef.dtype != bank.dtype:
        raise ValueError(f"{op}: expected coef (B, n) or (B, n, C') of dtype {bank.dtype}, got "
                         f"{getattr(coef, 'shape', type(coef).__name__)} {getattr(coef, 'dtype', '')}")
    n, c_out = bank.shape[:2]
    if coef.shape[1] != n or (coef.ndim == 3 and coef.shape[2] != c_out):
        raise ValueError(f"{op}: expected coef of shape (B, {n}) or (B, {n}, {c_out}), got {coef.shape}")
    return coef if coef.ndim == 3 else np.broadcast_to(coef[:, :, None], (*coef.shape, c_out))


def aggregate_kernels(bank: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """kernels[b, c'] = sum_i coef[b, i(, c')] * bank[i, c']  -> (B, C', C/g, kh, kw)."""
    coef3 = _check_mixture("aggregate_kernels", bank, coef)
    return np.einsum("bic,ic...->bc...", coef3, bank)


def aggregate_kernels_backward(dk: np.ndarray, bank: np.ndarray, coef: np.ndarray, need_dbank: bool = True,
                               need_dcoef: bool = True,
                               dbank: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(dbank, dcoef) for dk (B, C', C/g, kh, kw), each None unless asked for:

        dbank[i, c'] = sum_b coef[b, i(, c')] * dk[b, c']
        dcoef[b, i, c'] = <dk[b, c'], bank[i, c']>   (summed over c' for a 2-d coef)

    A given `dbank` (C-contiguous, like bank) gets the gradient added in place and is returned.
    """
    op = "aggregate_kernels"
    coef3 = _check_mixture(op, bank, coef)
    same_shape(op, "dk", dk, (coef.shape[0], *bank.shape[1:]), bank.dtype)
    if dbank is not None and (not isinstance(dbank, np.ndarray) or dbank.shape != bank.shape
                              or dbank.dtype != bank.dtype or not dbank.flags.c_contiguous):
        raise ValueError(f"{op}: expected dbank to accumulate into: a C-contiguous array like bank "
                         f"{bank.shape} {bank.dtype}, got {getattr(dbank, 'shape', type(dbank).__name__)}")
    out_bank = out_coef = None
    if need_dbank:
        part = np.einsum("bic,bc...->ic...", coef3, dk)
        out_bank = part if dbank is None else np.add(dbank, part, out=dbank)
    if need_dcoef:
        flat_dk, flat_bank = dk.reshape(*dk.shape[:2], -1), bank.reshape(*bank.shape[:2], -1)
        per_channel = np.einsum("bcr,icr->bic", flat_dk, flat_bank)
        out_coef = per_channel if coef.ndim == 3 else per_channel.sum(axis=2)
    return out_bank, out_coef


def _check_spatial(op: str, spatial, x: np.ndarray, bank: np.ndarray) -> None:
    if spatial is not None:
        float_array(op, "spatial", spatial, 2, "(N, kh*kw)", bank.dtype)
        if spatial.shape != (x.shape[0], bank.shape[3] * bank.shape[4]):
            raise ValueError(f"{op}: expected spatial of shape {(x.shape[0], bank.shape[3] * bank.shape[4])} "
                             f"= (N, kh*kw), got {spatial.shape}")


def _kernels(op, x, bank, coef, spatial):
    """(kernels, mixture): the mixture M_b = aggregate_kernels(bank, coef)[b] and s_b * M_b."""
    float_array(op, "x", x, 4, "(N, C, H, W)", bank.dtype)
    _check_spatial(op, spatial, x, bank)
    if coef.shape[0] != x.shape[0]:
        raise ValueError(f"{op}: expected coef for each of the N = {x.shape[0]} samples, got {coef.shape}")
    mixed = aggregate_kernels(bank, coef)
    if spatial is None:
        return mixed, mixed
    return mixed * spatial.reshape(-1, 1, 1, *bank.shape[3:]), mixed


def mixture_conv2d_forward(x: np.ndarray, bank: np.ndarray, coef: np.ndarray, spatial: np.ndarray | None, stride,
                           padding, dilation) -> tuple[np.ndarray, None]:
    """y[b] = conv2d(x[b], s_b * sum_i coef[b, i(, c')] bank[i]), groups = 1 -> (y (N, C', OH, OW), None)."""
    kernels, _ = _kernels("mixture_conv2d", x, bank, coef, spatial)
    return per_sample_conv2d_forward(x, kernels, stride, padding, dilation, 1)[0], None


def mixture_conv2d_backward(gy: np.ndarray, x: np.ndarray, bank: np.ndarray, coef: np.ndarray,
                            spatial: np.ndarray | None, saved, stride, padding, dilation, need_dx: bool = True,
                            need_dbank: bool = True, need_dcoef: bool = True, need_ds: bool = False) -> tuple:
    """(dx, dbank, dcoef, ds), each None unless asked for (ds also None without spatial).

    With K_b = s_b * M_b:  (dx, dK) from the per-sample conv;  ds_b[q] = sum over the kernel
    entries at position q of dK_b * M_b;  dM_b = s_b * dK_b, then aggregate_kernels_backward.
    """
    need_ds = need_ds and spatial is not None
    kernels, mixed = _kernels("mixture_conv2d", x, bank, coef, spatial)
    need_dk = need_dbank or need_dcoef or need_ds
    dx, dk = per_sample_conv2d_backward(gy, x, kernels, None, stride, padding, dilation, 1, need_dx, need_dk)
    ds = dbank = dcoef = None
    if dk is not None and spatial is not None:
        kk = bank.shape[3] * bank.shape[4]
        dk3 = dk.reshape(dk.shape[0], -1, kk)
        if need_ds:
            ds = (dk3 * mixed.reshape(dk3.shape)).sum(axis=1)
        dk = (dk3 * spatial.reshape(-1, 1, kk)).reshape(kernels.shape)
    if need_dbank or need_dcoef:
        dbank, dcoef = aggregate_kernels_backward(dk, bank, coef, need_dbank, need_dcoef)
    return dx, dbank, dcoef, ds
