"""The CPU backend (NumPy + Numba)."""

from .backend import CPUBackend
from .winograd import get_conv_algorithm, set_conv_algorithm

__all__ = ["CPUBackend", "get_conv_algorithm", "set_conv_algorithm"]
