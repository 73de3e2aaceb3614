"""Data: CIFAR-100 reading and download, a synthetic stand-in, augmentation, batching.

Images are stored as ``(N, 3, 32, 32)`` uint8 in a :class:`Dataset`; a
:class:`BatchLoader` turns them into normalised float batches.
"""

from minicoconv.data.cifar import ARCHIVE_NAME, find_cifar100, load_cifar100
from minicoconv.data.dataset import Dataset, DatasetError
from minicoconv.data.download import DEFAULT_URL, OFFICIAL_MD5, DownloadError, download_cifar100
from minicoconv.data.loader import BatchLoader
from minicoconv.data.synthetic import synthetic_cifar100
from minicoconv.data.transforms import CIFAR100_MEAN, CIFAR100_STD, normalize, random_crop_flip

__all__ = [
    "ARCHIVE_NAME",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DEFAULT_URL",
    "OFFICIAL_MD5",
    "BatchLoader",
    "Dataset",
    "DatasetError",
    "DownloadError",
    "download_cifar100",
    "find_cifar100",
    "load_cifar100",
    "normalize",
    "random_crop_flip",
    "synthetic_cifar100",
]
