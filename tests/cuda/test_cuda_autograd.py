"""Gradients through the CUDA backend: finite-difference checks (float64) on the device."""

from __future__ import annotations

import numpy as np
import pytest

import minicoconv as mc
from minicoconv.nn import functional as F
from minicoconv.testing import gradcheck

pytestmark = pytest.mark.cuda
rng = np.random.default_rng(4)


def leaf(*shape, positive=False):
    values = rng.uniform(0.5, 1.5, shape) if positive else rng.standard_normal(shape)
    return mc.tensor(values, dtype=mc.float64, requires_grad=True, device="cuda")


CASES = {
    "broadcast-arith": (lambda a, b: (a * b + a / (b * b + 1) - 2.0 * a).exp(), lambda: (leaf(2, 3), leaf(3))),
    "pow-log-sqrt": (lambda a, b: a ** b + a.log() * a.sqrt(), lambda: (leaf(3, positive=True), leaf(3))),
    "max-min-abs": (lambda a, b: a.maximum(b) + a.minimum(0.3) + a.abs(), lambda: (leaf(4), leaf(4))),
    "sigmoid-tanh-relu": (lambda a: a.sigmoid() * a.tanh() + a.relu(), lambda: (leaf(2, 2),)),
    "reductions": (lambda a: a.sum(axis=1) * a.max(axis=1) + a.max(axis=0).sum() + a.mean()
                   + a.var(axis=0, keepdims=True).sum(), lambda: (leaf(3, 2),)),
    "matmul": (lambda a, b: a @ b, lambda: (leaf(2, 3, 2), leaf(2, 3))),
    "shape": (lambda a: mc.cat([a.transpose(0, 1), a[:, ::-1], a[1:]], axis=0).pad(((1, 0), (0, 1))),
              lambda: (leaf(2, 2),)),
    "getitem-arrays": (lambda a: a[[0, 0, 1], [1, 1, 2]] + a[a > 0].sum(), lambda: (leaf(2, 3),)),
    "where": (lambda a, b: mc.where(a > b, a * 2, b), lambda: (leaf(5), leaf(5))),
    "softmax": (lambda a: a.softmax(1) * a.log_softmax(0), lambda: (leaf(2, 3),)),
    "cross-entropy": (lambda a: F.cross_entropy(a, mc.tensor([2, 0], device="cuda")), lambda: (leaf(2, 3),)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck_ops(name):
    fn, inputs = CASES[name]
    assert gradcheck(fn, *inputs(), name=name)


LAYERS = {
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), lambda: (leaf(1, 2, 3, 3), leaf(2, 2, 2, 2),
                                                                               leaf(2))),
    "depthwise": (lambda x, w: F.conv2d(x, w, padding=1, groups=2), lambda: (leaf(1, 2, 3, 2), leaf(2, 1, 2, 2))),
    "per-sample": (lambda x, k: F.per_sample_conv2d(x, k, padding=1), lambda: (leaf(2, 1, 2, 2), leaf(2, 2, 1, 2, 2))),
    "dynamic": (lambda x, w, r: F.dynamic_conv2d(x, w, r), lambda: (leaf(2, 2, 2, 2), leaf(2, 1, 2, 2, 2), leaf(2, 2))),
    "max-pool": (lambda x: F.max_pool2d(x, 2, stride=1), lambda: (leaf(1, 2, 3, 3),)),
    "avg-pools": (lambda x: F.avg_pool2d(x, 2, padding=1).sum() + F.adaptive_avg_pool2d(x, 2),
                  lambda: (leaf(1, 1, 3, 3),)),
    "batch-norm": (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), lambda: (leaf(2, 2, 1, 2),
                                                                                           leaf(2), leaf(2))),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_gradcheck_kernels(name):
    fn, inputs = LAYERS[name]
    assert gradcheck(fn, *inputs(), name=name, atol=1e-5, rtol=1e-4)
