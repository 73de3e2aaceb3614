"""Whether operations record a graph: `no_grad()` and `enable_grad()`.

The flag is thread-local, so a data-loading thread never changes what the
training thread records.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_state = threading.local()


def is_grad_enabled() -> bool:
    """True unless inside a `no_grad()` block on this thread."""
    return getattr(_state, "enabled", True)


@contextmanager
def _grad_mode(enabled: bool) -> Iterator[None]:
    previous = is_grad_enabled()
    _state.enabled = enabled
    try:
        yield
    finally:
        _state.enabled = previous


def no_grad():
    """Context manager: operations inside record no graph (inference, updates)."""
    return _grad_mode(False)


def enable_grad():
    """Context manager: re-enable graph recording inside a `no_grad()` block."""
    return _grad_mode(True)
