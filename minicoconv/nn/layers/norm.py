"""BatchNorm2d layer."""

from __future__ import annotations

from ... import creation
from .. import functional as F
from ..module import Module, Parameter


class BatchNorm2d(Module):
    """Per-channel batch normalisation of (N, C, H, W), as torch.nn.BatchNorm2d.

    Buffers running_mean (init 0) and running_var (init 1) are updated in
    training mode with `momentum` (unbiased variance) and used in eval mode.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True):
        super().__init__()
        if num_features < 1:
            raise ValueError(f"BatchNorm2d: num_features must be >= 1, got {num_features}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(creation.ones(num_features)) if affine else None
        self.bias = Parameter(creation.zeros(num_features)) if affine else None
        self.register_buffer("running_mean", creation.zeros(num_features))
        self.register_buffer("running_var", creation.ones(num_features))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)

    def affine_params(self):
        """Eval-mode BN as y = a * x + c per channel: returns NumPy (a, c).

        a = gamma / sqrt(var + eps), c = beta - a * mean (used by fused inference).
        """
        import numpy as np

        gamma = self.weight.numpy() if self.weight is not None else 1
        beta = self.bias.numpy() if self.bias is not None else 0
        a = gamma / np.sqrt(self.running_var.numpy() + self.eps)
        c = beta - a * self.running_mean.numpy()
        dtype = self.running_var.dtype
        return (np.broadcast_to(a, (self.num_features,)).astype(dtype),
                np.broadcast_to(c, (self.num_features,)).astype(dtype))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.weight is not None}"
