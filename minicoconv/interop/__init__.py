"""minicoconv's networks in PyTorch and back.

    to_torch(model) -> torch.nn.Module       from_torch(module) -> minicoconv model
    torch_state(model) -> {PyTorch key: array}   (no PyTorch needed: `minicoconv export` uses it)

The PyTorch side (torch_layers.py, torch_beyond.py, torch_models.py) is also the bench's
reference; it is imported only when asked for.
"""

from .convert import from_torch, to_torch
from .describe import Architecture, InteropError, describe
from .weights import minicoconv_state, torch_state

__all__ = ["Architecture", "InteropError", "describe", "from_torch", "minicoconv_state", "to_torch", "torch_state"]
