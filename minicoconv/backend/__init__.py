"""Backends: where arrays live and how array math is done.

`get_backend(device)` maps a device string to its backend object. It is called
when a tensor is created or moved; ops then use the backend stored on the
tensor, so there is no string dispatch in the hot path.
"""

from __future__ import annotations

from .base import Backend

_BACKENDS: dict[str, Backend] = {}


def get_backend(device: str) -> Backend:
    """Return the backend for `device` ("cpu", "reference", or "cuda" when available)."""
    if isinstance(device, Backend):
        return device
    backend = _BACKENDS.get(device)
    if backend is not None:
        return backend
    if device == "cpu":
        from .cpu import CPUBackend

        backend = CPUBackend()
    elif device == "cuda":
        from .cuda import load_cuda_backend

        backend = load_cuda_backend()
    elif device == "reference":
        from .reference import ReferenceBackend

        backend = ReferenceBackend()
    else:
        raise ValueError(f"unknown device {device!r}: expected 'cpu', 'cuda' or 'reference'")
    _BACKENDS[device] = backend
    return backend


__all__ = ["Backend", "get_backend"]
