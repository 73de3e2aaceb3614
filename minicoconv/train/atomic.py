"""Atomic file writes, and cleaning up after the ones a crash cut short.

    atomic_write(path, lambda f: f.write(data))      # all of it, or the old file unchanged
    remove_stale_temporaries(run_dir)                # .last.npz.*.tmp left by a kill -9

The data goes to a temporary file ``.NAME.XXXXXXXX.tmp`` beside ``path``, is
fsync'ed, and replaces ``path`` with os.replace, so a crash, Ctrl-C or a full
disk leaves either the old file or the new one, never half of one. Only
``kill -9`` (or a power cut) can leave the temporary file behind: the next run
in the same folder removes it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

#: the files of a run folder written with atomic_write (their temporaries are .NAME.*.tmp)
RUN_FILES = ("last.npz", "best.npz", "config.json", "metrics.jsonl")


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call write(file) on a temporary file beside `path`, fsync it, then os.replace it into place.

    OSError (a full disk, a read-only folder) propagates after the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a run's files are ordinary files
        os.replace(tmp, path)
    except OSError as e:  # name the file: an error from write() or fsync() does not
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
    except BaseException:  # also KeyboardInterrupt: never leave the temporary file behind
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (not possible on every platform)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def remove_stale_temporaries(folder: str | os.PathLike[str], names: tuple[str, ...] = RUN_FILES) -> list[Path]:
    """Delete the temporary files that interrupted atomic writes of `names` left in `folder`.

    Call it when a run starts in `folder`: a run folder has one writer at a time, so
    any such file is the leftover of a killed process (each can be a checkpoint's size).
    Returns the files removed.
    """
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f".{name}.*.tmp"):
            try:
                tmp.unlink()
            except FileNotFoundError:
                continue
            removed.append(tmp)
    return removed
