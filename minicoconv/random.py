"""The global random generator behind randn, parameter init and dropout.

`manual_seed(seed)` makes every random draw reproducible; `get_rng_state` and
`set_rng_state` save and restore it (checkpoints use them to resume exactly).

Data-parallel training (`minicoconv.distributed`) splits each global batch of n
samples into per-process shards [lo, hi). Inside `batch_shard(lo, hi, n)`,
`batch_random(shape)` returns rows lo..hi of the draw that one process holding the
whole batch would make, and leaves the generator where that process would leave
it: PCG64 spends one 64-bit output per float64, so skipping k values is
`bit_generator.advance(k)`. Dropout masks, and the generator state saved in a
checkpoint, are then the same for any number of processes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np

_generator = np.random.default_rng(0)
_shard: tuple[int, int, int] | None = None  # (lo, hi, n): this process holds rows lo..hi of a batch of n


def manual_seed(seed: int) -> np.random.Generator:
    """Re-seed the global generator (PCG64) and return it."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def default_generator() -> np.random.Generator:
    """The global generator (use it, don't keep it: manual_seed replaces it)."""
    return _generator


def get_rng_state() -> dict:
    """The generator state as a JSON-serialisable dict."""
    return _generator.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state returned by `get_rng_state`."""
    _generator.bit_generator.state = state


@contextlib.contextmanager
def batch_shard(lo: int, hi: int, n: int) -> Iterator[None]:
    """Within this block, `batch_random` draws rows lo..hi of a global batch of n rows."""
    global _shard
    if not 0 <= lo <= hi <= n:
        raise ValueError(f"batch_shard: need 0 <= lo <= hi <= n, got lo={lo}, hi={hi}, n={n}")
    previous, _shard = _shard, (int(lo), int(hi), int(n))
    try:
        yield
    finally:
        _shard = previous


def batch_random(shape: tuple[int, ...]) -> np.ndarray:
    """Uniform [0, 1) float64 of `shape`, whose axis 0 is the batch (dropout masks draw from here).

    Outside `batch_shard`, the same as `default_generator().random(shape)`. Inside it, with
    r = prod(shape[1:]) values per row: skip lo*r values, draw (hi - lo) rows, skip (n - hi)*r
    values, so the result is rows lo..hi of the whole batch's draw.
    """
    if _shard is None:
        return _generator.random(shape)
    lo, hi, n = _shard
    if not shape or shape[0] != hi - lo:
        raise RuntimeError(f"batch_random: shape {shape} inside batch_shard({lo}, {hi}, {n}): axis 0 must be this "
                           f"process's {hi - lo} samples")
    row = math.prod(shape[1:])
    bits = _generator.bit_generator
    if not hasattr(bits, "advance"):
        raise RuntimeError(f"batch_random: {type(bits).__name__} cannot skip ahead; use manual_seed (PCG64)")
    bits.advance(lo * row)
    out = _generator.random(shape)
    bits.advance((n - hi) * row)
    return out
