"""`minicoconv` command: dispatches to the subcommands registered in COMMANDS."""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__

#: modules under minicoconv.cli, each defining add_parser(subparsers) that sets args.run
COMMANDS: list[str] = ["train", "eval", "bench", "summary", "download", "plot", "grid", "table", "export"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minicoconv",
        description="A minimal deep-learning engine for dynamic convolutions (CoConv, CondConv, DY-CNN).",
    )
    parser.add_argument("--version", action="version", version=f"minicoconv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(f".{module}", __package__).add_parser(sub)  # each module: add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
