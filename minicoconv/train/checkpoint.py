"""Checkpoints: everything needed to resume a run exactly, in one `.npz` file.

Keys of the archive (np.savez; read back with allow_pickle=False, so a
checkpoint can never run code):

    format_version              int, FORMAT_VERSION
    model/<name>                every parameter and buffer (model.state_dict())
    optimizer/param_groups      JSON: SGD options per group (lr, momentum, ...)
    optimizer/momentum/<i>      momentum buffer of the i-th parameter
    scheduler                   JSON: StepLR state (or null)
    epoch, global_step          completed epochs, optimizer steps so far
    rng/global                  JSON: minicoconv.random generator state (dropout, init)
    rng/loader                  JSON: {"seed", "epoch", "batch"}: where the data order stands
    config                      JSON: the run's TrainConfig (or null)
    trainer                     JSON: anything else the trainer keeps (running means, best epoch)

Writing is atomic (see `atomic.py`): a crash, Ctrl-C or a full disk leaves
either the old checkpoint or the new one, never half of one; a failed write is
a CheckpointError that says so.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import random as mc_random
from .atomic import atomic_write
from .metrics import clean_for_json

#: 2: the layers' schedule state (annealed values, pruned channels) moved from trainer keys into the
#: model's buffers; version-1 checkpoints are refused with a message saying so
FORMAT_VERSION = 2
REQUIRED_KEYS = ("format_version", "epoch", "global_step", "rng/global", "rng/loader", "config", "trainer",
                 "scheduler", "optimizer/param_groups")


class CheckpointError(Exception):
    """A checkpoint file is missing, corrupt, of another format version, or does not fit the model.

    The message starts with the file's path.
    """


def _json(value: Any) -> np.ndarray:
    return np.array(json.dumps(clean_for_json(value)))


def _unjson(path: Path, key: str, value: np.ndarray) -> Any:
    try:
        return json.loads(str(value))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: entry {key!r} is not valid JSON ({e})") from e


def _typed(path: Path, key: str, value: Any, kinds: tuple[type, ...]) -> Any:
    """`value` if it is one of `kinds` (JSON object -> dict, array -> list, null -> NoneType)."""
    if not isinstance(value, kinds):
        names = {dict: "a JSON object", list: "a JSON array", type(None): "null"}
        expected = " or ".join(names.get(k, k.__name__) for k in kinds)
        got = names.get(type(value), type(value).__name__)
        raise CheckpointError(f"{path}: entry {key!r} must be {expected}, got {got}")
    return value


def _int(path: Path, key: str, value: np.ndarray) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: entry {key!r} is not an integer ({e})") from e


@dataclass
class Checkpoint:
    """The contents of a checkpoint file (see the module docstring for the keys)."""

    path: Path
    model: dict[str, np.ndarray]
    optimizer: dict[str, Any] | None = None   # in SGD.state_dict() form
    scheduler: dict[str, Any] | None = None   # in StepLR.state_dict() form
    epoch: int = 0
    global_step: int = 0
    rng: dict[str, Any] | None = None
    loader: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    trainer: dict[str, Any] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    def load_model(self, model) -> None:
        """Copy the weights into `model`; CheckpointError if names or shapes differ."""
        try:
            model.load_state_dict(self.model)
        except (KeyError, ValueError) as e:
            detail = e.args[0] if e.args else str(e)
            raise CheckpointError(f"{self.path}: does not fit this model ({detail}); was it saved from "
                                  f"another model, conv type or number of experts?") from e

    def restore(self, model, optimizer=None, scheduler=None, rng: bool = True) -> None:
        """Load model weights, optimizer and scheduler state and (rng=True) the global RNG state."""
        self.load_model(model)
        if optimizer is not None:
            if self.optimizer is None:
                raise CheckpointError(f"{self.path}: holds no optimizer state")
            try:
                optimizer.load_state_dict(self.optimizer)
            except (KeyError, ValueError, IndexError) as e:
                raise CheckpointError(f"{self.path}: optimizer state does not fit ({e})") from e
        if scheduler is not None:
            if self.scheduler is None:
                raise CheckpointError(f"{self.path}: holds no scheduler state")
            try:
                scheduler.load_state_dict(self.scheduler)
            except (KeyError, ValueError, TypeError) as e:
                raise CheckpointError(f"{self.path}: scheduler state is malformed ({type(e).__name__}: {e})") from e
        if rng and self.rng is not None:
            try:
                mc_random.set_rng_state(self.rng)
            except (KeyError, ValueError, TypeError) as e:
                raise CheckpointError(f"{self.path}: RNG state is malformed ({type(e).__name__}: {e})") from e


def save_checkpoint(path: str | os.PathLike[str], model, optimizer=None, scheduler=None, *, epoch: int = 0,
                    global_step: int = 0, loader: dict[str, Any] | None = None,
                    config: dict[str, Any] | None = None, trainer: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint of `model` (and optimizer, scheduler, RNG state) to `path`, atomically."""
    arrays: dict[str, np.ndarray] = {"format_version": np.array(FORMAT_VERSION)}
    for name, value in model.state_dict().items():
        arrays[f"model/{name}"] = value
    groups = None
    if optimizer is not None:
        state = optimizer.state_dict()
        groups = state["param_groups"]
        for i, buf in state["momentum_buffers"].items():
            arrays[f"optimizer/momentum/{i}"] = buf
    arrays["optimizer/param_groups"] = _json(groups)
    arrays["scheduler"] = _json(scheduler.state_dict() if scheduler is not None else None)
    arrays["epoch"] = np.array(int(epoch))
    arrays["global_step"] = np.array(int(global_step))
    arrays["rng/global"] = _json(mc_random.get_rng_state())
    arrays["rng/loader"] = _json(loader or {})
    arrays["config"] = _json(config)
    arrays["trainer"] = _json(trainer or {})
    path = Path(path)
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))
    except OSError as e:
        raise CheckpointError(f"{path}: cannot write the checkpoint ({e.strerror or e}); "
                              f"the previous {path.name}, if any, is unchanged") from e
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint; CheckpointError naming the file for anything wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):  # np.load would try to read anything else as a pickle
        raise CheckpointError(f"{path}: not a checkpoint, or truncated/corrupt (not a valid .npz zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}  # read everything now: errors surface here
    except (zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"{path}: not a checkpoint, or truncated/corrupt (bad zip archive: {e})") from e
    except (ValueError, OSError, KeyError, zipfile.LargeZipFile) as e:
        raise CheckpointError(f"{path}: corrupt or not a minicoconv checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(arrays, dict) or "format_version" not in arrays:
        raise CheckpointError(f"{path}: not a minicoconv checkpoint (no 'format_version' key; "
                              f"found {', '.join(sorted(arrays)[:5]) or 'nothing'})")
    try:
        version = int(arrays["format_version"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: 'format_version' is not an integer ({e})") from e
    if version == 1:
        raise CheckpointError(f"{path}: checkpoint format version 1, written by an older minicoconv; this one "
                              f"reads version {FORMAT_VERSION} (the layers' schedule state now "
                              "live in the model's buffers). Retrain, or evaluate it with the version that wrote it")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version}, this minicoconv reads version "
                              f"{FORMAT_VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    model = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    if not model:
        missing.append("model/*")
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
    def entry(key: str, *kinds: type) -> Any:  # a JSON entry, of the kind the code that reads it expects
        return _typed(path, key, _unjson(path, key, arrays[key]), kinds)

    groups = entry("optimizer/param_groups", list, type(None))
    optimizer = None
    if groups is not None:
        prefix = "optimizer/momentum/"
        try:
            buffers = {int(k[len(prefix):]): v for k, v in arrays.items() if k.startswith(prefix)}
        except ValueError as e:
            raise CheckpointError(f"{path}: a momentum buffer's key is not optimizer/momentum/<int> ({e})") from e
        optimizer = {"param_groups": groups, "momentum_buffers": buffers}
    return Checkpoint(
        path=path, model=model, optimizer=optimizer, scheduler=entry("scheduler", dict, type(None)),
        epoch=_int(path, "epoch", arrays["epoch"]), global_step=_int(path, "global_step", arrays["global_step"]),
        rng=entry("rng/global", dict, type(None)), loader=entry("rng/loader", dict),
        config=entry("config", dict, type(None)), trainer=entry("trainer", dict), version=version,
    )


def copy_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Copy a checkpoint file atomically (e.g. last.npz -> best.npz)."""
    dst = Path(dst)
    try:
        with open(src, "rb") as source:
            atomic_write(dst, lambda f: shutil.copyfileobj(source, f, 1 << 22))
    except OSError as e:
        raise CheckpointError(f"{dst}: cannot write the checkpoint ({e.strerror or e}); "
                              f"the previous {dst.name}, if any, is unchanged") from e
    return dst
