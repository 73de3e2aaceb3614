"""Refuse runs that cannot fit in this machine's memory, before allocating much.

    check_memory(cfg)     # ResourceError naming the option and the estimate, or nothing

Two options scale memory without bound: the synthetic data set's size
(3,072 bytes an image, held in memory as uint8) and the number of experts
(every dynamic convolution holds one kernel per expert, and a layer that runs its
experts stacked makes n times the activations). Both parts of a model's memory are
linear in the number of experts n and the batch B, so they are measured at
n = 1 and 2 on a batch of 2 and extrapolated:

    memory(n, B) = weights(n) * COPIES + B / 2 * (step(n) - weights(n))

where weights(n) is the parameters' bytes, COPIES the weights, their gradients,
SGD's momentum and the checkpoint copy, and step(n) the peak of one forward and
backward pass on 2 images as NumPy's allocations show it (the gradients, which
do not grow with the batch, and the activations, which do). The
measurement costs two small builds and steps, so it runs only beyond
ESTIMATE_EXPERTS_ABOVE experts; a run refused by it could never have finished.
"""

from __future__ import annotations

import os
import tracemalloc
from dataclasses import replace

import numpy as np

#: bytes a synthetic image costs in memory: (3, 32, 32) uint8 and an int64 label
BYTES_PER_IMAGE = 3 * 32 * 32 + 8
#: resident copies of the weights (weights, gradients, momentum, checkpoint copy)
PARAMETER_COPIES = 4
#: up to this many experts the models are small: no measurement
ESTIMATE_EXPERTS_ABOVE = 8


class ResourceError(Exception):
    """The run would need more memory than this machine has; the message gives the estimate."""


def physical_memory() -> int | None:
    """Bytes of physical memory, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(cfg, available: int | None = None) -> None:
    """ResourceError if `cfg`'s data or model alone would exceed `available` bytes (default: physical memory)."""
    available = physical_memory() if available is None else available
    if available is None:
        return
    if cfg.synthetic:
        need = (cfg.synthetic_train + cfg.synthetic_test) * BYTES_PER_IMAGE
        if need > available:
            raise ResourceError(f"--synthetic-train {cfg.synthetic_train} --synthetic-test {cfg.synthetic_test}: "
                                f"the images alone need {_gb(need)}, more than this machine's {_gb(available)} "
                                "of memory")
    if cfg.conv != "static" and cfg.experts > ESTIMATE_EXPERTS_ABOVE:
        params, need = estimate_training_memory(cfg)
        if need > available:
            raise ResourceError(f"--experts {cfg.experts}: {cfg.model} with {cfg.conv} would have about "
                                f"{params / 1e6:,.0f}M parameters and need about {_gb(need)} to train at "
                                f"--batch-size {cfg.batch_size}, more than this machine's {_gb(available)} of "
                                "memory; use fewer experts")


def estimate_training_memory(cfg) -> tuple[int, int]:
    """(parameters, bytes) of training cfg's model at cfg.experts and cfg.batch_size, extrapolated from 1 and 2."""
    from .. import random as mc_random

    state = mc_random.get_rng_state()  # building draws init weights: leave the run's generator alone
    try:
        (p1, s1), (p2, s2) = (_measure(replace(cfg, experts=n, device="cpu")) for n in (1, 2))
    finally:
        mc_random.set_rng_state(state)
    n = cfg.experts
    params = p1 + (n - 1) * (p2 - p1)
    activations = (s1 - 4 * p1) + (n - 1) * max((s2 - 4 * p2) - (s1 - 4 * p1), 0)  # of 2 images
    return params, params * 4 * PARAMETER_COPIES + cfg.batch_size * max(activations, 0) // 2


def _measure(cfg) -> tuple[int, int]:
    """(parameter count, peak bytes NumPy allocates in one forward and backward pass on 2 images)."""
    from ..nn import functional as F
    from ..tensor import Tensor
    from .prepare import build_model

    model = build_model(cfg)
    params = sum(p.numpy().size for p in model.parameters())
    x = Tensor(np.zeros((2, 3, 32, 32), np.float32))
    tracemalloc.start()
    try:
        F.cross_entropy(model(x), np.zeros(2, np.int64)).backward()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return params, peak


def _gb(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"
