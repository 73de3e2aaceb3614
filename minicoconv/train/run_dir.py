"""The run folder (--out): checked before any data is loaded or any model is built.

    run_dir = prepare_run_dir("runs/demo")     # created if needed, writable, or RunDirError

A run that cannot save its checkpoints should fail in a second with a message
that names the folder, not after minutes of data loading with a traceback.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class RunDirError(Exception):
    """--out cannot be a run folder (a file, under a file, read-only, ...); the message says which and why."""


def prepare_run_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` (and its parents) if needed and check that files can be written in it."""
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker == path:
        raise RunDirError(f"{path}: exists and is not a folder; choose another --out")
    if blocker is not None:
        raise RunDirError(f"{path}: cannot be a run folder, {blocker} is a file; choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"{path}: cannot create the run folder ({_reason(e)}); choose another --out") from e
    try:  # permissions alone do not tell (root, read-only mounts, /sys): try it
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise RunDirError(f"{path}: cannot write in the run folder ({_reason(e)}); choose another --out") from e
    return path


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__
