"""Every rank walks the same seeded epoch and takes its contiguous shard of each global batch.

Rank r of K holds samples [lo_r, hi_r) of a batch of n, lo_r = floor(r n / K): the shards
differ in size by at most one and, concatenated in rank order, are the batch. Each rank
draws the shuffle order and the augmentation (crop offsets and flips) for the whole global
batch, exactly as `BatchLoader` does in one process, and then gathers, crops and normalises
only its own images; so the K shards of a step are the rows of one process's batch, bit for bit.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from ..data import BatchLoader, Dataset
from ..data.transforms import apply_crop_flip, crop_flip_params, normalize


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """[lo, hi) of rank `rank` of `size` in a batch of n: lo = floor(rank n / size)."""
    if not 0 <= rank < size:
        raise ValueError(f"shard_bounds: rank {rank} is not in 0..{size - 1}")
    return rank * n // size, (rank + 1) * n // size


class ShardedBatchLoader(BatchLoader):
    """A `BatchLoader` over the global batches that yields rank `rank`'s shard of each.

    len(), set_epoch() and the seed are the global loader's: steps per epoch do not
    depend on the number of ranks. `batch_bounds(i)` gives (lo, hi, n) of batch i.
    """

    def __init__(self, dataset: Dataset, batch_size: int, rank: int, size: int, **kwargs):
        super().__init__(dataset, batch_size, **kwargs)
        shard_bounds(0, rank, size)  # validates rank
        self.rank, self.size = rank, size

    def batch_bounds(self, i: int) -> tuple[int, int, int]:
        """(lo, hi, n): this rank holds rows lo..hi of global batch i, which has n samples."""
        n = min(self.batch_size, len(self.dataset) - i * self.batch_size)
        return (*shard_bounds(n, self.rank, self.size), n)

    def _batches(self, epoch: int) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
        rng = self.epoch_rng(epoch)
        n = len(self.dataset)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            lo, hi = shard_bounds(len(idx), self.rank, self.size)
            images = self.dataset.images[idx[lo:hi]]
            if self.augment:  # drawn for the whole batch, so every rank's generator stays in step
                dy, dx, flips = crop_flip_params(rng, len(idx))
                images = apply_crop_flip(images, dy[lo:hi], dx[lo:hi], flips[lo:hi])
            x = normalize(images, self.mean, self.std, self.dtype)
            yield x, self.dataset.labels[idx[lo:hi]].astype(np.int64)


def shard_dataset(dataset: Dataset, rank: int, size: int) -> Dataset:
    """Rank `rank`'s contiguous part of `dataset` (for evaluation, which needs no shared batches)."""
    lo, hi = shard_bounds(len(dataset), rank, size)
    return dataset.take(np.arange(lo, hi), name=f"{dataset.name}[rank {rank}/{size}]")


def check_shards(loader: ShardedBatchLoader, steps: int) -> None:
    """ValueError unless each of the first `steps` batches gives every rank at least one sample."""
    for i in (0, steps - 1):
        lo, hi, n = loader.batch_bounds(i)
        if n < loader.size:
            which = "a batch" if i == 0 else f"batch {i + 1} (the last of an epoch)"
            raise ValueError(f"{which} has {n} images, fewer than the {loader.size} ranks: every rank needs at "
                             "least one; choose a larger --batch-size, or a --train-subset / --max-steps that "
                             "avoids a last batch this small")
