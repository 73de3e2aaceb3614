"""Refuse runs that cannot fit in this machine's memory, before allocating anything.

    check_memory(cfg)     # ResourceError naming the option and the estimate, or nothing

Two options scale memory without bound: the synthetic data set's size
(3,072 bytes an image, held in memory as uint8) and the number of experts
(every dynamic convolution holds one kernel per expert). The model's size at n
experts is exactly linear in n (expert kernels, per-expert BatchNorms and the
routing heads' last layer all grow by the same amount per expert), so two small
builds, at 1 and 2 experts, give it for any n. Training holds each parameter
about four times: the weights, their gradients, SGD's momentum and the copy a
checkpoint is written from. Activations come on top and are not estimated, so
the check refuses only what certainly cannot fit.
"""

from __future__ import annotations

import os

#: bytes a synthetic image costs in memory: (3, 32, 32) uint8 and an int64 label
BYTES_PER_IMAGE = 3 * 32 * 32 + 8
#: copies of each parameter while training (weights, gradients, momentum, checkpoint copy)
PARAMETER_COPIES = 4
#: below this many experts the models are small enough not to need the estimate (two builds)
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
        params = estimate_parameters(cfg)
        need = params * 4 * PARAMETER_COPIES  # float32
        if need > available:
            raise ResourceError(f"--experts {cfg.experts}: {cfg.model} with {cfg.conv} would have about "
                                f"{params / 1e6:,.0f}M parameters, {_gb(need)} for weights, gradients and "
                                f"momentum, more than this machine's {_gb(available)} of memory")


def estimate_parameters(cfg) -> int:
    """Parameter count of cfg's model at cfg.experts, from builds at 1 and 2 experts (exactly linear)."""
    from dataclasses import replace

    from .. import random as mc_random
    from .prepare import build_model

    state = mc_random.get_rng_state()  # building draws init weights: leave the run's generator alone
    try:
        one, two = (sum(p.numpy().size for p in build_model(replace(cfg, experts=n, device="cpu")).parameters())
                    for n in (1, 2))
    finally:
        mc_random.set_rng_state(state)
    return one + (cfg.experts - 1) * (two - one)


def _gb(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"
