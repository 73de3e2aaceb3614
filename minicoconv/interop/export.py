"""A checkpoint's weights as a PyTorch state_dict in a safetensors file (no pickle either way).

The keys are those of `to_torch(model).state_dict()` (interop/weights.py), so

    module = minicoconv.interop.torch_models.build(model, conv, experts, num_classes, **options)
    module.load_state_dict(safetensors.torch.load_file(path))

restores it; the file's metadata holds that architecture as JSON under "minicoconv"
(and the checkpoint's epoch). Written atomically (a temporary file, then a rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..train.atomic import atomic_write
from .describe import describe
from .weights import torch_state


def export_safetensors(model, path: str | os.PathLike[str], extra: dict | None = None) -> Path:
    """Write `model`'s weights under PyTorch's keys to `path` (safetensors); return the path."""
    try:
        from safetensors.numpy import save
    except ImportError as e:
        raise ImportError("exporting needs safetensors, an optional extra: pip install 'minicoconv[export]'") from e
    arch = describe(model)
    info = {"model": arch.model, "conv": arch.conv, "experts": arch.experts, "num_classes": arch.num_classes,
            "options": arch.options, **(extra or {})}
    tensors = {k: np.ascontiguousarray(v) for k, v in torch_state(model).items()}
    data = save(tensors, metadata={"format": "pt", "minicoconv": json.dumps(info)})
    path = Path(path)
    atomic_write(path, lambda f: f.write(data))
    return path
