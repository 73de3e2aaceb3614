"""CIFAR-100 reader: official layout, restricted unpickling, validation errors; Dataset."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from fake_cifar import (
    CLASS_NAMES,
    dumps,
    fake_archive_bytes,
    fake_contents,
    make_meta,
    make_split,
    tar_gz_bytes,
    write_fake_archive,
    write_fake_folder,
)

from minicoconv.data import Dataset, DatasetError, find_cifar100, load_cifar100


def check_matches_fake(train: Dataset, test: Dataset, n_train: int = 60, n_test: int = 20) -> None:
    for ds, n, seed in ((train, n_train, 0), (test, n_test, 1)):
        raw = make_split(n, seed)
        assert ds.images.shape == (n, 3, 32, 32) and ds.images.dtype == np.uint8
        assert ds.labels.shape == (n,) and ds.labels.dtype == np.int64
        # Channel-major RGB rows: the first 1024 values are the red plane, row by row.
        np.testing.assert_array_equal(ds.images[:, 0].reshape(n, -1), raw[b"data"][:, :1024])
        np.testing.assert_array_equal(ds.images.reshape(n, -1), raw[b"data"])
        np.testing.assert_array_equal(ds.labels, raw[b"fine_labels"])
        assert ds.classes == CLASS_NAMES and ds.synthetic is False
    assert train.name == "cifar100-train" and test.name == "cifar100-test"


# --------------------------------------------------------------------------- valid copies


def test_reads_official_archive(tmp_path: Path) -> None:
    archive = write_fake_archive(tmp_path)
    check_matches_fake(*load_cifar100(archive, strict_counts=False))


@pytest.mark.parametrize("which", ["folder", "parent"])
def test_reads_extracted_folder_or_its_parent(tmp_path: Path, which: str) -> None:
    folder = write_fake_folder(tmp_path)
    check_matches_fake(*load_cifar100(folder if which == "folder" else tmp_path, strict_counts=False))


def test_reads_directory_holding_archive(tmp_path: Path) -> None:
    write_fake_archive(tmp_path)
    check_matches_fake(*load_cifar100(str(tmp_path), strict_counts=False))


def test_reads_python3_pickles(tmp_path: Path) -> None:
    folder = write_fake_folder(tmp_path, files=fake_contents(py2=False))
    check_matches_fake(*load_cifar100(folder, strict_counts=False))


def test_reads_python3_protocol2_pickles(tmp_path: Path) -> None:
    """Python 3 writes bytes as ``_codecs.encode(text, 'latin1')`` under protocol 2 (and b'' as ``bytes()``)."""
    files = fake_contents()
    for split, seed, n in (("train", 0, 60), ("test", 1, 20)):
        files[split] = pickle.dumps({**make_split(n, seed), b"batch_label": b""}, protocol=2)
    files["meta"] = pickle.dumps(make_meta(), protocol=2)
    check_matches_fake(*load_cifar100(write_fake_folder(tmp_path, files=files), strict_counts=False))


@pytest.mark.parametrize(
    "payload, problem",
    [
        (b"c_codecs\nencode\n(Vabc\nVrot13\ntR.", r"encode\(str, 'latin1'\)"),
        (b"c__builtin__\nbytes\n(I1000000\ntR.", r"bytes is only allowed as bytes\(\)"),
    ],
)
def test_protocol2_stand_ins_are_narrow(tmp_path: Path, payload: bytes, problem: str) -> None:
    files = fake_contents()
    files["train"] = payload
    with pytest.raises(DatasetError, match=rf"train: not a readable pickle \(UnpicklingError: .*{problem}"):
        load_cifar100(write_fake_folder(tmp_path, files=files), strict_counts=False)


def test_strict_counts_is_the_default(tmp_path: Path) -> None:
    archive = write_fake_archive(tmp_path)
    with pytest.raises(DatasetError, match=r"train: expected 50000 images in the train split, got 60"):
        load_cifar100(archive)


# --------------------------------------------------------------------------- corrupt files


def test_truncated_archive(tmp_path: Path) -> None:
    data = fake_archive_bytes()
    path = tmp_path / "cifar-100-python.tar.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"cifar-100-python\.tar\.gz: .*truncated or corrupt"):
        load_cifar100(path, strict_counts=False)


def test_garbage_archive(tmp_path: Path) -> None:
    path = tmp_path / "cifar-100-python.tar.gz"
    path.write_bytes(b"this is not a gzip file" * 100)
    with pytest.raises(DatasetError, match=r"not a readable tar\.gz archive"):
        load_cifar100(path, strict_counts=False)


def test_corrupt_gzip_stream(tmp_path: Path) -> None:
    data = bytearray(fake_archive_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # damage the deflate stream
    path = tmp_path / "cifar-100-python.tar.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"cifar-100-python\.tar\.gz"):
        load_cifar100(path, strict_counts=False)


def test_archive_missing_member(tmp_path: Path) -> None:
    files = fake_contents()
    del files["meta"]
    path = tmp_path / "cifar-100-python.tar.gz"
    path.write_bytes(tar_gz_bytes(files))
    with pytest.raises(DatasetError, match=r"archive lacks cifar-100-python/meta"):
        load_cifar100(path, strict_counts=False)


def test_missing_file_in_folder(tmp_path: Path) -> None:
    folder = write_fake_folder(tmp_path)
    (folder / "test").unlink()
    with pytest.raises(DatasetError, match=r"cifar-100-python: not a CIFAR-100 folder, missing test"):
        load_cifar100(tmp_path, strict_counts=False)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nowhere: no such file or directory"):
        load_cifar100(tmp_path / "nowhere")


def test_truncated_pickle_in_folder(tmp_path: Path) -> None:
    files = fake_contents()
    files["train"] = files["train"][:5000]
    folder = write_fake_folder(tmp_path, files=files)
    with pytest.raises(DatasetError, match=r"cifar-100-python/train: not a readable pickle"):
        load_cifar100(folder, strict_counts=False)


def _global_call_pickle(module: str, name: str, arg: str) -> bytes:
    """Protocol-0 pickle of ``module.name(arg)``: what a malicious file would hold."""
    return f"c{module}\n{name}\n(S'{arg}'\ntR.".encode()


@pytest.mark.parametrize(
    "module, name", [("os", "system"), ("posix", "system"), ("builtins", "eval"), ("numpy", "load")]
)
def test_forbidden_global_is_refused(tmp_path: Path, module: str, name: str) -> None:
    witness = tmp_path / "pwned"
    arg = f"open('{witness}', 'w')" if name == "eval" else f"touch {witness}"
    files = fake_contents()
    files["train"] = _global_call_pickle(module, name, arg)
    folder = write_fake_folder(tmp_path, files=files)
    with pytest.raises(DatasetError, match=rf"train: refusing to unpickle global {module}\.{name}"):
        load_cifar100(folder, strict_counts=False)
    assert not witness.exists()


def test_forbidden_global_inside_archive(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("unpickled!",))

    files = fake_contents()
    files["test"] = pickle.dumps({b"data": Evil()}, protocol=4)
    path = tmp_path / "cifar-100-python.tar.gz"
    path.write_bytes(tar_gz_bytes(files))
    with pytest.raises(DatasetError, match=r"tar\.gz:cifar-100-python/test: refusing .* builtins\.print"):
        load_cifar100(path, strict_counts=False)


def _folder_with_train(tmp_path: Path, train: dict) -> Path:
    files = fake_contents()
    files["train"] = dumps(train)
    return write_fake_folder(tmp_path, files=files)


def test_label_out_of_range(tmp_path: Path) -> None:
    train = make_split(10, 0)
    train[b"fine_labels"][3] = 100
    with pytest.raises(DatasetError, match=r"train: fine_labels must lie in 0\.\.99, found \d+\.\.100"):
        load_cifar100(_folder_with_train(tmp_path, train), strict_counts=False)


def test_negative_label(tmp_path: Path) -> None:
    train = make_split(10, 0)
    train[b"fine_labels"][0] = -1
    with pytest.raises(DatasetError, match=r"fine_labels must lie in 0\.\.99, found -1\.\."):
        load_cifar100(_folder_with_train(tmp_path, train), strict_counts=False)


def test_wrong_data_shape(tmp_path: Path) -> None:
    train = make_split(10, 0)
    train[b"data"] = train[b"data"][:, :1000]
    with pytest.raises(DatasetError, match=r"train: data must have shape \(N, 3072\), got \(10, 1000\)"):
        load_cifar100(_folder_with_train(tmp_path, train), strict_counts=False)


def test_wrong_data_dtype(tmp_path: Path) -> None:
    train = make_split(10, 0)
    train[b"data"] = train[b"data"].astype(np.float32)
    with pytest.raises(DatasetError, match=r"train: data must be a uint8 array, got float32 array"):
        load_cifar100(_folder_with_train(tmp_path, train), strict_counts=False)


def test_label_count_mismatch(tmp_path: Path) -> None:
    train = make_split(10, 0)
    train[b"fine_labels"] = train[b"fine_labels"][:7]
    with pytest.raises(DatasetError, match=r"train: 10 images but 7 fine_labels"):
        load_cifar100(_folder_with_train(tmp_path, train), strict_counts=False)


def test_missing_key(tmp_path: Path) -> None:
    train = make_split(10, 0)
    del train[b"fine_labels"]
    with pytest.raises(DatasetError, match=r"train: missing key 'fine_labels'"):
        load_cifar100(_folder_with_train(tmp_path, train), strict_counts=False)


def test_not_a_dict(tmp_path: Path) -> None:
    files = fake_contents()
    files["test"] = dumps([1, 2, 3])
    folder = write_fake_folder(tmp_path, files=files)
    with pytest.raises(DatasetError, match=r"test: expected a pickled dict, got list"):
        load_cifar100(folder, strict_counts=False)


def test_wrong_class_count(tmp_path: Path) -> None:
    files = fake_contents()
    meta = make_meta()
    meta[b"fine_label_names"] = meta[b"fine_label_names"][:20]
    files["meta"] = dumps(meta)
    folder = write_fake_folder(tmp_path, files=files)
    with pytest.raises(DatasetError, match=r"meta: expected 100 fine_label_names, got 20"):
        load_cifar100(folder, strict_counts=False)


def test_dataset_error_is_a_value_error() -> None:
    assert issubclass(DatasetError, ValueError)


def test_archive_is_gzip_of_tar_in_official_layout(tmp_path: Path) -> None:
    """The helper itself: the layout the reader is tested against is the official one."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(fake_archive_bytes()))) as tar:
        names = tar.getnames()
    assert names[0] == "cifar-100-python"
    assert {"cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"} <= set(names)
    # Python 2 style: plain pickle with encoding="bytes" reads it, as the official recipe does.
    raw = pickle.loads(fake_contents()["train"], encoding="bytes")
    assert raw[b"data"].shape == (60, 3072)


