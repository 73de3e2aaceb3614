"""No host-device copies inside a training step on device "cuda" (a simulator test).

A copy between host and device waits for the GPU (a host synchronisation): inside a step it
stalls the pipeline of asynchronous kernel launches. One `train.step.train_step` on a small
model with every kind of layer a ResNet step has (convolution, batch norm, ReLU, a tensor
used twice and summed, average pooling, a linear layer, cross-entropy, SGD with momentum)
may copy exactly:

- host to device: the images and the labels (the batch upload; the labels are checked on
  the host before they go up);
- device to host: the loss (`loss.item()`, which train_step checks for NaN before it
  updates anything) and the logits (`logits.numpy()`, returned for the accuracy metrics);

and no device-to-device copies (a leaf keeps the gradient array it was given), no NumPy
array passed to a kernel (numba would copy it in and out). Dropout masks, drawn on the
host, would add one upload each; this model has none.
"""

from __future__ import annotations

import numpy as np
import pytest

import minicoconv as mc
from minicoconv import nn
from minicoconv.backend.cuda.counters import counting
from minicoconv.optim import SGD
from minicoconv.train.step import train_step

pytestmark = pytest.mark.cuda


class TinyResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.branch = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        h = self.stem(x)
        h = self.relu(self.branch(h) + h)  # h is used twice: its gradients are summed
        return self.fc(self.pool(h).flatten(1))


def test_a_training_step_copies_only_the_batch_up_and_the_loss_and_logits_down():
    mc.manual_seed(0)
    model = TinyResidual().to("cuda")
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    labels = np.array([1, 4])
    train_step(model, opt, mc.Tensor(x, device="cuda"), labels)  # first step: momentum buffers, class ids
    with counting() as c:
        loss, logits = train_step(model, opt, mc.Tensor(x, device="cuda"), labels)
    assert np.isfinite(loss) and logits.shape == (2, 5)
    assert (c.host_to_device, c.device_to_host) == (2, 2), (
        f"expected 2 uploads (images, labels) and 2 reads (loss, logits), got {c.host_to_device} and "
        f"{c.device_to_host}")
    assert c.device_to_device == 0, f"{c.device_to_device} device-to-device copies (gradients copied?)"
    assert c.host_args == 0
    assert c.launches > 0


def test_counting_without_running_kernels_counts_the_same_launches():
    from minicoconv.backend import get_backend

    be = get_backend("cuda")
    a = be.asarray(np.ones((3, 4), np.float32))
    with counting() as ran:
        be.sum(be.relu_backward(be.add(a, 1.0), a), axis=0)
    with counting(run_kernels=False) as counted:
        be.sum(be.relu_backward(be.add(a, 1.0), a), axis=0)
    assert ran.launches == counted.launches == 3
    assert ran.by_kernel == counted.by_kernel
