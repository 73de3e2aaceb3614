"""Mini-batches of normalised float images from a uint8 :class:`Dataset`.

Each epoch has its own generator, ``default_rng(SeedSequence(seed,
spawn_key=(epoch,)))``, which draws the shuffle order and then, batch by
batch, the augmentation. Epoch ``k`` is therefore a deterministic function of
``(seed, k)`` alone: a run resumed at epoch ``k`` calls ``set_epoch(k)`` and
sees exactly the batches an uninterrupted run would have seen.

With ``prefetch=True`` one background thread prepares the next batch while
the consumer works on the current one (NumPy releases the GIL in the copies
and arithmetic). The thread stops when the iteration ends, when the consumer
stops early (``break``, an exception, or dropping the iterator), and an
exception raised while preparing a batch is re-raised in the consumer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator

import numpy as np
from numpy.typing import DTypeLike

from minicoconv.data.dataset import Dataset
from minicoconv.data.transforms import CIFAR100_MEAN, CIFAR100_STD, normalize, random_crop_flip

Batch = tuple[np.ndarray, np.ndarray]


class BatchLoader:
    """Iterate over a dataset in mini-batches.

    Yields ``(x, y)``: ``x`` is ``(B, 3, 32, 32)`` of ``dtype``, normalised
    with ``mean``/``std``; ``y`` is ``(B,)`` int64. The last batch is smaller
    unless ``drop_last``; one smaller than ``min_batch`` is dropped.

    Args:
        dataset: images ``(N, C, H, W)`` uint8 and labels ``(N,)``.
        batch_size: samples per batch.
        shuffle: a fresh random order every epoch (else dataset order).
        augment: random crop (4-pixel zero padding) and horizontal flip.
        seed: the seed from which every epoch's randomness derives.
        drop_last: drop a final batch smaller than ``batch_size``.
        min_batch: drop a final batch smaller than this (default 1: keep it). Training
            a model whose layers need batch statistics over at least 2 images (ODConv's
            attention BatchNorm) passes 2, so that N % batch_size == 1 does not end
            every epoch with an error.
        prefetch: prepare the next batch in a background thread.
        dtype: float dtype of ``x``.
        mean, std: normalisation statistics (default: CIFAR-100's).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool = True,
        augment: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        prefetch: bool = True,
        dtype: DTypeLike = np.float32,
        *,
        min_batch: int = 1,
        mean: tuple[float, ...] = CIFAR100_MEAN,
        std: tuple[float, ...] = CIFAR100_STD,
    ) -> None:
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(min_batch, int | np.integer) or not 1 <= min_batch <= batch_size:
            raise ValueError(f"min_batch must be an integer in 1..batch_size ({batch_size}), got {min_batch!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.drop_last = drop_last
        self.min_batch = int(min_batch)
        self.prefetch = prefetch
        self.dtype = np.dtype(dtype)
        self.mean = mean
        self.std = std
        self.epoch = 0

    def __len__(self) -> int:
        """Number of batches per epoch."""
        n, b = len(self.dataset), self.batch_size
        keep_last = not self.drop_last and n % b >= self.min_batch
        return n // b + int(keep_last)

    @property
    def dropped_last(self) -> int:
        """How many images of each epoch a dropped final batch leaves out (0 if none is dropped)."""
        return len(self.dataset) - min(len(self) * self.batch_size, len(self.dataset))

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration produce epoch ``epoch``'s batches."""
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self.epoch = int(epoch)

    def epoch_rng(self, epoch: int) -> np.random.Generator:
        """The generator behind epoch ``epoch``: a function of ``(seed, epoch)`` only."""
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(epoch,)))

    def __iter__(self) -> Iterator[Batch]:
        """Yield this epoch's batches and move on to the next epoch."""
        epoch = self.epoch
        self.epoch += 1
        batches = self._batches(epoch)
        return _prefetched(batches) if self.prefetch else batches

    def _batches(self, epoch: int) -> Generator[Batch, None, None]:
        rng = self.epoch_rng(epoch)
        n = len(self.dataset)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            images = self.dataset.images[idx]
            if self.augment:
                images = random_crop_flip(images, rng)
            x = normalize(images, self.mean, self.std, self.dtype)
            yield x, self.dataset.labels[idx].astype(np.int64)


def _prefetched(batches: Generator[Batch, None, None], depth: int = 2) -> Generator[Batch, None, None]:
    """Run ``batches`` in a worker thread, at most ``depth`` batches ahead.

    The worker hands over ``("batch", b)``, ``("error", exc)`` or
    ``("done", None)``. On exit, for whatever reason, the consumer sets
    ``stop``, empties the queue so that a blocked worker wakes, and joins it.
    """
    q: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, object]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for batch in batches:
                if not put(("batch", batch)):
                    return
            put(("done", None))
        except BaseException as e:  # handed to the consumer, re-raised there
            put(("error", e))
        finally:
            batches.close()

    worker = threading.Thread(target=work, name="minicoconv-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "done":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        while True:
            try:
                q.get_nowait()
            except queue.Empty:
                break
        worker.join()
