"""The global random generator behind randn, parameter init and dropout.

`manual_seed(seed)` makes every random draw reproducible; `get_rng_state` and
`set_rng_state` save and restore it (checkpoints use them to resume exactly).
"""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng(0)


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
