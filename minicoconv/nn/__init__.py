"""Neural-network layers and functional ops, PyTorch-shaped."""

from . import functional

__all__ = ["functional"]
