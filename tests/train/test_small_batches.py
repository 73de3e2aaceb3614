"""A training batch of one image (issue 15, item 2): skipped at the end of an epoch, refused as a batch size."""

from __future__ import annotations

import pytest

import minicoconv as mc
from minicoconv import nn, optim
from minicoconv.data import BatchLoader
from minicoconv.train import ConfigError, TrainConfig, Trainer

from .helpers import tiny_data


class TinyODConvNet(nn.Module):
    """ODConv 3->4 stride 4 (its attention BatchNorm needs 2 images), pool to 1x1, linear -> 100."""

    def __init__(self):
        super().__init__()
        self.conv = nn.ODConv2d(3, 4, 3, stride=4, padding=1, experts=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 100)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).flatten(1))


@pytest.mark.parametrize("n, batch, min_batch, sizes", [
    (17, 16, 1, [16, 1]), (17, 16, 2, [16]), (18, 16, 2, [16, 2]), (32, 16, 2, [16, 16]), (5, 8, 2, [5]),
])
def test_loader_drops_only_a_last_batch_below_min_batch(n, batch, min_batch, sizes):
    loader = BatchLoader(tiny_data(96, 32)[0].subset(n), batch, min_batch=min_batch, prefetch=False)
    assert [len(y) for _, y in loader] == sizes and len(loader) == len(sizes)
    assert loader.dropped_last == n - sum(sizes)


@pytest.mark.parametrize("min_batch", [0, 9, 1.5])
def test_loader_refuses_a_bad_min_batch(min_batch):
    with pytest.raises(ValueError, match=r"min_batch must be an integer in 1\.\.batch_size \(8\)"):
        BatchLoader(tiny_data(96, 32)[0], 8, min_batch=min_batch)


def _trainer(n, batch, min_batch=1, lines=None):
    mc.manual_seed(0)
    model = TinyODConvNet()
    train, test = tiny_data(96, 32)
    return Trainer(model, optim.SGD(model.parameters(), lr=0.01),
                   BatchLoader(train.subset(n), batch, seed=0, min_batch=min_batch),
                   test_loader=BatchLoader(test, 16, shuffle=False), epochs=2, progress=False,
                   log=(lines.append if lines is not None else lambda line: None))


def test_odconv_epoch_with_a_last_batch_of_one_trains_and_says_so():
    lines = []
    result = _trainer(17, 16, min_batch=2, lines=lines).fit()
    assert [r["epoch"] for r in result.history] == [1, 2] and not result.interrupted
    assert any("the last batch of each epoch (1 image) is skipped: ODConv2d (conv) needs at least 2" in line
               for line in lines)


def test_trainer_refuses_a_loader_whose_last_batch_is_too_small():
    with pytest.raises(ValueError, match=r"ODConv2d \(conv\) needs at least 2 images per training batch, and the "
                                         r"loader yields a batch of 1: .*min_batch=2"):
        _trainer(17, 16)
    with pytest.raises(ValueError, match=r"loader yields a batch of 1"):
        _trainer(17, 1)


def test_config_with_batch_size_one_is_refused_before_any_step():
    cfg = TrainConfig(model="alexnet", conv="odconv", experts=2, synthetic=True, batch_size=1, epochs=1)
    train, test = tiny_data(96, 32)
    with pytest.raises(ConfigError, match=r"--batch-size 1: ODConv2d \(features\.0\) needs at least 2 images"):
        Trainer.from_config(cfg, datasets=(train, None, test), out_dir=None, log=lambda line: None)
