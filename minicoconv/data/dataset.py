"""An in-memory image-classification dataset.

Images are kept as ``uint8`` — a CIFAR-100 training set is 150 MB that way and
four times as much as float32 — and are turned into floats one batch at a time
(see :mod:`minicoconv.data.transforms` and :mod:`minicoconv.data.loader`).

Shapes::

    images : (N, C, H, W) uint8     # CIFAR: (N, 3, 32, 32), RGB, channel-major
    labels : (N,)         int64     # each in 0 .. len(classes) - 1
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DatasetError(ValueError):
    """A dataset file or array is missing, corrupt or of the wrong shape.

    The message names the file (or array) and the problem.
    """


@dataclass(eq=False)
class Dataset:
    """Images, their labels and the class names, plus where they came from.

    Attributes:
        images: ``(N, C, H, W)`` uint8 pixels.
        labels: ``(N,)`` int64 class indices into ``classes``.
        classes: class names; ``labels[i]`` names ``classes[labels[i]]``.
        name: a human-readable label such as ``"cifar100-train"``.
        synthetic: True for generated stand-in data, so that reports can
            never pass it off as the real thing.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str
    synthetic: bool = False

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise DatasetError(
                f"{self.name}: images must be a uint8 array of shape (N, C, H, W), got {_describe(images)}"
            )
        if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.ndim != 1:
            raise DatasetError(f"{self.name}: labels must be an int64 array of shape (N,), got {_describe(labels)}")
        if len(labels) != len(images):
            raise DatasetError(f"{self.name}: {len(images)} images but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise DatasetError(
                f"{self.name}: labels must lie in 0..{len(self.classes) - 1}, got {labels.min()}..{labels.max()}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        kind = ", synthetic" if self.synthetic else ""
        return f"Dataset({self.name!r}, images={self.images.shape}, classes={len(self.classes)}{kind})"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def take(self, indices: np.ndarray, name: str | None = None) -> Dataset:
        """The samples at ``indices`` (a copy), in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        return Dataset(
            images=self.images[indices],
            labels=self.labels[indices],
            classes=list(self.classes),
            name=self.name if name is None else name,
            synthetic=self.synthetic,
        )

    def subset(self, n: int) -> Dataset:
        """The first ``n`` samples (a copy): a quick, deterministic small run."""
        if not 0 <= n <= len(self):
            raise ValueError(f"subset size must be in 0..{len(self)}, got {n}")
        return self.take(np.arange(n), name=f"{self.name}[:{n}]")

    def split(self, n_holdout: int, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Split off ``n_holdout`` random samples, e.g. as a validation set.

        Returns ``(rest, holdout)``. Which samples go where depends only on
        ``seed`` and ``len(self)``; each part keeps the original order.
        """
        if not 0 <= n_holdout <= len(self):
            raise ValueError(f"holdout size must be in 0..{len(self)}, got {n_holdout}")
        order = np.random.default_rng(seed).permutation(len(self))
        holdout = np.sort(order[:n_holdout])
        rest = np.sort(order[n_holdout:])
        tag = f"seed={seed}"
        return (
            self.take(rest, name=f"{self.name}[rest {len(rest)}, {tag}]"),
            self.take(holdout, name=f"{self.name}[holdout {n_holdout}, {tag}]"),
        )


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} array of shape {a.shape}"
    return type(a).__name__
