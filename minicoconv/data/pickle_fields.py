"""Validate the fields of an unpickled CIFAR file before anything walks them.

The restricted unpickler stops code from running, not resource exhaustion. A
pickle may reference one object many times (its memo), so a 39 KB file can
hold ``[[list(range(10**4))] * 10**4] * 10**4``: three small lists that look
like 10**12 integers to anything that recurses into them (``np.asarray``,
``str``, ``==``). So every field is checked for its type first, then for its
length, and only then walked, and only one level deep: a label must be an
``int`` itself, never a container. Each check costs O(len) of a length that
was bounded before it started.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minicoconv.data.dataset import DatasetError

#: a CIFAR pickle's dict has 4-5 keys; anything far beyond is not one
MAX_KEYS = 64
#: longest class name accepted (CIFAR-100's longest is 13 characters)
MAX_NAME_CHARS = 256


def str_keys(obj: Any, where: str) -> dict[str, Any]:
    """The dict ``obj`` with its bytes/str keys decoded; DatasetError for anything else."""
    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    if len(obj) > MAX_KEYS:
        raise DatasetError(f"{where}: expected a dict of a few keys, got {len(obj)} keys")
    out = {}
    for key, value in obj.items():
        if not isinstance(key, bytes | str):
            raise DatasetError(f"{where}: dict keys must be strings, got a {type(key).__name__}")
        out[key.decode("latin-1") if isinstance(key, bytes) else key] = value
    return out


def int_labels(value: Any, where: str, name: str, count: int, num_classes: int) -> np.ndarray:
    """A flat list (or 1-d integer array) of exactly ``count`` ints in [0, num_classes) -> (count,) int64.

    The length is checked before any element is looked at, and each element must
    be an ``int`` (not a bool, float or container), so nothing nested is walked.
    """
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or not np.issubdtype(value.dtype, np.integer):
            raise DatasetError(f"{where}: {name} must be a flat list of integers, "
                               f"got a {value.dtype} array of shape {value.shape}")
        labels = value.astype(np.int64)
    elif isinstance(value, list | tuple):
        if len(value) != count:
            raise DatasetError(f"{where}: {count} images but {len(value)} {name}")
        bad = next((v for v in value if type(v) is not int), None)  # noqa: E721 (bool is not a label)
        if bad is not None:
            raise DatasetError(f"{where}: {name} must be a flat list of integers, found a {type(bad).__name__}")
        try:
            labels = np.array(value, dtype=np.int64)
        except OverflowError as e:
            raise DatasetError(f"{where}: {name} holds an integer out of range ({e})") from e
    else:
        raise DatasetError(f"{where}: {name} must be a list of integers, got {type(value).__name__}")
    if len(labels) != count:
        raise DatasetError(f"{where}: {count} images but {len(labels)} {name}")
    if count and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{where}: {name} must lie in 0..{num_classes - 1}, "
                           f"found {labels.min()}..{labels.max()}")
    return labels


def class_names(value: Any, where: str, count: int) -> list[str]:
    """A list of exactly ``count`` short byte/str names -> list of str (checked before it is walked)."""
    if not isinstance(value, list | tuple):
        raise DatasetError(f"{where}: fine_label_names must be a list of strings, got {type(value).__name__}")
    if len(value) != count:
        raise DatasetError(f"{where}: expected {count} fine_label_names, got {len(value)}")
    names = []
    for n in value:
        if not isinstance(n, bytes | str) or len(n) > MAX_NAME_CHARS:
            raise DatasetError(f"{where}: fine_label_names must be a list of strings "
                               f"(of at most {MAX_NAME_CHARS} characters)")
        names.append(n.decode("utf-8", errors="replace") if isinstance(n, bytes) else n)
    return names
