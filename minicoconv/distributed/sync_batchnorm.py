"""BatchNorm over the global batch (--sync-bn): statistics and their gradients summed across ranks.

Per channel c, rank r holds m_r = n_r H W values; M = sum_r m_r. Forward:

    mean_c = (1/M) sum_r m_r mean_rc
    var_c  = (1/M) sum_r m_r (var_rc + mean_rc^2) - mean_c^2      (biased; sums in float64)
    y      = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c

one allreduce of 2C + 1 numbers; the running statistics move towards (mean_c, var_c M/(M-1))
exactly as in one process. Backward, with g = dL/dy of the *global* loss on each rank
(every rank back-propagates its share (n_r/B) L_r, so g is what one process would have):

    dbias_c   = sum over all ranks' values of g           dweight_c = sum of g * xhat
    dx        = weight_c invstd_c (g - dbias_c / M - xhat dweight_c / M),   xhat = (x - mean_c) invstd_c

one more allreduce of 2C numbers. The layer returns its rank's own share of dweight and
dbias: the gradient allreduce (gradients.py) sums them with every other parameter's.

Without --sync-bn each rank normalises with its own shard's statistics (PyTorch DDP's
default): cheaper, and a different (noisier) model than one process with the whole batch.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Function
from ..nn import BatchNorm2d
from ..nn.module import Module
from .world import World


class SyncBatchNormOp(Function):
    """Training-mode batch norm of x (n_r, C, H, W) with statistics over every rank's values."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, world: World):
        be = ctx.backend
        n, c, h, w = x.shape
        local = n * h * w
        if local >= 2:
            _, mean_r, invstd_r = be.batch_norm_train_forward(x, None, None, eps)
            mean_r = be.to_numpy(mean_r).astype(np.float64)
            var_r = np.maximum(1.0 / np.square(be.to_numpy(invstd_r).astype(np.float64)) - eps, 0.0)
        else:  # one value per channel (a 1-sample shard of a 1x1 map): it is the mean, its variance 0
            mean_r = be.to_numpy(be.reshape(x, (c,))).astype(np.float64)
            var_r = np.zeros(c)
        sums = np.concatenate([[local], local * mean_r, local * (var_r + np.square(mean_r))])
        world.allreduce_sum_(sums)
        count = int(round(sums[0]))
        mean = sums[1 : c + 1] / count
        var = np.maximum(sums[c + 1 :] / count - np.square(mean), 0.0)
        if count < 2:
            raise ValueError(f"SyncBatchNorm: training needs more than one value per channel over all ranks, got "
                             f"{count}")
        dtype = x.dtype
        mean_a = be.asarray(mean.astype(dtype))
        var_a = be.asarray(var.astype(dtype))
        invstd_a = be.asarray((1.0 / np.sqrt(var + eps)).astype(dtype))
        y = be.batch_norm_eval_forward(x, mean_a, var_a, weight, bias, eps)  # (x - mean) invstd weight + bias
        if running_mean is not None:
            be.batch_norm_update_running(running_mean, running_var, mean_a, invstd_a, eps, count, momentum)
        ctx.count, ctx.world = count, world
        ctx.save_for_backward(x, weight, mean_a, invstd_a)
        return y

    @staticmethod
    def backward(ctx, g):
        be = ctx.backend
        x, weight, mean, invstd = ctx.saved
        c = x.shape[1]
        _, dweight, dbias = be.batch_norm_backward(g, x, weight, mean, invstd, False, True, True)
        sums = np.concatenate([be.to_numpy(dbias), be.to_numpy(dweight)]).astype(np.float64)
        ctx.world.allreduce_sum_(sums)  # every rank calls this, whether or not it needs dx
        dx = None
        if ctx.needs_input_grad[0]:
            w = np.ones(c) if weight is None else be.to_numpy(weight).astype(np.float64)
            inv = be.to_numpy(invstd).astype(np.float64)
            scale = w * inv                                       # weight_c invstd_c
            slope = -scale * inv * sums[c:] / ctx.count           # multiplies (x - mean_c)
            shift = -scale * sums[:c] / ctx.count

            def channel(v):
                return be.asarray(v.astype(x.dtype).reshape(1, c, 1, 1))

            centred = be.subtract(x, be.reshape(mean, (1, c, 1, 1)))
            dx = be.add(be.add(be.multiply(g, channel(scale)), be.multiply(centred, channel(slope))), channel(shift))
        need_w, need_b = ctx.needs_input_grad[1:3]
        return dx, dweight if need_w else None, dbias if need_b else None, None, None, None, None, None


class SyncBatchNorm2d(BatchNorm2d):
    """BatchNorm2d whose training-mode statistics span every rank of `world` (same parameters and buffers)."""

    def __init__(self, num_features: int, world: World, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True):
        super().__init__(num_features, eps, momentum, affine)
        self.keep_reference("world", world)  # not a parameter, buffer or module

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"SyncBatchNorm2d({self.num_features}): expected input (N, {self.num_features}, H, W), "
                             f"got {x.shape}")
        if not (isinstance(self.momentum, numbers.Real) and 0 <= self.momentum <= 1):
            raise ValueError(f"SyncBatchNorm2d: momentum must be a number in [0, 1], got {self.momentum!r}")
        return SyncBatchNormOp.apply(x, self.weight, self.bias, self.running_mean.data, self.running_var.data,
                                     self.momentum, self.eps, self.world)

    @classmethod
    def from_batchnorm(cls, bn: BatchNorm2d, world: World) -> SyncBatchNorm2d:
        """A SyncBatchNorm2d holding `bn`'s own parameters and buffers (an optimizer built on them still works)."""
        sync = cls(bn.num_features, world, bn.eps, bn.momentum, affine=bn.weight is not None)
        if bn.weight is not None:
            sync.weight, sync.bias = bn.weight, bn.bias
        sync.running_mean, sync.running_var = bn.running_mean, bn.running_var
        sync.train(bn.training)
        return sync


def convert_sync_batchnorm(model: Module, world: World) -> int:
    """Replace every BatchNorm2d of `model` by a SyncBatchNorm2d sharing its tensors; returns how many.

    state_dict() keys and values are unchanged, so checkpoints stay interchangeable.
    """
    count = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is BatchNorm2d:
                setattr(module, name, SyncBatchNorm2d.from_batchnorm(child, world))
                count += 1
    return count
