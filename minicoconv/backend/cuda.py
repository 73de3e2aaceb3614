"""Placeholder entry point of the numba.cuda backend (issue 6)."""

from __future__ import annotations


def load_cuda_backend():
    """Return the CUDA backend, or raise a clear error explaining why not."""
    raise RuntimeError(
        "device 'cuda' is not available: this version of minicoconv has only the "
        "'cpu' backend"
    )
