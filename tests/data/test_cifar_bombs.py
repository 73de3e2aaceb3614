"""Pickles built to exhaust time or memory: refused quickly, naming the file (issue 15, item 1)."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import time
from pathlib import Path

import pytest
from fake_cifar import ARCHIVE, FOLDER, dumps, fake_contents, make_meta, make_split, tar_gz_bytes, write_fake_folder

from minicoconv.data import DatasetError, cifar, load_cifar100
from minicoconv.data.pickle_scan import SharedContainerError, check_no_shared_containers

#: each refusal must come well before anything walks the shared structure (10**12 elements)
SECONDS = 5.0


def reference_bomb() -> list:
    """Three small lists that look like 10**12 integers to anything that recurses."""
    return [[list(range(10_000))] * 10_000] * 10_000


def _archive_with_train(tmp_path: Path, train: dict) -> Path:
    files = fake_contents()
    files["train"] = pickle.dumps(train, protocol=2)
    path = tmp_path / ARCHIVE
    path.write_bytes(tar_gz_bytes(files))
    return path


def _refused(path: Path, match: str) -> None:
    start = time.perf_counter()
    with pytest.raises(DatasetError, match=match):
        load_cifar100(path, strict_counts=False)
    assert time.perf_counter() - start < SECONDS


def test_reference_bomb_archive_is_small_and_refused_at_once(tmp_path: Path) -> None:
    train = make_split(10, 0)
    train[b"fine_labels"] = reference_bomb()
    assert len(gzip.compress(pickle.dumps(reference_bomb(), protocol=2))) < 60_000  # the archive: 39 KB
    _refused(_archive_with_train(tmp_path, train), r"cifar-100-python/train: refusing a pickle built to exhaust "
             r"time or memory \(a container is referenced again")


def test_bomb_as_class_names(tmp_path: Path) -> None:
    meta = make_meta()
    meta[b"fine_label_names"] = reference_bomb()
    _refused(write_fake_folder(tmp_path, files={**fake_contents(), "meta": dumps(meta)}),
             r"meta: refusing a pickle built to exhaust time or memory")


def test_tuple_bomb_is_refused_before_unpickling() -> None:
    """A dict key made of shared tuples would be hashed (walked, 10**12 steps) by the unpickler itself."""
    row = tuple(range(10_000))
    bomb = ((row,) * 10_000,) * 10_000
    with pytest.raises(SharedContainerError, match="referenced again"):
        check_no_shared_containers(pickle.dumps(bomb, protocol=2))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_trees_pass_the_scan(protocol: int) -> None:
    """Unshared containers, repeated strings and NumPy arrays are what CIFAR files hold: all accepted."""
    name = b"shared bytes are fine"
    check_no_shared_containers(pickle.dumps({b"a": [name, name, (1, 2)], b"b": make_split(3, 0)}, protocol))


@pytest.mark.parametrize("field, value, problem", [
    ("fine_labels", [[1] for _ in range(10)], r"fine_labels must be a flat list of integers, found a list"),
    ("fine_labels", [True] * 10, r"fine_labels must be a flat list of integers, found a bool"),
    ("fine_labels", [1.0] * 10, r"fine_labels must be a flat list of integers, found a float"),
    ("fine_labels", [2**70] * 10, r"fine_labels holds an integer out of range"),
    ("fine_labels", {1: 2}, r"fine_labels must be a list of integers, got dict"),
    ("fine_labels", list(range(10**5)), r"10 images but 100000 fine_labels"),
    ((1, 2), 3, r"dict keys must be strings, got a tuple"),
], ids=["nested", "bool", "float", "huge-int", "dict", "long", "tuple-key"])
def test_bad_fields(tmp_path: Path, field, value, problem: str) -> None:
    train = make_split(10, 0)
    train[field.encode() if isinstance(field, str) else field] = value
    _refused(write_fake_folder(tmp_path, files={**fake_contents(), "train": dumps(train, py2=False)}), problem)


def test_oversized_member_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cifar, "MAX_PICKLE_BYTES", 1000)  # the fake train pickle is ~40 KB
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in fake_contents().items():
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / ARCHIVE).write_bytes(buf.getvalue())
    _refused(tmp_path / ARCHIVE, r"cifar-100-python/(train|test|meta): .*larger than any CIFAR-100 file")
    _refused(write_fake_folder(tmp_path / "folder"), r"(train|test|meta): .*larger than any CIFAR-100 file")
