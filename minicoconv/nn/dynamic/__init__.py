"""Dynamic convolutions: CondConv, DY-CNN, CoConv, ODConv, DGC, and their fused inference forms."""

from .coconv import CoConv2d, CoConvRouting
from .condconv import CondConv2d
from .dgc import DGConv2d, SparseDGConv2d, dgc_lasso, dgc_pruned_channels, set_dgc_progress
from .dycnn import DyConv2d, anneal_temperature
from .fused import MEMORY_BUDGET_BYTES, FusedCoConv2d, fuse
from .odconv import FusedODConv2d, ODConv2d, odconv_temperature, set_odconv_temperature

__all__ = ["MEMORY_BUDGET_BYTES", "CoConv2d", "CoConvRouting", "CondConv2d", "DGConv2d", "DyConv2d",
           "FusedCoConv2d", "FusedODConv2d", "ODConv2d", "SparseDGConv2d", "anneal_temperature", "dgc_lasso",
           "dgc_pruned_channels", "fuse", "odconv_temperature", "set_dgc_progress", "set_odconv_temperature"]
