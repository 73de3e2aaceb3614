"""`TrainConfig`: every option of a training run, checked, and saved as JSON.

A run is fully described by its config: `minicoconv train` builds one from
the command line, writes it to `RUN_DIR/config.json` and into every
checkpoint, and `minicoconv eval` rebuilds the model from it. Defaults are the
paper's recipe (docs/models-and-recipe.md): SGD momentum 0.9, weight decay 5e-4,
batch 128, 90 epochs, lr 0.01 divided by 10 every 30 epochs.

    cfg = TrainConfig(model="resnet18", conv="coconv", synthetic=True, epochs=3)
    cfg.validate()                      # ConfigError with a clear message if not
    TrainConfig.from_json(cfg.to_json()) == cfg
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from typing import Any

#: conv options that only some conv types accept: option -> conv types
CONV_OPTION_TYPES = {
    "activation": ("coconv",),
    "attention": ("coconv",),
    "multiscale": ("coconv",),
    "expert_bn": ("coconv",),
    "reduction": ("coconv", "dycnn"),
}
#: the command-line spelling of each conv option, for error messages
CONV_OPTION_FLAGS = {"activation": "--activation", "attention": "--attention", "multiscale": "--no-multiscale",
                     "expert_bn": "--no-expert-bn", "reduction": "--reduction"}


class ConfigError(ValueError):
    """An option value that makes no sense; the message names the option."""


@dataclass
class TrainConfig:
    """Every option of `minicoconv train` (same names, dashes as underscores)."""

    # model
    model: str = "resnet18"
    conv: str = "static"
    experts: int = 4
    num_classes: int = 100
    # conv options (None / True = the layer's default; only for the matching conv type)
    activation: str | None = None      # CoConv: "sigmoid" | "softmax"
    attention: str | None = None       # CoConv: "output" | "input"
    multiscale: bool = True            # CoConv: False = single-scale routing
    expert_bn: bool = True             # CoConv: False = no per-expert BatchNorm
    reduction: int | None = None       # CoConv, DY-CNN: routing width C // reduction (at least 16)
    dycnn_anneal: bool = False         # DY-CNN: temperature 30 -> 1 over the first 10 epochs
    odconv_anneal: bool = False        # ODConv: temperature 30 -> 1 over the first 10 epochs
    # data
    data: str | None = None            # CIFAR-100 archive or folder; None = look in the usual places
    synthetic: bool = False            # the synthetic stand-in instead of CIFAR-100
    synthetic_train: int = 50_000
    synthetic_test: int = 10_000
    val_split: int = 0                 # training images held out to choose the best epoch
    train_subset: int | None = None    # train on the first N training images only
    eval_subset: int | None = None     # evaluate on the first N validation / test images only
    # optimisation (paper recipe)
    epochs: int = 90
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_step: int = 30
    lr_gamma: float = 0.1
    max_steps: int | None = None       # at most this many steps per epoch (quick runs)
    sync_bn: bool = False              # under mpiexec: BatchNorm statistics over the global batch
    # run
    out: str | None = None             # run folder; None = runs/<model>-<conv>[-synthetic]
    seed: int = 0
    device: str = "cpu"

    # ---- derived values ---------------------------------------------------------
    def conv_options(self) -> dict[str, Any]:
        """The keyword arguments for `models.build` beyond conv and experts (non-defaults only)."""
        options: dict[str, Any] = {}
        for name in ("activation", "attention", "reduction"):
            if getattr(self, name) is not None:
                options[name] = getattr(self, name)
        if not self.multiscale:
            options["multiscale"] = False
        if not self.expert_bn:
            options["expert_bn"] = False
        return options

    def run_dir(self) -> str:
        """The run folder: `out`, or runs/<model>-<conv>[-synthetic]."""
        if self.out:
            return self.out
        return f"runs/{self.model}-{self.conv}" + ("-synthetic" if self.synthetic else "")

    # ---- validation ---------------------------------------------------------------
    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first option that makes no sense; return self."""
        from ..models import CONV_TYPES, MODELS

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(self.model in MODELS, f"unknown model {self.model!r}: choose one of {', '.join(sorted(MODELS))}")
        need(self.conv in CONV_TYPES, f"unknown conv type {self.conv!r}: choose one of {', '.join(CONV_TYPES)}")
        for name in ("experts", "num_classes", "epochs", "batch_size", "lr_step", "synthetic_train",
                     "synthetic_test"):
            value = getattr(self, name)
            need(_is_int(value) and value >= 1, f"--{_flag(name)} must be an integer >= 1, got {value!r}")
        need(self.num_classes >= 2, f"num_classes must be >= 2, got {self.num_classes}")
        for name in ("max_steps", "train_subset", "eval_subset"):
            value = getattr(self, name)
            need(value is None or (_is_int(value) and value >= 1),
                 f"--{_flag(name)} must be an integer >= 1, got {value!r}")
        need(_is_int(self.val_split) and self.val_split >= 0,
             f"--val-split must be an integer >= 0, got {self.val_split!r}")
        need(_is_int(self.seed) and self.seed >= 0, f"--seed must be an integer >= 0, got {self.seed!r}")
        for name in ("momentum", "weight_decay"):
            value = getattr(self, name)
            need(_is_number(value) and value >= 0, f"--{_flag(name)} must be a number >= 0, got {value!r}")
        for name in ("lr", "lr_gamma"):  # 0 would train nothing: the message says > 0, as the check does
            value = getattr(self, name)
            need(_is_number(value) and value > 0, f"--{_flag(name)} must be a number > 0, got {value!r}")
        need(self.device in ("cpu", "cuda", "reference"),
             f"unknown device {self.device!r}: choose cpu, cuda or reference")
        need(isinstance(self.sync_bn, bool), f"sync_bn must be true or false, got {self.sync_bn!r}")
        need(self.activation in (None, "sigmoid", "softmax"),
             f"--activation must be sigmoid or softmax, got {self.activation!r}")
        need(self.attention in (None, "output", "input"),
             f"--attention must be output or input, got {self.attention!r}")
        need(self.reduction is None or (_is_int(self.reduction) and self.reduction >= 1),
             f"--reduction must be an integer >= 1, got {self.reduction!r}")
        defaults = {f.name: f.default for f in fields(self)}
        for name, convs in CONV_OPTION_TYPES.items():
            if getattr(self, name) != defaults[name] and self.conv not in convs:
                raise ConfigError(f"{CONV_OPTION_FLAGS[name]} applies only to --conv {' or '.join(convs)}, "
                                  f"not to --conv {self.conv}")
        need(not self.dycnn_anneal or self.conv == "dycnn",
             f"--dycnn-anneal applies only to --conv dycnn, not to --conv {self.conv}")
        need(not self.odconv_anneal or self.conv == "odconv",
             f"--odconv-anneal applies only to --conv odconv, not to --conv {self.conv}")
        need(not (self.synthetic and self.data),
             "--data and --synthetic exclude each other: train on a CIFAR-100 copy or on the synthetic stand-in")
        if self.synthetic:
            need(self.val_split < self.synthetic_train,
                 f"--val-split {self.val_split} must be smaller than the training set "
                 f"(--synthetic-train {self.synthetic_train})")
        return self

    def check_sizes(self, n_train: int) -> None:
        """Check --val-split and --train-subset against the actual training-set size."""
        if self.val_split >= n_train:
            raise ConfigError(f"--val-split {self.val_split} must be smaller than the training set "
                              f"({n_train} images)")
        left = n_train - self.val_split
        if self.train_subset is not None and self.train_subset > left:
            raise ConfigError(f"--train-subset {self.train_subset} is larger than the {left} training images "
                              f"left after --val-split {self.val_split}")

    # ---- JSON ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys are an error (a typo must not pass silently)."""
        if not isinstance(data, dict):
            raise ConfigError(f"a training config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"not a JSON training config: {e}") from e
        return cls.from_dict(data)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    import math

    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
