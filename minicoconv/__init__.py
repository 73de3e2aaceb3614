"""minicoconv: a minimal deep-learning engine for dynamic convolutions."""

__version__ = "0.1.0"