# --------------------------------------------------------------------------- finding a copy


def test_find_prefers_folder_then_archive(tmp_path: Path) -> None:
    empty, with_archive, with_folder = (tmp_path / d for d in ("empty", "a", "f"))
    empty.mkdir()
    with_archive.mkdir()
    archive = write_fake_archive(with_archive)
    folder = write_fake_folder(with_folder)
    assert find_cifar100([empty]) is None
    assert find_cifar100([empty, with_archive, with_folder]) == archive
    assert find_cifar100([with_folder, with_archive]) == folder
    assert find_cifar100([folder]) == folder
    assert find_cifar100([archive]) == archive
    assert find_cifar100([tmp_path / "missing"]) is None


def test_find_uses_default_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, work, env = tmp_path / "home", tmp_path / "work", tmp_path / "env"
    for d in (home, work, env):
        d.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MINICOCONV_DATA", raising=False)
    monkeypatch.chdir(work)
    assert find_cifar100() is None
    cached = write_fake_archive(_mkdir(home / ".cache" / "minicoconv"))
    assert find_cifar100() == cached
    local = write_fake_archive(_mkdir(work / "data"))
    assert find_cifar100().resolve() == local.resolve()
    monkeypatch.setenv("MINICOCONV_DATA", str(env))
    folder = write_fake_folder(env)
    assert find_cifar100() == folder
    train, _ = load_cifar100(find_cifar100(), strict_counts=False)
    assert len(train) == 60


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


