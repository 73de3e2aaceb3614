"""`TrainConfig`: every option of a training run, checked, and saved as JSON.

A run is fully described by its config: `minicoconv train` builds one from
the command line, writes it to `RUN_DIR/config.json` and into every
checkpoint, and `minicoconv eval` rebuilds the model from it. Defaults are the
paper's recipe (docs/models-and-recipe.md): SGD momentum 0.9, weight decay 5e-4,
batch 128, 90 epochs, lr 0.01 divided by 10 every 30 epochs.

    cfg = TrainConfig(model="resnet18", conv="static", synthetic=True, epochs=3)
    cfg.validate()                      # ConfigError with a clear message if not
    TrainConfig.from_json(cfg.to_json()) == cfg
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

#: the config fields passed to the conv type's builder when not at their default, and their
#: command-line spelling; which conv types take each is declared in the conv-type registry
CONV_OPTION_FLAGS = {"activation": "--activation", "attention": "--attention", "multiscale": "--no-multiscale",
                     "expert_bn": "--no-expert-bn", "reduction": "--reduction", "anneal": "--anneal"}


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
    # conv options (None / True / False = the layer's default), passed to the conv type's builder;
    # a conv type declares the ones it takes (nn.dynamic.registry; the layers' docs say what they mean)
    activation: str | None = None      # routing activation: "sigmoid" | "softmax"
    attention: str | None = None       # routing attention on "output" | "input" channels
    multiscale: bool = True            # False = single-scale routing
    expert_bn: bool = True             # False = no per-expert BatchNorm
    reduction: int | None = None       # routing width C // reduction (at least 16)
    anneal: bool = False               # the layer's own annealing schedule in training
    conv_args: dict[str, Any] = field(default_factory=dict)  # any other declared option (--conv-arg K=V)
    plugins: list[str] = field(default_factory=list)         # files/modules registering conv types
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
        if self.anneal:
            options["anneal"] = True
        options.update(self.conv_args)
        return options

    def run_dir(self) -> str:
        """The run folder: `out`, or runs/<model>-<conv>[-synthetic]."""
        if self.out:
            return self.out
        return f"runs/{self.model}-{self.conv}" + ("-synthetic" if self.synthetic else "")

    # ---- validation ---------------------------------------------------------------
    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first option that makes no sense; return self."""
        from ..models import MODELS
        from ..nn.dynamic.registry import conv_option_types, get_conv_type, load_plugin

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(isinstance(self.plugins, list) and all(isinstance(p, str) for p in self.plugins),
             f"plugins must be a list of file or module names, got {self.plugins!r}")
        for plugin in self.plugins:  # they register conv types: before --conv is checked
            try:
                load_plugin(plugin)
            except Exception as e:  # any error in the user's file: say which file, and what
                raise ConfigError(f"--plugin {plugin}: {type(e).__name__}: {e}") from e
        need(self.model in MODELS, f"unknown model {self.model!r}: choose one of {', '.join(sorted(MODELS))}")
        try:
            entry = get_conv_type(self.conv)
        except ValueError as e:
            raise ConfigError(str(e)) from None
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
        need(isinstance(self.conv_args, dict), f"conv_args must be a JSON object, got {self.conv_args!r}")
        takes = conv_option_types()
        for name in self.conv_options():
            if name not in entry.options:
                flag = CONV_OPTION_FLAGS.get(name, f"--conv-arg {name}=...")
                where = f"--conv {' or '.join(takes[name])}" if name in takes else "no registered conv type"
                raise ConfigError(f"{flag} applies only to {where}, not to --conv {self.conv}")
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
