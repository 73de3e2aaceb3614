"""Helpers shared by the dynamic-convolution tests (tests/dynamic/).

- `layer_gradcheck`: finite-difference check of a layer w.r.t. its input AND every
  parameter, through the public `minicoconv.testing.gradcheck_module`.
- `make_layer`: one of the three dynamic layers from a small option dict.
- `exercise_bn`: random BN affine params and non-trivial running statistics.
- `expert_order`: the stacked-channel order of CoConv's expert BatchNorm, written
  from the layer's documented contract (coconv.py module docstring), not its code.
- `one_numba_thread`: a fixture (modules import it and opt in with
  ``pytestmark = pytest.mark.usefixtures("one_numba_thread")``). The gradient checks and
  small-shape tests run thousands of forwards on tensors of a few hundred elements, where
  waking Numba's thread pool costs far more than the work (on a loaded 2-core machine, up
  to ~20 ms per parallel kernel launch). The whole-model tests keep the default thread
  count, so the parallel kernels are still exercised. (It lives here, not in a
  tests/dynamic/conftest.py: that would shadow tests/conftest.py, which other test
  modules import as `conftest`.)
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

import minicoconv as mc
from minicoconv import nn
from minicoconv.autograd import no_grad
from minicoconv.backend.cpu import CPUBackend, per_sample_conv
from minicoconv.testing import gradcheck_module


@pytest.fixture
def one_numba_thread():
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


LAYERS = {"condconv": nn.CondConv2d, "dycnn": nn.DyConv2d, "coconv": nn.CoConv2d}


def make_layer(kind: str, cin: int, cout: int, k: int = 3, stride: int = 1, padding: int = 1, groups: int = 1,
               experts: int = 2, seed: int = 0, **options) -> nn.Module:
    mc.manual_seed(seed)
    return LAYERS[kind](cin, cout, k, stride, padding, groups=groups, experts=experts, **options)


def layer_gradcheck(layer: nn.Module, x: np.ndarray, **tolerances) -> None:
    """gradcheck of layer(x) w.r.t. x and every parameter, in float64 (layer must be .double()).

    The public `minicoconv.testing.gradcheck_module`; it also fails when backward never
    reaches a parameter (that parameter's check would pass vacuously, 0 == 0).
    """
    gradcheck_module(layer, mc.Tensor(np.asarray(x, dtype=np.float64), requires_grad=True), **tolerances)


def exercise_bn(layer: nn.Module, x_shape: tuple, steps: int = 3, seed: int = 0, dtype=np.float32) -> None:
    """Randomise every BN's affine params and run a few training-mode forwards (running stats move)."""
    rng = np.random.default_rng(seed)
    for m in layer.modules():
        if isinstance(m, nn.BatchNorm2d) and m.weight is not None:
            m.weight.data = rng.uniform(0.5, 1.5, m.weight.shape).astype(m.weight.dtype)
            m.bias.data = rng.normal(0.0, 0.5, m.bias.shape).astype(m.bias.dtype)
    layer.train()
    with no_grad():
        for _ in range(steps):
            layer(mc.Tensor(rng.normal(0.5, 1.5, x_shape).astype(dtype)))


def expert_order(experts: int, out_channels: int, groups: int) -> np.ndarray:
    """order[i, c'] = the stacked channel that holds expert i's output channel c'.

    Contract: with groups g the stacked channels are ordered (g, n, C'/g): stacked
    channel grp*(n*C'/g) + i*(C'/g) + j is expert i's output channel grp*(C'/g) + j.
    """
    per = out_channels // groups
    order = np.empty((experts, out_channels), dtype=np.int64)
    for i in range(experts):
        for c in range(out_channels):
            grp, j = divmod(c, per)
            order[i, c] = grp * experts * per + i * per + j
    return order


def count_per_sample_convs(monkeypatch) -> list:
    """Record the batch size of every per-sample convolution the CPU backend runs (one per chunk)."""
    calls, original = [], per_sample_conv.per_sample_conv2d_forward

    def counted(x, *args):
        calls.append(x.shape[0])
        return original(x, *args)

    monkeypatch.setattr(CPUBackend, "per_sample_conv2d_forward", staticmethod(counted))
    return calls
