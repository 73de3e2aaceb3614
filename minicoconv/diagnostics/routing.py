"""What the routing of each dynamic layer does on a set of images: numbers a student can look at.

For every dynamic layer (CondConv, DY-CNN, CoConv, ODConv) and every image b, the layer's
routing gives gates g_b of shape (n, m): one weight per expert i and per output channel
(m = C' for CoConv's per-channel attention, m = 1 for the others). From them:

    usage_i      = mean over images and channels of g_bi / sum_j g_bj      (sums to 1 over i)
    entropy      = mean over images and channels of  -sum_i p_bi log p_bi / log n,
                   p_bi = g_bi / sum_j g_bj            (0: one expert does everything, 1: uniform)
    saturated    = share of gates below 0.01 or above 0.99 (sigmoid gates; for a softmax,
                   the share of (image, channel) pairs whose largest weight is above 0.99)
    per_class    = usage_i averaged over the images of each class     (classes x n)
    mean_gate_i  = mean of the raw gate g_bi (sigmoid gates need not sum to 1)

A layer is routed when it has `experts` and `routing_weights(x)` (docs/extending.md): the gates
are `routing_gates(x)` if the layer defines it (ODConv: its kernel attention alone), else
`routing_weights(x)`, (N, n) or (N, n, m), normalised as the layer's `routing_activation` says
("softmax" unless it says "sigmoid"). DGC has no expert routing (its gates prune input channels).
The gates are recomputed from each layer's input, caught by a forward hook, in eval mode and
without gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..autograd import no_grad
from ..tensor import Tensor

SATURATION = 0.01


@dataclass
class LayerRouting:
    """The gates one dynamic layer gave a set of images, and the statistics of them."""

    name: str
    kind: str                      # class name: CoConv2d, CondConv2d, DyConv2d, ODConv2d, ...
    activation: str                # "sigmoid" or "softmax"
    experts: int
    gates: list = field(default_factory=list, repr=False)   # one (batch, n, m) array per batch

    def all_gates(self) -> np.ndarray:
        return np.concatenate(self.gates, axis=0) if self.gates else np.zeros((0, self.experts, 1))

    def statistics(self, labels: np.ndarray | None = None, num_classes: int | None = None) -> dict:
        g = self.all_gates().astype(np.float64)                        # (N, n, m)
        total = g.sum(axis=1, keepdims=True)
        p = g / np.where(total > 0, total, 1.0)                        # share of each expert
        n = self.experts
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(p > 0, p * np.log(p), 0.0)
        entropy = float(-plogp.sum(axis=1).mean() / math.log(n)) if n > 1 and g.size else 0.0
        if self.activation == "sigmoid":
            saturated = float(np.mean((g < SATURATION) | (g > 1 - SATURATION))) if g.size else 0.0
        else:
            saturated = float(np.mean(p.max(axis=1) > 1 - SATURATION)) if g.size else 0.0
        out = {"name": self.name, "kind": self.kind, "activation": self.activation, "experts": n,
               "images": int(g.shape[0]), "channels": int(g.shape[2]),
               "usage": p.mean(axis=(0, 2)).tolist(), "mean_gate": g.mean(axis=(0, 2)).tolist(),
               "entropy": entropy, "saturated": saturated}
        if labels is not None and g.size:
            classes = int(num_classes or (labels.max() + 1))
            per_image = p.mean(axis=2)                                 # (N, n)
            counts = np.bincount(labels, minlength=classes)[:, None]
            sums = np.zeros((classes, n))
            np.add.at(sums, labels, per_image)
            out["per_class"] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).tolist()
        return out


def _gates(layer, x) -> tuple[np.ndarray, str]:
    """(gates (N, n, m) on the host, activation) of one dynamic layer for its input x."""
    gates = layer.routing_gates if hasattr(layer, "routing_gates") else layer.routing_weights
    r = gates(x).numpy()                                                # (N, n) or (N, n, m)
    return (r[:, :, None] if r.ndim == 2 else r), getattr(layer, "routing_activation", "softmax")


def is_routed(m) -> bool:
    """A layer with expert routing: it has `experts` and `routing_weights`."""
    return hasattr(m, "routing_weights") and isinstance(getattr(m, "experts", None), int)


def routed_layers(model) -> list[tuple[str, object]]:
    """(name, layer) of every dynamic layer with expert routing, in model order."""
    return [(name, m) for name, m in model.named_modules() if is_routed(m)]


def collect_routing(model, batches, device: str = "cpu", max_images: int | None = None
                    ) -> tuple[list[LayerRouting], np.ndarray]:
    """Run `model` in eval mode over `batches` of (images, labels); return each layer's gates and the labels.

    images (B, 3, H, W) NumPy, labels (B,) int. At most `max_images` images are used.
    """
    layers = routed_layers(model)
    records = [LayerRouting(name, type(m).__name__, "", m.experts) for name, m in layers]

    def hook_for(record):
        def hook(module, inputs, output):
            gates, record.activation = _gates(module, inputs[0])
            record.gates.append(gates)
        return hook

    removers = [m.register_forward_hook(hook_for(rec)) for (_, m), rec in zip(layers, records)]
    was_training = model.training
    model.eval()
    labels, seen = [], 0
    try:
        with no_grad():
            for x, y in batches:
                if max_images is not None and seen >= max_images:
                    break
                if max_images is not None:
                    x, y = x[: max_images - seen], y[: max_images - seen]
                model(Tensor(x, device=device))
                labels.append(np.asarray(y))
                seen += len(y)
    finally:
        for remove in removers:
            remove()
        model.train(was_training)
    return records, (np.concatenate(labels) if labels else np.zeros(0, np.int64))


def routing_summary(model, batches, device: str = "cpu", max_images: int | None = None,
                    num_classes: int | None = None) -> list[dict]:
    """The statistics of every routed layer (see the module docstring) as plain dicts."""
    records, labels = collect_routing(model, batches, device, max_images)
    return [r.statistics(labels, num_classes) for r in records]


def epoch_summary(model, images: np.ndarray, device: str = "cpu") -> dict:
    """Per layer, the routing entropy and saturation on a fixed set of images, plus temperatures:
    what the trainer logs each epoch (cheap: one forward of a few images)."""
    stats = routing_summary(model, [(images, np.zeros(len(images), np.int64))], device)
    out = {s["name"]: {"entropy": round(s["entropy"], 6), "saturated": round(s["saturated"], 6),
                       "usage": [round(u, 6) for u in s["usage"]]} for s in stats}
    for name, m in routed_layers(model):
        t = getattr(m, "temperature", None)
        if isinstance(t, int | float):
            out[name]["temperature"] = float(t)
    return out
