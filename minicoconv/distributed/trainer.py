"""`DistributedTrainer`: the `Trainer` with sharded batches, summed gradients, and one writer.

What changes against one process, step by step (B = global batch, rank r holds n_r images):
1. the batch: the same seeded order and augmentation on every rank, rank r keeps rows
   [lo_r, hi_r) (sharding.py); dropout draws its rows of the whole batch's mask;
2. forward on the shard, then one allreduce of (n_r L_r, top-1 correct, n_r, stop flag):
   the batch loss sum_r n_r L_r / B is the same number on every rank, so a NaN stops
   all of them at the same step, and a Ctrl-C on any rank stops all after this step;
3. backward of (n_r / B) L_r, then the gradient allreduce (gradients.py): every rank
   holds grad L of the whole batch and SGD makes the same update everywhere;
4. evaluation: each rank scores a contiguous part of the set; counts and loss sums are summed.

The layers' training hooks (temperature and pruning schedules) follow (epoch, step, global
step), which every rank counts alike. Rank 0 alone prints and writes metrics.jsonl, config.json
and the atomic checkpoints; the other ranks have no out_dir. A checkpoint holds the
model, optimizer, schedule, global generator and loader position, all the same on every
rank, so `--resume` works with any number of ranks (and without MPI).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import random as mc_random
from ..data import BatchLoader
from ..nn import functional as F
from ..nn.dynamic.hooks import extra_loss
from ..tensor import Tensor
from ..train.config import ConfigError, TrainConfig
from ..train.metrics import topk_correct
from ..train.step import TrainingDiverged, evaluate
from ..train.trainer import Trainer
from .gradients import GradientAllreduce
from .sharding import ShardedBatchLoader, check_shards, shard_dataset
from .sync_batchnorm import convert_sync_batchnorm
from .world import World


def data_parallel_step(model, optimizer, gradients: GradientAllreduce, images: Tensor, labels: np.ndarray,
                       shard: tuple[int, int, int], stop: bool = False) -> tuple[float, int, int, bool]:
    """One synchronous SGD step on this rank's shard; returns (batch loss, top-1 correct, B, any rank stopping).

    images (n_r, 3, 32, 32), labels (n_r,): rows lo..hi of a global batch of B = shard[2].
    Same contract as `train.step.train_step` for the whole batch: a NaN/inf batch loss raises
    TrainingDiverged on every rank before anything is updated.
    """
    lo, hi, batch = shard
    world = gradients.world
    with mc_random.batch_shard(lo, hi, batch):
        logits = model(images)                                   # (n_r, 3, 32, 32) -> (n_r, classes)
    loss = F.cross_entropy(logits, labels)                       # L_r: the mean over this shard
    extra = extra_loss(model)                                    # the layers' own terms (nn.extra_loss)
    if extra is not None:
        loss = loss + extra
    n = len(labels)
    correct = topk_correct(logits.numpy(), labels, (1,))[0]
    totals = world.allreduce_sum_(np.array([loss.item() * n, correct, n, stop], dtype=np.float64))
    value = totals[0] / totals[2]                                # L = sum_r n_r L_r / B, the same on every rank
    if not math.isfinite(value):
        raise TrainingDiverged(f"loss is {value}")
    optimizer.zero_grad()
    (loss * (n / batch)).backward()                              # grad of this rank's share (n_r / B) L_r
    gradients.reduce()                                           # summed over ranks: grad L
    optimizer.step()
    return value, int(totals[1]), int(totals[2]), bool(totals[3])


def _silent(message: str) -> None:
    """The log of ranks other than 0."""


class DistributedTrainer(Trainer):
    """A Trainer for rank `world.rank` of `world.size`; see the module docstring.

    train_loader must be a ShardedBatchLoader for this rank; val_loader and test_loader
    are BatchLoaders over this rank's part of the evaluation sets (or None). Other
    arguments as Trainer; out_dir, progress and log apply on rank 0 only.
    """

    def __init__(self, model, optimizer, train_loader: ShardedBatchLoader, *, world: World, **kwargs: Any):
        if not world.is_root:
            kwargs.update(out_dir=None, progress=False, log=_silent)
        super().__init__(model, optimizer, train_loader, **kwargs)
        self.world = world
        self.gradients = GradientAllreduce(model.parameters(), world)
        self._all_stop = False  # some rank asked to stop (Ctrl-C): every rank stops after the same step
        try:
            check_shards(train_loader, self.steps_per_epoch)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    @classmethod
    def from_config(cls, cfg: TrainConfig, world: World | None = None, *, datasets: tuple | None = None,
                    out_dir=..., progress: bool | None = None, log: Callable[[str], Any] = print,
                    on_step: Callable[[Trainer], Any] | None = None) -> DistributedTrainer:
        """Build this rank's data, model (BatchNorm synchronised with cfg.sync_bn), optimizer and loaders."""
        from ..train.prepare import build_model, build_optimizer, check_device, load_datasets
        from .placement import select_local_gpu, share_cores

        world = World() if world is None else world
        log = log if world.is_root else _silent
        cfg.validate()
        threads = share_cores(world.local_size)
        if cfg.device == "cuda":
            select_local_gpu(world.local_rank)
        check_device(cfg.device)
        train, val, test = datasets if datasets is not None else load_datasets(cfg, log=log)
        model = build_model(cfg)
        if cfg.sync_bn:
            convert_sync_batchnorm(model, world)
        optimizer, scheduler = build_optimizer(cfg, model)
        train_loader = ShardedBatchLoader(train, cfg.batch_size, world.rank, world.size, shuffle=True,
                                          augment=True, seed=cfg.seed, prefetch=True)

        def eval_loader(ds):
            return None if ds is None else BatchLoader(shard_dataset(ds, world.rank, world.size), cfg.batch_size,
                                                       shuffle=False, prefetch=True)

        lo, hi = (cfg.batch_size // world.size, -(-cfg.batch_size // world.size))
        shards = f"{lo}" if lo == hi else f"{lo}-{hi}"
        log(f"data-parallel: {world.size} MPI ranks, global batch {cfg.batch_size} = {shards} images per rank; "
            f"BatchNorm statistics {'over the global batch (--sync-bn)' if cfg.sync_bn else 'per rank'}; "
            f"{threads} thread(s) per rank")
        return cls(model, optimizer, train_loader, world=world, scheduler=scheduler, val_loader=eval_loader(val),
                   test_loader=eval_loader(test), epochs=cfg.epochs, max_steps=cfg.max_steps,
                   out_dir=cfg.run_dir() if out_dir is ... else out_dir, config=cfg, synthetic=train.synthetic,
                   device=cfg.device,
                   progress=progress, log=log, on_step=on_step)

    # ---- one step ----------------------------------------------------------------------
    def _train_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int, int]:
        """This rank's shard (x, y) of the step's global batch -> (batch loss, top-1 correct, B), all global."""
        loss, correct, n, self._all_stop = data_parallel_step(
            self.model, self.optimizer, self.gradients, Tensor(x, device=self.device), y,
            self.train_loader.batch_bounds(self.step_in_epoch), stop=self._stop_requested)
        return loss, correct, n

    def _stopping(self) -> bool:
        return self._all_stop

    # ---- evaluation ----------------------------------------------------------------------
    def _evaluate(self, loader) -> dict[str, float] | None:
        """Top-1, top-5 and mean loss over every rank's part of the set (counts and sums allreduced)."""
        if loader is None:
            return None
        part = evaluate(self.model, loader, self.device) if len(loader.dataset) else {"n": 0}
        n = part["n"]
        sums = np.array([0.0, 0.0, 0.0, 0.0]) if n == 0 else \
            np.array([round(part["top1"] * n / 100), round(part["top5"] * n / 100), part["loss"] * n, n])
        self.world.allreduce_sum_(sums)
        total = max(sums[3], 1)
        return {"top1": 100.0 * sums[0] / total, "top5": 100.0 * sums[1] / total, "loss": sums[2] / total,
                "n": int(sums[3])}

    # ---- Ctrl-C ---------------------------------------------------------------------------
    def _save_on_interrupt(self) -> None:
        """Stopped together after a step: rank 0 saves while the others wait. Otherwise: abort the job."""
        if not self._all_stop:  # a second Ctrl-C, or an interrupt of this rank alone: ranks are out of step
            print(f"minicoconv train: rank {self.world.rank} interrupted outside a step boundary; stopping every "
                  "rank now (the last checkpoint is kept)", file=sys.stderr)
            self.world.abort(130)
        super()._save_on_interrupt()
        self.world.barrier()
        self.world.stopped_together = True
