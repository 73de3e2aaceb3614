"""From a `TrainConfig` to the things a run needs: data, loaders, model, optimizer.

    train, val, test = load_datasets(cfg)      # val is None without --val-split
    model = build_model(cfg)                   # seeded: same cfg.seed, same initial weights
    optimizer, scheduler = build_optimizer(cfg, model)
    model, ckpt = model_from_checkpoint("runs/x/best.npz")   # for evaluation

Data sources, in order: the synthetic stand-in (`--synthetic`), an explicit
`--data` path, else the usual places (`find_cifar100`). Not finding CIFAR-100
is a `DataNotFoundError` whose message says how to get it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .. import models, optim
from .. import random as mc_random
from ..data import BatchLoader, Dataset, DatasetError, find_cifar100, load_cifar100, synthetic_cifar100
from ..data.cifar import EXPECTED_COUNTS, default_search_dirs
from ..nn.module import Module
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint
from .config import ConfigError, TrainConfig
from .resume_state import check_trainer_state

#: the seed of the synthetic data set itself (the run's --seed only changes init and data order)
SYNTHETIC_DATA_SEED = 0


class DataNotFoundError(FileNotFoundError):
    """No CIFAR-100 copy where we looked; the message says how to get one."""


def data_not_found_message() -> str:
    places = ", ".join(str(d) for d in default_search_dirs())
    return (f"No CIFAR-100 copy found (looked in {places}).\n"
            "  Download it with:   minicoconv download cifar100\n"
            "  or point to a copy: --data DIR (cifar-100-python.tar.gz or the cifar-100-python/ folder)\n"
            "  or train on the synthetic stand-in (clearly labelled as such): --synthetic")


def load_datasets(cfg: TrainConfig, log: Callable[[str], Any] = print, training: bool = True
                  ) -> tuple[Dataset, Dataset | None, Dataset]:
    """(train, val, test) for `cfg`: data source, --val-split, --train-subset and --eval-subset applied.

    The validation images are held out of the training set with a seeded split
    (`cfg.seed`) before any --train-subset, so they are never trained on.
    training=False (evaluation) needs only the test split: the training split may be empty.
    An empty split that is needed is a DataNotFoundError.
    """
    if cfg.synthetic:
        train, test = synthetic_cifar100(cfg.synthetic_train, cfg.synthetic_test, seed=SYNTHETIC_DATA_SEED)
        log(f"data: SYNTHETIC stand-in for CIFAR-100 ({len(train)} train / {len(test)} test images); "
            "accuracies on it say nothing about CIFAR-100")
    else:
        path = cfg.data or find_cifar100()
        if path is None:
            raise DataNotFoundError(data_not_found_message())
        try:
            train, test = load_cifar100(path, strict_counts=False)
        except DatasetError as e:
            raise DataNotFoundError(f"cannot read CIFAR-100: {e}") from e
        log(f"data: CIFAR-100 from {os.fspath(path)} ({len(train)} train / {len(test)} test images)")
        for split, ds in (("train", train), ("test", test)):
            if len(ds) != EXPECTED_COUNTS[split]:
                log(f"warning: the {split} split has {len(ds)} images, CIFAR-100 has {EXPECTED_COUNTS[split]}")
    needed = (("train", train), ("test", test)) if training else (("test", test),)
    for split, ds in needed:
        if len(ds) == 0:
            raise DataNotFoundError(f"the {split} split of {ds.name} holds no images")
    if not training:
        return train, None, (test if cfg.eval_subset is None else test.subset(min(cfg.eval_subset, len(test))))
    cfg.check_sizes(len(train))
    val = None
    if cfg.val_split:
        train, val = train.split(cfg.val_split, seed=cfg.seed)
    if cfg.train_subset is not None:
        train = train.subset(cfg.train_subset)
    if cfg.eval_subset is not None:
        test = test.subset(min(cfg.eval_subset, len(test)))
        if val is not None:
            val = val.subset(min(cfg.eval_subset, len(val)))
    return train, val, test


def make_loaders(cfg: TrainConfig, train: Dataset, val: Dataset | None, test: Dataset, min_batch: int = 1
                 ) -> tuple[BatchLoader, BatchLoader | None, BatchLoader]:
    """Training batches shuffled and augmented (seeded by cfg.seed and the epoch); evaluation batches in order.

    min_batch: a final training batch smaller than this is skipped (see `check_batch_floor`).
    """
    train_loader = BatchLoader(train, cfg.batch_size, shuffle=True, augment=True, seed=cfg.seed, prefetch=True,
                               min_batch=min_batch)
    val_loader = None if val is None else BatchLoader(val, cfg.batch_size, shuffle=False, prefetch=True)
    test_loader = BatchLoader(test, cfg.batch_size, shuffle=False, prefetch=True)
    return train_loader, val_loader, test_loader


def check_batch_floor(cfg: TrainConfig, model: Module, n_train: int) -> int:
    """The model's fewest images per training batch; ConfigError when --batch-size or the data has fewer.

    A layer whose BatchNorm normalises pooled features (one value per channel per
    image; its `min_training_batch` is 2, as an attention branch's) gets no statistics
    from a training batch of 1 (PyTorch's BatchNorm raises on it too). A batch size
    below that is refused before training starts; a last batch of 1 image (N % batch == 1)
    is skipped each epoch instead.
    """
    need, who = model.training_batch_floor()
    if cfg.batch_size < need:
        raise ConfigError(f"--batch-size {cfg.batch_size}: {who} needs at least {need} images per training batch "
                          "(its BatchNorm normalises pooled features over the batch); use --batch-size 2 or more")
    if n_train < need:
        raise ConfigError(f"the training set holds {n_train} image(s), but {who} needs at least {need} per "
                          "training batch")
    return need


def check_device(device: str) -> None:
    """ConfigError unless `device` can be used here (checked before any data is loaded)."""
    from ..backend import get_backend

    try:
        get_backend(device)
    except (RuntimeError, ValueError, ImportError) as e:
        raise ConfigError(f"--device {device}: {e}") from e


def build_model(cfg: TrainConfig) -> Module:
    """The model of `cfg`, initialised from the global generator seeded with cfg.seed, on cfg.device."""
    mc_random.manual_seed(cfg.seed)
    try:
        model = models.build(cfg.model, conv=cfg.conv, experts=cfg.experts, num_classes=cfg.num_classes,
                             **cfg.conv_options())
    except (TypeError, ValueError) as e:
        raise ConfigError(f"cannot build {cfg.model} with conv={cfg.conv}: {e}") from e
    if cfg.device != "cpu":
        check_device(cfg.device)
        model.to(cfg.device)
    return model


def build_optimizer(cfg: TrainConfig, model: Module) -> tuple[optim.SGD, optim.StepLR]:
    """SGD with momentum and weight decay, and StepLR (divide by 1/gamma every lr_step epochs)."""
    optimizer = optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return optimizer, optim.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)


def config_from_checkpoint(ckpt: Checkpoint) -> TrainConfig:
    if ckpt.config is None:
        raise CheckpointError(f"{ckpt.path}: holds no training config, so its model cannot be rebuilt "
                              "(saved from Python without a TrainConfig?)")
    try:
        return TrainConfig.from_dict(ckpt.config).validate()
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{ckpt.path}: its training config is not usable ({e})") from e


def model_from_checkpoint(path: str | os.PathLike[str], device: str | None = None) -> tuple[Module, Checkpoint]:
    """Rebuild the model a checkpoint was saved from, load its weights, and put it in eval mode."""
    ckpt = load_checkpoint(path)
    cfg = config_from_checkpoint(ckpt)
    if device is not None:
        cfg.device = device
    state = mc_random.get_rng_state()  # building the model draws init weights: leave the caller's RNG alone
    try:
        model = build_model(cfg)
    finally:
        mc_random.set_rng_state(state)
    ckpt.load_model(model)  # layers' schedule state is in the model's buffers
    check_trainer_state(ckpt.path, ckpt.trainer, ckpt.loader)
    return model.eval(), ckpt
