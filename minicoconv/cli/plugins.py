"""`--plugin FILE.py|MODULE` and `--conv NAME`, shared by the commands that build models.

A plugin is a Python file (or importable module) that registers conv types with
`minicoconv.nn.register_conv_type` (docs/extending.md). `--conv` takes any registered
name, so its choices are checked after the plugins are imported, not by argparse.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_plugin_argument(p: argparse.ArgumentParser | Any) -> None:
    p.add_argument("--plugin", dest="plugins", action="append", metavar="FILE.py|MODULE",
                   help="import this file or module first: the conv types it registers become --conv choices "
                        "(repeatable; a training run records it, so eval, inspect and --resume import it again)")


def load_plugins(parser: argparse.ArgumentParser, plugins: list[str] | None, *convs: str | None) -> list[str]:
    """Import `plugins` and check that every conv in `convs` is registered (parser.error otherwise).

    Returns the plugins as a run records them (files as absolute paths).
    """
    from ..nn.dynamic.registry import conv_types, load_plugin, plugin_spec

    specs = [plugin_spec(p) for p in plugins or ()]
    for spec in specs:
        try:
            load_plugin(spec)
        except Exception as e:  # the user's file: say which, and what went wrong
            parser.error(f"--plugin {spec}: {type(e).__name__}: {e}")
    for conv in convs:
        if conv is not None and conv not in conv_types():
            parser.error(f"--conv {conv!r}: unknown conv type; choose one of {', '.join(conv_types())} "
                         "(or register one with --plugin FILE.py)")
    return specs


def conv_arg(text: str) -> tuple[str, Any]:
    """KEY=VALUE -> (KEY, VALUE read as JSON if it parses, else as a string): --conv-arg gate=4."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY an identifier, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
