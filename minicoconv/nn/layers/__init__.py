"""The layers, one concern per file."""

from .activation import Dropout, Flatten, Identity, ReLU, Sigmoid
from .container import ModuleList, Sequential
from .conv import Conv2d
from .linear import Linear
from .norm import BatchNorm2d
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm2d", "Conv2d", "Dropout", "Flatten", "Identity",
           "Linear", "MaxPool2d", "ModuleList", "ReLU", "Sequential", "Sigmoid"]
