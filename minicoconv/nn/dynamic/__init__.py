"""Dynamic convolutions: CondConv, DY-CNN, CoConv, and their fused inference forms."""

from .coconv import CoConv2d, CoConvRouting
from .condconv import CondConv2d
from .dycnn import DyConv2d, anneal_temperature
from .fused import MEMORY_BUDGET_BYTES, FusedCoConv2d, fuse

__all__ = ["MEMORY_BUDGET_BYTES", "CoConv2d", "CoConvRouting", "CondConv2d", "DyConv2d", "FusedCoConv2d",
           "anneal_temperature", "fuse"]
