"""`minicoconv download cifar100 [--dir DIR]`: fetch the CIFAR-100 archive and verify its checksum."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def default_dir() -> Path:
    """$MINICOCONV_DATA, else ~/.cache/minicoconv: both are places `minicoconv train` looks in."""
    env = os.environ.get("MINICOCONV_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "minicoconv"


def add_parser(sub) -> None:
    from ..data import DEFAULT_URL, OFFICIAL_MD5

    p = sub.add_parser("download", help="download a data set (cifar100)",
                       description="Download cifar-100-python.tar.gz, verify its MD5 and put it where "
                                   "`minicoconv train` finds it. Nothing is left behind on failure.")
    p.add_argument("dataset", choices=("cifar100",), help="the data set to download")
    p.add_argument("--dir", metavar="DIR", default=None,
                   help=f"destination folder (default $MINICOCONV_DATA or {Path('~/.cache/minicoconv')})")
    p.add_argument("--url", default=DEFAULT_URL, help="where to download from (default: the official site)")
    p.add_argument("--md5", default=OFFICIAL_MD5, help="expected MD5 of the archive (default: the official one)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(run=run_download)


def run_download(args: argparse.Namespace) -> int:
    from ..data import DownloadError, download_cifar100
    from ..data.cifar import default_search_dirs

    dest_dir = Path(args.dir).expanduser() if args.dir else default_dir()
    print(f"downloading CIFAR-100 from {args.url} into {dest_dir} ...", file=sys.stderr)
    try:
        path = download_cifar100(dest_dir, url=args.url, md5=args.md5, progress=args.progress)
    except DownloadError as e:
        print(f"minicoconv download: {e}", file=sys.stderr)
        return 1
    print(f"saved {path} (MD5 verified)")
    searched = {d.expanduser().resolve() for d in default_search_dirs()}
    if dest_dir.resolve() not in searched:
        print(f"note: {dest_dir} is not a folder `minicoconv train` searches; pass --data {path}")
    return 0
