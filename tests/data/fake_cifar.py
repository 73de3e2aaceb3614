"""Write small CIFAR-100 copies in the official format, for tests.

The official files were written by Python 2's ``cPickle`` (protocol 2): dict
keys, class names and the array's raw bytes are Python 2 ``str`` objects, and
the array is rebuilt with ``numpy.core.multiarray._reconstruct``. Python 3's
pickler would write bytes through ``_codecs.encode`` instead, so
:class:`Py2Pickler` emits the Python 2 opcodes by hand. The reader is also
tested against ordinary Python 3 pickles (``py2=False``).
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

FOLDER = "cifar-100-python"
ARCHIVE = "cifar-100-python.tar.gz"
CLASS_NAMES = [f"class_{i:02d}" for i in range(100)]


class Py2Pickler(pickle._Pickler):  # the pure-Python pickler can be extended per type
    """Protocol-2 pickles that look like Python 2 ``cPickle`` output."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=2)

    def save_py2_str(self, obj: bytes | str) -> None:
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)

    def save_ndarray(self, a: np.ndarray) -> None:
        # _reconstruct(ndarray, (0,), 'b') then __setstate__((1, shape, dtype, fortran, raw))
        self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
        self.write(pickle.GLOBAL + b"numpy\nndarray\n")
        self.save((0,))
        self.save_py2_str(b"b")
        self.write(pickle.TUPLE3 + pickle.REDUCE)
        self.save((1, a.shape, a.dtype, False, np.ascontiguousarray(a).tobytes()))
        self.write(pickle.BUILD)

    def save_dtype(self, dt: np.dtype) -> None:
        self.write(pickle.GLOBAL + b"numpy\ndtype\n")
        self.save((dt.str[1:].encode(), 0, 1))
        self.write(pickle.REDUCE)
        self.save((3, dt.str[0].encode(), None, None, None, -1, -1, 0))
        self.write(pickle.BUILD)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str
    dispatch[np.ndarray] = save_ndarray
    dispatch[type(np.dtype(np.uint8))] = save_dtype


def dumps(obj: Any, py2: bool = True) -> bytes:
    """Pickle ``obj`` like the official files (``py2=True``) or like Python 3 does."""
    if not py2:
        return pickle.dumps(obj, protocol=4)
    buf = io.BytesIO()
    Py2Pickler(buf).dump(obj)
    return buf.getvalue()


def make_split(n: int, seed: int, fine_label_max: int = 99) -> dict[bytes, Any]:
    """A dict shaped like an official train/test pickle, with ``n`` random images."""
    rng = np.random.default_rng(seed)
    labels = [int(v) for v in rng.integers(0, fine_label_max + 1, size=n)]
    return {
        b"batch_label": b"training batch 1 of 1",
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"fine_labels": labels,
        b"coarse_labels": [v // 5 for v in labels],
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(n)],
    }


def make_meta() -> dict[bytes, Any]:
    return {
        b"fine_label_names": [c.encode() for c in CLASS_NAMES],
        b"coarse_label_names": [f"super_{i:02d}".encode() for i in range(20)],
    }


def fake_contents(n_train: int = 60, n_test: int = 20, seed: int = 0, py2: bool = True) -> dict[str, bytes]:
    """The three pickled files, ``{"train": ..., "test": ..., "meta": ...}``."""
    return {
        "train": dumps(make_split(n_train, seed), py2),
        "test": dumps(make_split(n_test, seed + 1), py2),
        "meta": dumps(make_meta(), py2),
    }


def tar_gz_bytes(files: dict[str, bytes]) -> bytes:
    """A ``cifar-100-python.tar.gz`` holding ``cifar-100-python/<name>`` for each file."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        folder = tarfile.TarInfo(FOLDER)
        folder.type = tarfile.DIRTYPE
        folder.mode = 0o755
        tar.addfile(folder)
        for name, data in {"file.txt~": b"", **files}.items():
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def fake_archive_bytes(n_train: int = 60, n_test: int = 20, seed: int = 0) -> bytes:
    return tar_gz_bytes(fake_contents(n_train, n_test, seed))


def write_fake_archive(directory: Path, **kwargs: Any) -> Path:
    """Write ``directory/cifar-100-python.tar.gz``; returns its path."""
    path = Path(directory) / ARCHIVE
    path.write_bytes(fake_archive_bytes(**kwargs))
    return path


def write_fake_folder(directory: Path, files: dict[str, bytes] | None = None, **kwargs: Any) -> Path:
    """Write ``directory/cifar-100-python/{train,test,meta}``; returns the folder."""
    folder = Path(directory) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (files if files is not None else fake_contents(**kwargs)).items():
        (folder / name).write_bytes(data)
    return folder
