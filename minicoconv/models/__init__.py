"""CIFAR variants of AlexNet, ResNet18 and MobileNetV2 (and SmallCNN, for demos), each buildable with any conv type."""

from __future__ import annotations

from ..nn.dynamic import conv_types
from ..nn.module import Module
from .alexnet import AlexNet, alexnet
from .factory import conv_factory, reference_init
from .mobilenetv2 import MobileNetV2, mobilenetv2
from .resnet import ResNet18, resnet18
from .smallcnn import SmallCNN, smallcnn

MODELS = {"alexnet": alexnet, "resnet18": resnet18, "mobilenetv2": mobilenetv2, "smallcnn": smallcnn}


def build(name: str, conv: str = "static", experts: int = 4, num_classes: int = 100, **conv_options) -> Module:
    """models.build("resnet18", conv="coconv", experts=4) -> an initialised model."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODELS)}")
    return MODELS[name](conv=conv, experts=experts, num_classes=num_classes, **conv_options)


__all__ = ["MODELS", "AlexNet", "MobileNetV2", "ResNet18", "SmallCNN", "alexnet", "build", "conv_factory",
           "conv_types", "mobilenetv2", "reference_init", "resnet18", "smallcnn"]
