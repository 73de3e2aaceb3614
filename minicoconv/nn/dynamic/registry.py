"""The conv-type registry: every convolution a model can be built with, by name.

A conv type is a name, a builder and the options it accepts. Models call the
builder at the positions the papers make dynamic (models/factory.py), the CLI's
`--conv NAME` looks the name up here, and a run's config records the plugin files
that registered it, so `eval`, `inspect` and `--resume` import them again.

    from minicoconv.nn import register_conv_type
    register_conv_type("seconv", SEConv2d, options=("reduction",))   # your own file
    minicoconv train --plugin my_seconv.py --conv seconv ...

The builder is called as
    builder(in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1,
            experts=n, **options) -> Module
(`experts` only when the type was registered with experts=True), so a layer class
with that constructor is its own builder. The steps and the hooks a layer may
define (routing_weights, fuse, macs, on_training_progress, extra_loss) are in
docs/extending.md.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..module import Module


@dataclass(frozen=True)
class ConvType:
    """One registered conv type (see register_conv_type)."""

    name: str
    builder: Callable[..., Module]
    options: tuple[str, ...] = ()
    experts: bool = True
    replaces_shortcuts: bool = False
    description: str = ""

    def make(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
             groups: int = 1, *, experts: int = 4, **options: Any) -> Module:
        """Build one layer; options not in `self.options` are refused with a message naming them."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            accepted = ", ".join(self.options) or "none"
            raise ValueError(f"conv type {self.name!r} does not take option(s) {', '.join(unknown)} "
                             f"(it takes: {accepted})")
        if self.experts:
            options["experts"] = experts
        return self.builder(in_channels, out_channels, kernel_size, stride, padding, groups=groups, **options)


_REGISTRY: dict[str, ConvType] = {}


def register_conv_type(name: str, builder: Callable[..., Module], *, options: Iterable[str] = (),
                       experts: bool = True, replaces_shortcuts: bool = False, description: str = "",
                       replace: bool = False) -> ConvType:
    """Register `builder` as conv type `name`; returns the ConvType.

    options: the keyword options the builder accepts beyond the geometry (e.g. "reduction",
        "anneal"); a run may set only these. experts: the builder takes `experts=n`.
    replaces_shortcuts: models also build ResNet's 1x1 projection shortcuts with it.
    replace: allow re-registering an existing name (otherwise a ValueError, so that two
        plugins cannot silently take the same name).
    """
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise ValueError(f"conv type name must be a lower-case identifier, got {name!r}")
    if not callable(builder):
        raise TypeError(f"register_conv_type({name!r}): builder must be callable, got {type(builder).__name__}")
    if name in _REGISTRY and not replace and _REGISTRY[name].builder is not builder:
        raise ValueError(f"conv type {name!r} is already registered (pass replace=True to replace it)")
    options = tuple(options)
    bad = [o for o in options if not isinstance(o, str) or not o.isidentifier() or o == "experts"]
    if bad:
        raise ValueError(f"register_conv_type({name!r}): options must be identifiers other than 'experts', "
                         f"got {bad}")
    entry = ConvType(name, builder, options, bool(experts), bool(replaces_shortcuts), description)
    _REGISTRY[name] = entry
    return entry


def conv_types() -> tuple[str, ...]:
    """The registered conv type names, in registration order (built-ins first)."""
    return tuple(_REGISTRY)


def get_conv_type(name: str) -> ConvType:
    """The ConvType registered as `name`; ValueError listing the known names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown conv type {name!r}: expected one of {', '.join(_REGISTRY)} "
                         "(a conv type from your own file needs --plugin FILE.py)")
    return _REGISTRY[name]


def plugin_spec(spec: str) -> str:
    """How a run records a plugin: a .py file as an absolute path, a module name as given."""
    return str(Path(spec).resolve()) if spec.endswith(".py") else spec


def load_plugin(spec: str) -> None:
    """Import a plugin (a .py file or an importable module name) so that its registrations run.

    Importing the same plugin twice runs it once (files are cached in sys.modules under a
    name derived from their absolute path).
    """
    if not spec.endswith(".py"):
        try:
            importlib.import_module(spec)
        except ImportError as e:
            raise ValueError(f"plugin {spec!r}: cannot import it ({e}); give a .py file or a module on "
                             "PYTHONPATH") from e
        return
    path = Path(spec).resolve()
    if not path.is_file():
        raise ValueError(f"plugin {spec!r}: no such file")
    module_name = f"minicoconv_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if module_name in sys.modules:
        return
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception:
        del sys.modules[module_name]  # a failed import must not look loaded next time
        raise


def conv_option_types() -> dict[str, tuple[str, ...]]:
    """option -> the registered conv types that accept it (for messages and experiment grids)."""
    table: dict[str, tuple[str, ...]] = {}
    for entry in _REGISTRY.values():
        for option in entry.options:
            table[option] = (*table.get(option, ()), entry.name)
    return table
