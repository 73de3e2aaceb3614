"""Read CIFAR-100 ("python version") safely.

The official archive ``cifar-100-python.tar.gz`` holds::

    cifar-100-python/train   50,000 images
    cifar-100-python/test    10,000 images
    cifar-100-python/meta    class names

Each file is a Python 2 pickle of a dict with bytes keys: ``b'data'`` is a
uint8 ``(N, 3072)`` array, each row channel-major RGB (1024 red, 1024 green,
1024 blue, each 32 rows of 32), so ``data.reshape(N, 3, 32, 32)`` is the image
batch; ``b'fine_labels'`` lists N labels in 0..99; ``meta`` has
``b'fine_label_names'``. Unpickling can run arbitrary code, so the files are
read with :class:`RestrictedUnpickler`, which builds NumPy arrays and nothing
else. The archive is read in one streaming pass and never extracted to disk.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np

from minicoconv.data.dataset import Dataset, DatasetError
from minicoconv.data.pickle_fields import class_names, int_labels, str_keys
from minicoconv.data.pickle_scan import SharedContainerError, check_no_shared_containers

ARCHIVE_NAME = "cifar-100-python.tar.gz"
FOLDER_NAME = "cifar-100-python"
SPLIT_FILES = ("train", "test", "meta")
NUM_CLASSES = 100
IMAGE_SHAPE = (3, 32, 32)
EXPECTED_COUNTS = {"train": 50_000, "test": 10_000}
CHUNK_BYTES = 1 << 20
#: largest pickle read (the official train file is 155 MiB): a bigger member or file is refused unread
MAX_PICKLE_BYTES = 512 << 20

# The only globals a CIFAR pickle refers to: NumPy's array reconstruction.
# (dict, list, bytes and int are pickle opcodes, not globals.) Python 3 pickles
# of protocol 2 also spell bytes as calls; two narrow stand-ins accept those.
try:  # NumPy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """Stands in for ``_codecs.encode``, which Python 3 protocol-2 pickles use for bytes.

    Only the one call such pickles contain, ``encode(text, "latin1")``, is allowed.
    """
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is only allowed as encode(str, 'latin1')")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    """Stands in for ``bytes()``, which Python 3 protocol-2 pickles use for ``b''``."""
    if args:
        raise pickle.UnpicklingError("bytes is only allowed as bytes()")
    return b""


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Not in the official files: what Python 3 writes for bytes under protocol 2.
    ("_codecs", "encode"): _latin1_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can build NumPy arrays and refuses every other global.

    ``where`` names the file in error messages.
    """

    def __init__(self, file: IO[bytes], where: str) -> None:
        super().__init__(file, encoding="bytes")
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DatasetError(
                f"{self.where}: refusing to unpickle global {module}.{name}; "
                "a CIFAR-100 file only needs NumPy array reconstruction "
                "(the file may be corrupt or malicious)"
            ) from None


# What a truncated or corrupt pickle makes the unpickler raise. (Errors of the
# stream underneath, such as a broken gzip member, are left to the caller.)
_PICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    MemoryError,
    UnicodeDecodeError,
)
# What a truncated or corrupt gzip or tar stream can raise.
_ARCHIVE_ERRORS = (tarfile.TarError, zlib.error, EOFError, OSError)


class _StreamError(Exception):
    """A read from the archive stream failed (as opposed to the pickle in it)."""


class _GuardedStream:
    """File-like view of a tar member whose read errors become :class:`_StreamError`.

    Without this a truncated gzip stream (EOFError) would look like a truncated pickle.
    """

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file

    def read(self, n: int = -1) -> bytes:
        try:
            return self.file.read(n)
        except _ARCHIVE_ERRORS as e:
            raise _StreamError(f"{type(e).__name__}: {e}") from e


def read_pickle(file: IO[bytes], where: str) -> Any:
    """Unpickle one object from ``file`` with :class:`RestrictedUnpickler`.

    The whole pickle is read first and refused if it shares containers (see
    :mod:`minicoconv.data.pickle_scan`). Any failure becomes a
    :class:`DatasetError` that names ``where``.
    """
    data = file.read()  # bounded by the caller (MAX_PICKLE_BYTES); scanned, then unpickled
    try:
        check_no_shared_containers(data)
    except SharedContainerError as e:
        raise DatasetError(f"{where}: refusing a pickle built to exhaust time or memory ({e})") from e
    except _PICKLE_ERRORS as e:
        raise DatasetError(f"{where}: not a readable pickle ({type(e).__name__}: {e})") from e
    try:
        return RestrictedUnpickler(io.BytesIO(data), where).load()
    except DatasetError:
        raise
    except _PICKLE_ERRORS as e:
        raise DatasetError(f"{where}: not a readable pickle ({type(e).__name__}: {e})") from e


