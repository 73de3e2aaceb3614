"""The CPU backend (NumPy + Numba)."""

from .backend import CPUBackend

__all__ = ["CPUBackend"]
