"""Small models and data for the training tests: plumbing is tested on a tiny network.

`TinyNet` has everything that makes exact resume hard -- BatchNorm buffers,
dropout (the global generator), momentum -- at a cost of milliseconds a step.
"""

from __future__ import annotations

import minicoconv as mc
from minicoconv import nn, optim
from minicoconv.data import BatchLoader, synthetic_cifar100
from minicoconv.train import Trainer


class TinyNet(nn.Module):
    """conv 3->8 stride 2 + BN + ReLU, pool to 4x4, dropout, linear -> classes."""

    def __init__(self, classes: int = 100):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(128, classes)

    def forward(self, x):
        h = self.pool(self.bn(self.conv(x)).relu()).flatten(1)
        return self.fc(self.drop(h))


_DATA: dict = {}


def tiny_data(n_train: int = 96, n_test: int = 32):
    """Synthetic (train, test), cached per size (generation is deterministic)."""
    key = (n_train, n_test)
    if key not in _DATA:
        _DATA[key] = synthetic_cifar100(n_train, n_test)
    return _DATA[key]


def tiny_trainer(out_dir=None, epochs: int = 2, seed: int = 0, lr: float = 0.05, batch: int = 32, val=False,
                 **kwargs) -> Trainer:
    """A Trainer of TinyNet on tiny synthetic data; the same arguments give the same run."""
    train, test = tiny_data()
    val_loader = None
    if val:
        train, held = train.split(32, seed=seed)
        val_loader = BatchLoader(held, batch, shuffle=False)
    mc.manual_seed(seed)
    model = TinyNet()
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = optim.StepLR(opt, step_size=1, gamma=0.5)
    kwargs.setdefault("log", lambda line: None)
    kwargs.setdefault("progress", False)
    return Trainer(model, opt, BatchLoader(train, batch, augment=True, seed=seed), scheduler=sched,
                   val_loader=val_loader, test_loader=BatchLoader(test, batch, shuffle=False), epochs=epochs,
                   out_dir=out_dir, **kwargs)