# --------------------------------------------------------------------------- Dataset


def small_dataset(n: int = 50) -> Dataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    return Dataset(images, np.arange(n, dtype=np.int64) % 10, [str(i) for i in range(10)], "toy")


def test_dataset_subset_and_split() -> None:
    ds = small_dataset()
    assert len(ds) == 50 and ds.num_classes == 10
    sub = ds.subset(7)
    assert len(sub) == 7 and np.array_equal(sub.images, ds.images[:7])
    rest, hold = ds.split(12, seed=3)
    assert len(rest) == 38 and len(hold) == 12
    both = np.concatenate([rest.images, hold.images]).reshape(50, -1)
    assert len(np.unique(both, axis=0)) == 50  # a partition: nothing lost or repeated
    rest2, hold2 = ds.split(12, seed=3)
    assert np.array_equal(hold.images, hold2.images) and np.array_equal(rest.labels, rest2.labels)
    _, hold3 = ds.split(12, seed=4)
    assert not np.array_equal(hold.images, hold3.images)
    assert "holdout 12" in hold.name and hold.classes == ds.classes


def test_dataset_validates() -> None:
    ds = small_dataset(4)
    with pytest.raises(DatasetError, match=r"images must be a uint8 array"):
        Dataset(ds.images.astype(np.float32), ds.labels, ds.classes, "x")
    with pytest.raises(DatasetError, match=r"labels must be an int64 array"):
        Dataset(ds.images, ds.labels.astype(np.int32), ds.classes, "x")
    with pytest.raises(DatasetError, match=r"4 images but 3 labels"):
        Dataset(ds.images, ds.labels[:3], ds.classes, "x")
    with pytest.raises(DatasetError, match=r"labels must lie in 0\.\.1"):
        Dataset(ds.images, ds.labels, ds.classes[:2], "x")
    with pytest.raises(ValueError, match=r"subset size"):
        ds.subset(5)
    with pytest.raises(ValueError, match=r"holdout size"):
        ds.split(-1)
