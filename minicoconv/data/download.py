"""Download the CIFAR-100 archive, verified, without ever leaving a half file.

The archive is streamed into a temporary file beside its destination while
its MD5 is computed; only a complete file with the right checksum is moved
into place, with ``os.replace`` (atomic on one file system). On any failure —
HTTP error, lost connection, short read, wrong checksum, Ctrl-C — the
temporary file is deleted. An existing file with the right checksum is kept
and nothing is downloaded.

The progress bar uses tqdm when it is installed and stderr is a terminal.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from minicoconv.data.cifar import ARCHIVE_NAME

DEFAULT_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
OFFICIAL_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CHUNK_BYTES = 1 << 20


class DownloadError(RuntimeError):
    """The download failed; no partial file was left behind."""


def file_md5(path: str | os.PathLike[str]) -> str:
    """Hex MD5 digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _progress_bar(total: int | None, enabled: bool, desc: str) -> Any | None:
    """A tqdm bar if asked for, tqdm is installed and stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc)


def _stream(response: Any, out: IO[bytes], bar: Any | None) -> tuple[int, str]:
    """Copy ``response`` into ``out``; returns (bytes copied, hex MD5)."""
    digest = hashlib.md5(usedforsecurity=False)
    copied = 0
    while chunk := response.read(CHUNK_BYTES):
        out.write(chunk)
        digest.update(chunk)
        copied += len(chunk)
        if bar is not None:
            bar.update(len(chunk))
    return copied, digest.hexdigest()


def download_cifar100(
    dest_dir: str | os.PathLike[str],
    url: str = DEFAULT_URL,
    md5: str = OFFICIAL_MD5,
    progress: bool = True,
    *,
    timeout: float = 60.0,
) -> Path:
    """Download ``cifar-100-python.tar.gz`` into ``dest_dir`` and verify it.

    Args:
        dest_dir: directory to put the archive in (created if needed).
        url: where to fetch it from.
        md5: expected hex MD5 of the archive.
        progress: show a progress bar (only with tqdm and a terminal).
        timeout: seconds to wait for the server on each read.

    Returns:
        The path of the verified archive, ``dest_dir/cifar-100-python.tar.gz``.

    Raises:
        DownloadError: the server could not be reached or answered with an
            error, the transfer was cut short, or the checksum is wrong.
    """
    dest_dir = Path(dest_dir).expanduser()
    dest = dest_dir / ARCHIVE_NAME
    md5 = md5.lower()
    if dest.is_file() and file_md5(dest) == md5:
        return dest
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{ARCHIVE_NAME}.", suffix=".part", dir=dest_dir)
    except OSError as e:
        raise DownloadError(f"cannot write into {dest_dir}: {e}") from e
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    expected = int(length) if length and length.isdigit() else None
                    bar = _progress_bar(expected, progress, ARCHIVE_NAME)
                    try:
                        copied, got_md5 = _stream(response, out, bar)
                    finally:
                        if bar is not None:
                            bar.close()
            except urllib.error.HTTPError as e:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
            except urllib.error.URLError as e:
                raise DownloadError(f"{url}: cannot connect ({e.reason})") from e
            except (http.client.HTTPException, OSError) as e:
                raise DownloadError(f"{url}: transfer failed ({type(e).__name__}: {e})") from e
        if expected is not None and copied != expected:
            raise DownloadError(f"{url}: transfer cut short, got {copied} of {expected} bytes")
        if got_md5 != md5:
            raise DownloadError(
                f"{url}: checksum mismatch, MD5 {got_md5} but expected {md5} (corrupt or different file)"
            )
        try:
            tmp.chmod(0o644)  # mkstemp makes it private
            os.replace(tmp, dest)
        except OSError as e:
            raise DownloadError(f"cannot move the download into {dest}: {e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest
