"""Backends: where arrays live and how array math is done.

`get_backend(device)` maps a device string to its backend object. It is called
when a tensor is created or moved; ops then use the backend stored on the
tensor, so there is no string dispatch in the hot path.
"""

from __future__ import annotations

from .base import Backend

_BACKENDS: dict[str, Backend] = {}


def get_backend(device: str) -> Backend:
    """Return the backend for `device` ("cpu", or "cuda" when available)."""
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
    else:
        raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")
    _BACKENDS[device] = backend
    return backend


__all__ = ["Backend", "get_backend"]
