"""Neural-network layers and functional ops, PyTorch-shaped."""

from . import functional, init
from .dynamic import (
                      CoConv2d,
                      CondConv2d,
                      DGConv2d,
                      DyConv2d,
                      ODConv2d,
                      TrainingProgress,
                      anneal_temperature,
                      conv_types,
                      extra_loss,
                      fuse,
                      get_conv_type,
                      load_plugin,
                      register_conv_type,
                      training_progress,
)
from .layers import (
                     AdaptiveAvgPool2d,
                     AvgPool2d,
                     BatchNorm2d,
                     Conv2d,
                     Dropout,
                     Flatten,
                     Identity,
                     Linear,
                     MaxPool2d,
                     ModuleList,
                     ReLU,
                     Sequential,
                     Sigmoid,
)
from .module import Module, Parameter

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm2d", "CoConv2d", "CondConv2d", "Conv2d", "DGConv2d",
           "Dropout", "DyConv2d", "Flatten", "Identity", "Linear", "MaxPool2d", "Module", "ModuleList", "ODConv2d",
           "Parameter", "ReLU", "Sequential", "Sigmoid", "TrainingProgress", "anneal_temperature", "conv_types",
           "extra_loss", "functional", "fuse", "get_conv_type", "init", "load_plugin", "register_conv_type",
           "training_progress"]