# ---------------------------------------------------------------------------
# Locating the files


def _is_folder(path: Path) -> bool:
    return all((path / f).is_file() for f in SPLIT_FILES)


def resolve_cifar100(path: str | os.PathLike[str]) -> Path:
    """Where the data is: the archive, the extracted folder, or their parent.

    Returns the archive file or the folder holding ``train``, ``test`` and
    ``meta``. Raises :class:`DatasetError` if ``path`` does not exist or a
    folder lacks one of the three files.
    """
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise DatasetError(f"{path}: no such file or directory")
    if (path / FOLDER_NAME).is_dir():
        path = path / FOLDER_NAME
    elif (path / ARCHIVE_NAME).is_file() and not _is_folder(path):
        return path / ARCHIVE_NAME
    missing = [f for f in SPLIT_FILES if not (path / f).is_file()]
    if missing:
        raise DatasetError(
            f"{path}: not a CIFAR-100 folder, missing {', '.join(missing)} "
            f"(expected {FOLDER_NAME}/{{train,test,meta}} or {ARCHIVE_NAME})"
        )
    return path


def default_search_dirs() -> list[Path]:
    """``$MINICOCONV_DATA``, ``./data``, ``~/.cache/minicoconv``, ``~/data``."""
    dirs = []
    if os.environ.get("MINICOCONV_DATA"):
        dirs.append(Path(os.environ["MINICOCONV_DATA"]).expanduser())
    home = Path.home()
    dirs += [Path("data"), home / ".cache" / "minicoconv", home / "data"]
    return dirs


def find_cifar100(dirs: Iterable[str | os.PathLike[str]] | None = None) -> Path | None:
    """The first CIFAR-100 copy found in ``dirs`` (default: :func:`default_search_dirs`).

    In each directory, looks for the extracted ``cifar-100-python/`` folder
    first (faster to load), then ``cifar-100-python.tar.gz``; a directory may
    also be the extracted folder itself or point straight at the archive.
    Only looks at file names; returns None if nothing is found.
    """
    for d in default_search_dirs() if dirs is None else dirs:
        d = Path(d).expanduser()
        if d.is_file() and d.name.endswith((".tar.gz", ".tgz", ".tar")):
            return d
        for candidate in (d / FOLDER_NAME, d):
            if candidate.is_dir() and _is_folder(candidate):
                return candidate
        if (d / ARCHIVE_NAME).is_file():
            return d / ARCHIVE_NAME
    return None


# ---------------------------------------------------------------------------
# Reading


def _read_folder(folder: Path) -> dict[str, Any]:
    raw = {}
    for split in SPLIT_FILES:
        where = str(folder / split)
        try:
            _check_size((folder / split).stat().st_size, where)
            with open(folder / split, "rb") as f:
                raw[split] = read_pickle(f, where)
        except OSError as e:
            raise DatasetError(f"{where}: cannot read ({e})") from e
    return raw


