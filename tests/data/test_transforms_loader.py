"""Augmentation, normalisation and the batch loader (determinism, prefetch thread hygiene)."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

from minicoconv.data import CIFAR100_MEAN, CIFAR100_STD, BatchLoader, Dataset, normalize, random_crop_flip
from minicoconv.data import loader as loader_module


def random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def reference_crop_flip(images: np.ndarray, rng: np.random.Generator, padding: int, flip: bool) -> np.ndarray:
    """One image at a time, with np.pad and slicing: the obviously-correct version."""
    b, _, h, w = images.shape
    dy = rng.integers(0, 2 * padding + 1, b)
    dx = rng.integers(0, 2 * padding + 1, b)
    flips = rng.integers(0, 2, b).astype(bool) if flip else np.zeros(b, dtype=bool)
    out = np.empty_like(images)
    for i in range(b):
        padded = np.pad(images[i], ((0, 0), (padding, padding), (padding, padding)))
        crop = padded[:, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        out[i] = crop[:, :, ::-1] if flips[i] else crop
    return out


# --------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("padding, flip", [(0, True), (1, True), (4, True), (4, False)])
def test_crop_flip_matches_per_image_reference(padding: int, flip: bool) -> None:
    images = random_images(64)
    got = random_crop_flip(images, np.random.default_rng(7), padding=padding, flip=flip)
    want = reference_crop_flip(images, np.random.default_rng(7), padding, flip)
    assert got.dtype == np.uint8 and got.shape == images.shape
    np.testing.assert_array_equal(got, want)


def test_crop_flip_draws_every_offset_and_both_flips() -> None:
    images = np.zeros((400, 1, 32, 32), dtype=np.uint8)
    images[:, :, 0, 0] = 1  # a marker at the top-left pixel
    out = random_crop_flip(images, np.random.default_rng(0), padding=4)
    positions = np.argwhere(out[:, 0] == 1)  # (image, row, col) of the surviving markers
    rows, cols = positions[:, 1], positions[:, 2]
    assert set(rows) == set(range(5))  # marker row 0 lands on rows 0..4 (4 of 9 offsets crop it away)
    assert set(cols) == set(range(5)) | set(range(27, 32))  # flipped copies land on the right
    assert 0.3 < (cols > 15).mean() < 0.7
    # Padding is zeros, and the input is left untouched.
    assert out.sum() == len(positions) and images[:, :, 0, 0].all()


def test_crop_flip_rejects_bad_input() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"uint8 batch of shape \(B, C, H, W\), got float32"):
        random_crop_flip(random_images(2).astype(np.float32), rng)
    with pytest.raises(ValueError, match=r"got uint8 array of shape \(3, 32, 32\)"):
        random_crop_flip(random_images(1)[0], rng)
    with pytest.raises(ValueError, match=r"padding must be non-negative"):
        random_crop_flip(random_images(1), rng, padding=-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_matches_formula(dtype: type) -> None:
    images = random_images(5)
    got = normalize(images, dtype=dtype)
    mean = np.array(CIFAR100_MEAN)[:, None, None]
    std = np.array(CIFAR100_STD)[:, None, None]
    want = (images / 255.0 - mean) / std
    assert got.dtype == dtype and got.shape == images.shape
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_normalize_validates() -> None:
    with pytest.raises(ValueError, match=r"normalize expects a uint8 batch"):
        normalize(random_images(1).astype(np.int64))
    with pytest.raises(ValueError, match=r"one value per channel \(3\)"):
        normalize(random_images(1), mean=(0.5, 0.5), std=(0.2, 0.2))
    with pytest.raises(ValueError, match=r"float dtype"):
        normalize(random_images(1), dtype=np.int32)
    with pytest.raises(ValueError, match=r"std must be positive"):
        normalize(random_images(1), std=(0.2, 0.0, 0.2))


# --------------------------------------------------------------------------- loader


def toy_dataset(n: int = 100) -> Dataset:
    images = random_images(n)
    images[:, 0, 0, 0] = np.arange(n) % 256  # index written into the pixels
    images[:, 0, 0, 1] = np.arange(n) // 256
    return Dataset(images, np.arange(n, dtype=np.int64) % 10, [f"c{i}" for i in range(10)], "toy")


def indices_of(x: np.ndarray) -> np.ndarray:
    """Recover the sample indices written by toy_dataset (no augmentation)."""
    pixels = np.rint((x[:, 0, 0, :2] * CIFAR100_STD[0] + CIFAR100_MEAN[0]) * 255).astype(int)
    return pixels[:, 0] + 256 * pixels[:, 1]


def epoch(loader: BatchLoader) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(loader)


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "minicoconv-prefetch"]


@pytest.mark.parametrize("prefetch", [False, True])
def test_batches_cover_the_dataset_once_per_epoch(prefetch: bool) -> None:
    ds = toy_dataset(103)
    loader = BatchLoader(ds, batch_size=10, shuffle=True, augment=False, seed=1, prefetch=prefetch)
    assert len(loader) == 11
    batches = epoch(loader)
    assert [len(y) for _, y in batches] == [10] * 10 + [3]
    seen = np.concatenate([indices_of(x) for x, _ in batches])
    assert sorted(seen) == list(range(103)) and not np.array_equal(seen, np.arange(103))
    for x, y in batches:
        assert x.dtype == np.float32 and x.shape[1:] == (3, 32, 32) and y.dtype == np.int64
        np.testing.assert_array_equal(y, ds.labels[indices_of(x)])
    # The next epoch is another order.
    assert not np.array_equal(np.concatenate([indices_of(x) for x, _ in epoch(loader)]), seen)


def test_unshuffled_drop_last_and_dtype() -> None:
    ds = toy_dataset(25)
    loader = BatchLoader(ds, 8, shuffle=False, augment=False, drop_last=True, dtype=np.float64)
    assert len(loader) == 3
    batches = epoch(loader)
    assert len(batches) == 3 and batches[0][0].dtype == np.float64
    np.testing.assert_array_equal(np.concatenate([indices_of(x) for x, _ in batches]), np.arange(24))
    np.testing.assert_allclose(batches[0][0], normalize(ds.images[:8], dtype=np.float64))
    with pytest.raises(ValueError, match=r"batch_size must be a positive integer"):
        BatchLoader(ds, 0)


def test_epochs_are_a_function_of_seed_and_epoch() -> None:
    ds = toy_dataset(60)

    def make(seed: int = 3, prefetch: bool = True) -> BatchLoader:
        return BatchLoader(ds, 16, shuffle=True, augment=True, seed=seed, prefetch=prefetch)

    uninterrupted = make()
    runs = [epoch(uninterrupted) for _ in range(3)]
    resumed = make(prefetch=False)  # the prefetch thread changes nothing either
    resumed.set_epoch(2)
    replay = epoch(resumed)
    assert resumed.epoch == 3
    for (x1, y1), (x2, y2) in zip(runs[2], replay, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(runs[0][0][0], runs[1][0][0])
    assert not np.array_equal(epoch(make(seed=4))[0][0], runs[0][0][0])
    with pytest.raises(ValueError, match=r"epoch must be non-negative"):
        resumed.set_epoch(-1)


def test_augmentation_changes_images_not_labels() -> None:
    ds = toy_dataset(32)
    plain = epoch(BatchLoader(ds, 32, shuffle=False, augment=False))[0]
    augmented = epoch(BatchLoader(ds, 32, shuffle=False, augment=True))[0]
    np.testing.assert_array_equal(plain[1], augmented[1])
    assert not np.array_equal(plain[0], augmented[0])
    assert augmented[0].shape == plain[0].shape


def test_early_stop_leaves_no_thread() -> None:
    loader = BatchLoader(toy_dataset(200), 4, shuffle=True, prefetch=True)
    for i, _ in enumerate(loader):
        if i == 2:
            break
    gc.collect()
    assert prefetch_threads() == []
    it = iter(loader)
    next(it)
    assert len(prefetch_threads()) == 1
    del it
    gc.collect()
    assert prefetch_threads() == []
    never_started = iter(loader)  # a generator not yet run: no thread at all
    assert prefetch_threads() == []
    never_started.close()


def test_worker_exception_reaches_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing_normalize(images: np.ndarray, *args: object) -> np.ndarray:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return normalize(images, *args)

    monkeypatch.setattr(loader_module, "normalize", failing_normalize)
    loader = BatchLoader(toy_dataset(50), 10, prefetch=True)
    got = []
    with pytest.raises(RuntimeError, match=r"disk on fire"):
        for batch in loader:
            got.append(batch)
    assert len(got) == 2
    gc.collect()
    assert prefetch_threads() == []


def test_consumer_exception_stops_worker() -> None:
    loader = BatchLoader(toy_dataset(200), 2, prefetch=True)
    with pytest.raises(KeyError):
        for _ in loader:
            raise KeyError("consumer failed")
    assert prefetch_threads() == []
