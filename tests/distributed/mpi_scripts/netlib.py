"""A tiny network with every kind of BatchNorm the models have, and dropout (for the MPI scripts)."""

from __future__ import annotations

from minicoconv import nn
from minicoconv.nn import functional as F


class AllNorms(nn.Module):
    """conv + BN, CoConv (one BN over n*C' expert channels), ODConv (BN on (N, A, 1, 1)), DGC (BN + lasso),
    a BN on the (N, 8, 1, 1) global average, dropout. (N, 3, 32, 32) -> (N, classes), milliseconds a step.

    odconv=False leaves ODConv out: it refuses a batch of 1 in training, which a 1-sample shard is.
    """

    def __init__(self, classes: int = 10, odconv: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1, bias=False)          # -> (N, 8, 16, 16)
        self.bn = nn.BatchNorm2d(8)
        self.down = nn.AvgPool2d(2)                               # -> (N, 8, 8, 8)
        self.coconv = nn.CoConv2d(8, 8, 3, padding=1, experts=2)
        self.odconv = nn.ODConv2d(8, 8, 3, padding=1, experts=2) if odconv else nn.Identity()
        self.dgc = nn.DGConv2d(8, 8, 3, padding=1, heads=2, keep=0.5)
        self.gbn = nn.BatchNorm2d(8)                              # on (N, 8, 1, 1): one value per sample
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        h = self.down(self.bn(self.conv(x)).relu())
        h = self.dgc(self.odconv(self.coconv(h).relu()).relu())
        h = h + self.gbn(F.adaptive_avg_pool2d(h, 1))
        return self.fc(self.drop(self.pool(h).flatten(1)))