def _read_archive(archive: Path) -> dict[str, Any]:
    """Unpickle train/test/meta straight from the tar stream (one pass, no extraction).

    A gzip archive is read with :mod:`gzip` to the very end, so that its CRC
    is checked: ``tarfile``'s own streaming mode does not check it and would
    let a damaged archive through as silently wrong pixels.
    """
    raw: dict[str, Any] = {}
    member_name = "the archive header"
    try:
        with open(archive, "rb") as f:
            is_gzip = f.read(2) == b"\x1f\x8b"
        with gzip.open(archive, "rb") if is_gzip else open(archive, "rb") as stream:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    member_name = member.name
                    parts = Path(member.name).parts
                    if member.isfile() and len(parts) >= 2 and parts[-2] == FOLDER_NAME and parts[-1] in SPLIT_FILES:
                        _check_size(member.size, f"{archive}:{member.name}")
                        f = tar.extractfile(member)
                        assert f is not None
                        raw[parts[-1]] = read_pickle(_GuardedStream(f), f"{archive}:{member.name}")
            member_name = "the end of the archive"
            while stream.read(CHUNK_BYTES):  # reach the gzip trailer: checks CRC and length
                pass
    except DatasetError:
        raise
    except _StreamError as e:
        raise DatasetError(
            f"{archive}: not a readable tar.gz archive, truncated or corrupt near {member_name} ({e})"
        ) from e.__cause__
    except _ARCHIVE_ERRORS as e:
        raise DatasetError(
            f"{archive}: not a readable tar.gz archive, truncated or corrupt near "
            f"{member_name} ({type(e).__name__}: {e})"
        ) from e
    missing = [f for f in SPLIT_FILES if f not in raw]
    if missing:
        raise DatasetError(f"{archive}: archive lacks {', '.join(f'{FOLDER_NAME}/{m}' for m in missing)}")
    return raw


def _check_size(size: int, where: str) -> None:
    """Refuse a pickle too big to be a CIFAR-100 file before reading it (bounds what unpickling can build)."""
    if size > MAX_PICKLE_BYTES:
        raise DatasetError(f"{where}: {size / 2**20:.0f} MiB, larger than any CIFAR-100 file "
                           f"(at most {MAX_PICKLE_BYTES >> 20} MiB read)")


def _get(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise DatasetError(f"{where}: missing key {key!r} (found {', '.join(sorted(d)) or 'no keys'})")
    return d[key]


def _class_names(meta: Any, where: str) -> list[str]:
    return class_names(_get(str_keys(meta, where), "fine_label_names", where), where, NUM_CLASSES)


def _to_dataset(obj: Any, where: str, split: str, classes: list[str], strict_counts: bool) -> Dataset:
    """Validate one unpickled split and wrap it as a :class:`Dataset`.

    ``data`` (N, 3072) uint8 -> images (N, 3, 32, 32); ``fine_labels`` -> (N,) int64.
    """
    d = str_keys(obj, where)
    data = _get(d, "data", where)
    labels_raw = _get(d, "fine_labels", where)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        got = f"{data.dtype} array" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{where}: data must be a uint8 array, got {got}")
    if data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
        raise DatasetError(f"{where}: data must have shape (N, 3072), got {data.shape}")
    n = len(data)
    labels = int_labels(labels_raw, where, "fine_labels", n, NUM_CLASSES)  # checked before it is walked
    expected = EXPECTED_COUNTS[split]
    if strict_counts and n != expected:
        raise DatasetError(
            f"{where}: expected {expected} images in the {split} split, got {n} "
            "(pass strict_counts=False to accept a partial copy)"
        )
    images = np.ascontiguousarray(data).reshape((n, *IMAGE_SHAPE))
    return Dataset(images, labels, classes, name=f"cifar100-{split}", synthetic=False)


def load_cifar100(path: str | os.PathLike[str], *, strict_counts: bool = True) -> tuple[Dataset, Dataset]:
    """Load CIFAR-100 from the official archive or its extracted folder.

    Args:
        path: ``cifar-100-python.tar.gz``, the ``cifar-100-python/`` folder,
            or a directory containing either.
        strict_counts: require exactly 50,000 training and 10,000 test images.
            Tests and partial copies pass False.

    Returns:
        ``(train, test)``, each a :class:`Dataset` with images
        ``(N, 3, 32, 32)`` uint8, labels ``(N,)`` int64 (fine labels, 0..99)
        and the 100 fine class names.

    Raises:
        DatasetError: a file is missing, truncated or corrupt, refers to a
            global other than NumPy's array reconstruction, or holds arrays
            of the wrong type, shape, count or label range. The message
            names the file.
    """
    source = resolve_cifar100(path)
    raw = _read_archive(source) if source.is_file() else _read_folder(source)

    def where(split: str) -> str:
        return f"{source}:{FOLDER_NAME}/{split}" if source.is_file() else str(source / split)

    classes = _class_names(raw["meta"], where("meta"))
    train = _to_dataset(raw["train"], where("train"), "train", classes, strict_counts)
    test = _to_dataset(raw["test"], where("test"), "test", classes, strict_counts)
    return train, test
