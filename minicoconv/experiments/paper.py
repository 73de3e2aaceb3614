"""The CoConv paper's CIFAR-100 top-1 (%), the figures a full run is held against.

Table 1 (n = 4 experts, docs/models-and-recipe.md); Table 5 (CoConv's attention on the input or
output channels of the experts, n = 2 and 4); Table 6 (single- or multi-scale routing, n = 4).
"""

from __future__ import annotations

from typing import Any

#: Table 1: conv type -> backbone -> top-1
TABLE1 = {
    "static": {"alexnet": 58.63, "resnet18": 71.87, "mobilenetv2": 69.10},
    "condconv": {"alexnet": 58.49, "resnet18": 72.90, "mobilenetv2": 70.37},
    "dycnn": {"alexnet": 58.42, "resnet18": 73.08, "mobilenetv2": 69.32},
    "coconv": {"alexnet": 58.98, "resnet18": 73.48, "mobilenetv2": 70.89},
}
#: Table 5: (backbone, attention, experts) -> top-1
TABLE5 = {
    ("alexnet", "input", 2): 59.93, ("alexnet", "input", 4): 60.00,
    ("alexnet", "output", 2): 59.46, ("alexnet", "output", 4): 58.98,
    ("resnet18", "input", 2): 72.52, ("resnet18", "input", 4): 73.29,
    ("resnet18", "output", 2): 73.12, ("resnet18", "output", 4): 73.48,
    ("mobilenetv2", "input", 2): 69.85, ("mobilenetv2", "input", 4): 69.61,
    ("mobilenetv2", "output", 2): 70.76, ("mobilenetv2", "output", 4): 70.89,
}
#: Table 6: backbone -> single-scale CoConv top-1 (n = 4; multi-scale is Table 1's)
TABLE6_SINGLE = {"alexnet": 59.38, "resnet18": 72.27, "mobilenetv2": 70.06}
#: options the paper keeps at their defaults in all three tables
PAPER_DEFAULTS = {"activation": None, "expert_bn": True, "reduction": None, "anneal": False,
                  "num_classes": 100}


def paper_top1(model: str, conv: str, options: dict[str, Any]) -> float | None:
    """The paper's figure for this cell (`options`: its TrainConfig fields), or None if it has none."""
    if any(options.get(k, v) != v for k, v in PAPER_DEFAULTS.items()):
        return None
    if conv == "static":
        return TABLE1["static"].get(model)
    experts, attention = options.get("experts", 4), options.get("attention") or "output"
    multiscale = options.get("multiscale", True)
    if conv == "coconv" and not multiscale:
        return TABLE6_SINGLE.get(model) if experts == 4 and attention == "output" else None
    if conv == "coconv":
        return TABLE5.get((model, attention, experts))
    return TABLE1.get(conv, {}).get(model) if experts == 4 else None
