"""The reference backend: the textbook form of every backend primitive in plain NumPy."""

from .backend import ReferenceBackend

__all__ = ["ReferenceBackend"]
