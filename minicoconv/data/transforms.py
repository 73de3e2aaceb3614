"""Batch augmentation and normalisation, vectorised over the batch.

The training recipe (docs/models-and-recipe.md): a random 32x32 crop of the image
zero-padded by 4 pixels, a horizontal flip with probability 1/2, then
normalisation with the CIFAR-100 channel statistics::

    x = (pixel / 255 - mean[c]) / std[c]

Shapes: ``(B, C, H, W)`` uint8 in, ``(B, C, H, W)`` uint8 (augmentation) or
float (normalisation) out. No Python loop over the images: every image's crop
offsets are applied by one gather from a strided view of all crops, and the
flips by one reversed copy of the flipped images.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import DTypeLike

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.267, 0.256, 0.276)


def _check_batch(images: np.ndarray, what: str) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        got = (
            f"{images.dtype} array of shape {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        )
        raise ValueError(f"{what} expects a uint8 batch of shape (B, C, H, W), got {got}")


def random_crop_flip(images: np.ndarray, rng: np.random.Generator, padding: int = 4, flip: bool = True) -> np.ndarray:
    """Random crop with zero padding, then a random horizontal flip, per image.

    Image ``b`` is zero-padded by ``padding`` pixels on each side and cropped
    back to ``H x W`` at offsets ``dy[b], dx[b]`` drawn uniformly from
    ``0..2*padding``; it is then mirrored left-right with probability 1/2
    (never if ``flip`` is False). Random draws, in order: ``dy``, ``dx``
    (``rng.integers``, shape ``(B,)`` each), then the flips.

    Args:
        images: ``(B, C, H, W)`` uint8.
        rng: the generator that decides the offsets and flips.
        padding: pixels of zero padding on each side (0 disables cropping).
        flip: also flip; False gives crops only.

    Returns:
        A new ``(B, C, H, W)`` uint8 batch.
    """
    _check_batch(images, "random_crop_flip")
    dy, dx, flips = crop_flip_params(rng, images.shape[0], padding, flip)
    return apply_crop_flip(images, dy, dx, flips, padding)


def crop_flip_params(rng: np.random.Generator, batch: int, padding: int = 4, flip: bool = True
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The random draws of `random_crop_flip` for a batch of `batch` images: (dy, dx, flips), each (B,).

    Drawn in that order, so a data-parallel rank can draw them for the whole global batch
    (keeping its generator in step with every other rank) and apply only its own slice.
    """
    if padding < 0:
        raise ValueError(f"padding must be non-negative, got {padding}")
    dy = rng.integers(0, 2 * padding + 1, batch)
    dx = rng.integers(0, 2 * padding + 1, batch)
    flips = rng.integers(0, 2, batch).astype(bool) if flip else np.zeros(batch, dtype=bool)
    return dy, dx, flips


def apply_crop_flip(images: np.ndarray, dy: np.ndarray, dx: np.ndarray, flips: np.ndarray, padding: int = 4
                    ) -> np.ndarray:
    """Crop image b of the zero-padded batch at (dy[b], dx[b]) and mirror it where flips[b]: (B, C, H, W) uint8."""
    _check_batch(images, "apply_crop_flip")
    b, c, h, w = images.shape
    if not (len(dy) == len(dx) == len(flips) == b):
        raise ValueError(f"apply_crop_flip: {b} images but {len(dy)}, {len(dx)}, {len(flips)} offsets/flips")
    p = padding
    padded = np.zeros((b, c, h + 2 * p, w + 2 * p), dtype=np.uint8)
    padded[:, :, p : p + h, p : p + w] = images
    # windows[i, :, y, x] is the H x W crop of padded image i at offset (y, x): a view.
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))  # (B, C, 2p+1, 2p+1, H, W)
    # Advanced indices on axes 0, 2, 3 broadcast to the batch axis: (B, C, H, W), a copy.
    out = windows[np.arange(b), :, dy, dx]
    out[flips] = out[flips][..., ::-1]
    return out


def normalize(
    images: np.ndarray,
    mean: tuple[float, ...] = CIFAR100_MEAN,
    std: tuple[float, ...] = CIFAR100_STD,
    dtype: DTypeLike = np.float32,
) -> np.ndarray:
    """``(pixel / 255 - mean[c]) / std[c]`` for a uint8 batch.

    Computed as ``pixel * scale[c] + shift[c]`` with ``scale = 1 / (255 std)``
    and ``shift = -mean / std``: one conversion and two in-place passes, no
    temporaries.

    Args:
        images: ``(B, C, H, W)`` uint8.
        mean, std: per-channel statistics of pixels scaled to [0, 1]; one
            value per channel.
        dtype: float dtype of the result.

    Returns:
        ``(B, C, H, W)`` array of ``dtype``.
    """
    _check_batch(images, "normalize")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"normalize needs a float dtype, got {dtype}")
    c = images.shape[1]
    mean_a = np.asarray(mean, dtype=np.float64)
    std_a = np.asarray(std, dtype=np.float64)
    if mean_a.shape != (c,) or std_a.shape != (c,):
        raise ValueError(
            f"mean and std need one value per channel ({c}), "
            f"got {mean_a.shape[0] if mean_a.ndim else 'a scalar'} and "
            f"{std_a.shape[0] if std_a.ndim else 'a scalar'}"
        )
    if np.any(std_a <= 0):
        raise ValueError(f"std must be positive, got {tuple(std_a)}")
    scale = (1.0 / (255.0 * std_a)).astype(dtype)[:, None, None]
    shift = (-mean_a / std_a).astype(dtype)[:, None, None]
    out = images.astype(dtype)
    out *= scale
    out += shift
    return out
