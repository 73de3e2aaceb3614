"""Dynamic convolutions: CondConv, DY-CNN, CoConv, ODConv, DGC, their fused inference forms, and the
conv-type registry (the built-in types are registered at the bottom of this file)."""

from ..layers.conv import Conv2d
from .coconv import CoConv2d, CoConvRouting
from .condconv import CondConv2d
from .dgc import DGConv2d, SparseDGConv2d, build_dgc, dgc_lasso, dgc_pruned_channels, set_dgc_progress
from .dycnn import DyConv2d, anneal_temperature
from .fused import MEMORY_BUDGET_BYTES, FusedCoConv2d, fuse
from .hooks import TrainingProgress, extra_loss, training_progress
from .odconv import FusedODConv2d, ODConv2d, odconv_temperature, set_odconv_temperature
from .registry import ConvType, conv_types, get_conv_type, load_plugin, register_conv_type


def _static_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 groups: int = 1) -> Conv2d:
    return Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)


# The built-in conv types, in the order tables and `--help` list them. A new one is one layer file
# plus one line here (or a register_conv_type call in your own file: docs/extending.md).
register_conv_type("static", _static_conv, experts=False, description="plain convolution")
register_conv_type("condconv", CondConv2d, options=("bias",), description="CondConv (Yang et al. 2019)")
register_conv_type("dycnn", DyConv2d, options=("bias", "reduction", "temperature", "anneal"),
                   description="DY-CNN (Chen et al. 2020)")
register_conv_type("coconv", CoConv2d, options=("bias", "activation", "attention", "multiscale", "expert_bn",
                                               "reduction"),
                   description="CoConv (Nguyen et al. 2021)")
register_conv_type("odconv", ODConv2d, options=("reduction", "temperature", "anneal"),
                   description="ODConv (Li et al. 2022)")
register_conv_type("dgc", build_dgc, options=("heads", "keep"), experts=False, replaces_shortcuts=True,
                   description="DGC (Su et al. 2020)")

__all__ = ["MEMORY_BUDGET_BYTES", "CoConv2d", "CoConvRouting", "CondConv2d", "ConvType", "DGConv2d", "DyConv2d",
           "FusedCoConv2d", "FusedODConv2d", "ODConv2d", "SparseDGConv2d", "TrainingProgress", "anneal_temperature",
           "conv_types", "dgc_lasso", "dgc_pruned_channels", "extra_loss", "fuse", "get_conv_type", "load_plugin",
           "odconv_temperature", "register_conv_type", "set_dgc_progress", "set_odconv_temperature",
           "training_progress"]
