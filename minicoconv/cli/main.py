"""`minicoconv` command: dispatches to the subcommands registered in COMMANDS."""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CODES = """exit status:
  0    success
  1    bad input (a data file, checkpoint or run folder; too big for memory) or a failed run
  2    usage: options that are unknown or make no sense
  130  interrupted (Ctrl-C)"""

#: modules under minicoconv.cli, each defining add_parser(subparsers) that sets args.run
COMMANDS: list[str] = ["train", "eval", "bench", "summary", "download", "plot", "inspect", "grid", "table",
                       "export"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minicoconv",
        description="A minimal deep-learning engine for dynamic convolutions (CoConv, CondConv, DY-CNN).",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
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
        return EXIT_OK
    where = f"minicoconv {args.command}"
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"\n{where}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    # The last line of defence: each command reports its own expected failures; these two can
    # come from anywhere (a full disk, a folder that vanished, an allocation the estimates missed).
    except MemoryError as e:
        print(f"{where}: out of memory ({e or 'MemoryError'}); try a smaller --batch-size, fewer --experts "
              "or less data", file=sys.stderr)
        return EXIT_FAILED
    except OSError as e:
        target = f"{e.filename}: " if e.filename else ""
        print(f"{where}: {target}{e.strerror or e}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
