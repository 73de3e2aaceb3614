"""What a hostile-but-realistic user can feed the CLI (issue 15): one table over arguments, data
files, checkpoints and output folders. Every case must end with its documented exit status
(1 bad input or failed run, 2 usage) and a one-paragraph message: never a traceback, a hang or
a number computed from garbage."""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import pickle
import re
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from minicoconv.cli.main import main
from minicoconv.train import atomic, memory, run_dir

#: the cheapest real run: MobileNetV2, 8 synthetic images, one step
QUICK = ["--model", "mobilenetv2", "--synthetic", "--synthetic-train", "8", "--synthetic-test", "4",
         "--batch-size", "4", "--max-steps", "1", "--epochs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished tiny run folder (last.npz, best.npz) that the checkpoint cases start from."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", *QUICK, "--out", str(out)]) == 0
    return out


def cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's usage errors
        return int(e.code)


def edited(run: Path, tmp: Path, **entries) -> Path:
    """A copy of run/last.npz in tmp/r/ with some entries replaced (JSON values given as Python objects)."""
    with np.load(run / "last.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    for key, value in entries.items():
        key = key.replace("__", "/")
        arrays[key] = value if isinstance(value, np.ndarray) else np.array(json.dumps(value))
    (tmp / "r").mkdir(exist_ok=True)
    np.savez(tmp / "r" / "last.npz", **arrays)
    return tmp / "r" / "last.npz"


def nan_weights(run: Path, tmp: Path, name: str) -> Path:
    with np.load(run / "last.npz") as npz:
        value = npz[f"model/{name}"].copy()
    value.flat[0] = np.nan
    return edited(run, tmp, **{f"model__{name}": value})


def scaled_weights(run: Path, tmp: Path, name: str, value: float) -> Path:
    """Finite weights whose outputs overflow to inf and NaN."""
    with np.load(run / "last.npz") as npz:
        weights = np.full_like(npz[f"model/{name}"], value)
    return edited(run, tmp, **{f"model__{name}": weights})


def resume(path: Path) -> list[str]:
    return ["train", "--out", str(path.parent), "--resume", "--no-progress"]


def cifar_files(n_train: int = 8, n_test: int = 4) -> dict[str, bytes]:
    """The three pickles of a small CIFAR-100 copy in the official layout (Python 3 pickles)."""
    rng = np.random.default_rng(0)
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        files[split] = pickle.dumps({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                                     b"fine_labels": [int(v) for v in rng.integers(0, 100, n)]}, protocol=2)
    files["meta"] = pickle.dumps({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, protocol=2)
    return files


def data_folder(tmp: Path, n_train: int = 8, n_test: int = 4) -> Path:
    folder = tmp / "cifar-100-python"
    folder.mkdir()
    for name, data in cifar_files(n_train, n_test).items():
        (folder / name).write_bytes(data)
    return folder


def bomb_archive(tmp: Path) -> Path:
    """A 39 KB-class archive whose labels are three shared lists that read as 10**12 integers."""
    files = cifar_files()
    bomb = [[list(range(10_000))] * 10_000] * 10_000
    files["train"] = pickle.dumps({b"data": np.zeros((10, 3072), np.uint8), b"fine_labels": bomb}, protocol=2)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (tmp / "cifar-100-python.tar.gz").write_bytes(buf.getvalue())
    return tmp / "cifar-100-python.tar.gz"


def no_space(monkeypatch) -> None:
    """The disk fills up when the first checkpoint is written (config.json still fits)."""
    fsync = atomic.os.fsync

    def full(fd):
        if "last.npz" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(fd)
    monkeypatch.setattr(atomic.os, "fsync", full)


def read_only(monkeypatch) -> None:  # as root, chmod alone does not stop writes: refuse the probe
    def mkstemp(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(run_dir.tempfile, "mkstemp", mkstemp)


TRAIN = ["train", *QUICK]
Case = tuple[Callable, int, str]
CASES: dict[str, Case] = {
    # ---- arguments
    "lr-zero": (lambda t, r, m: [*TRAIN, "--lr", "0", "--out", str(t / "o")], 2, r"--lr must be a number > 0, got 0"),
    "lr-negative": (lambda t, r, m: [*TRAIN, "--lr", "-1", "--out", str(t / "o")], 2, r"--lr must be a number > 0"),
    "odconv-batch-1": (lambda t, r, m: [*TRAIN, "--conv", "odconv", "--experts", "2", "--batch-size", "1",
                                        "--out", str(t / "o")], 2,
                       r"--batch-size 1: ODConv2d \(.*\) needs at least 2 images per training batch"),
    # (a machine of 1 GiB: this one must never really try to build a 1000-expert model)
    "experts-1000": (lambda t, r, m: m.setattr(memory, "physical_memory", lambda: 1 << 30) or
                     [*TRAIN, "--conv", "coconv", "--experts", "1000", "--out", str(t / "o")], 1,
                     r"--experts 1000: mobilenetv2 with coconv would have about 369M parameters and need about "
                     r"[\d.]+ GiB to train at --batch-size 4, more than this machine's 1\.0 GiB"),
    "synthetic-1e10": (lambda t, r, m: ["train", "--synthetic", "--synthetic-train", "10000000000",
                                        "--out", str(t / "o")], 1,
                       r"--synthetic-train 10000000000 .*: the images alone need [\d,.]+ GiB, more than"),
    # ---- data files
    "data-missing": (lambda t, r, m: ["train", "--data", str(t / "nowhere"), "--out", str(t / "o")], 1,
                     r"cannot read CIFAR-100: .*nowhere: no such file or directory"),
    "data-garbage": (lambda t, r, m: (t / "x.tar.gz").write_bytes(gzip.compress(b"no tar")) and
                     ["train", "--data", str(t / "x.tar.gz"), "--out", str(t / "o")], 1,
                     r"x\.tar\.gz: not a readable tar\.gz archive"),
    "data-reference-bomb": (lambda t, r, m: ["train", "--data", str(bomb_archive(t)), "--out", str(t / "o")], 1,
                            r"cifar-100-python/train: refusing a pickle built to exhaust time or memory"),
    "data-empty-train-split": (lambda t, r, m: ["train", "--data", str(data_folder(t, n_train=0)), "--out",
                                                str(t / "o")], 1, r"the train split of cifar100-train holds no images"),
    "data-empty-test-split": (lambda t, r, m: ["train", "--data", str(data_folder(t, n_test=0)), "--out",
                                               str(t / "o")], 1, r"the test split of cifar100-test holds no images"),
    "eval-data-empty-train-split": (lambda t, r, m: ["eval", str(r / "best.npz"), "--data",
                                                     str(data_folder(t, n_train=0))], 0, r"test top-1 [\d.]+%"),
    # ---- checkpoints
    "eval-missing": (lambda t, r, m: ["eval", str(t / "none.npz")], 1, r"none\.npz: no such checkpoint file"),
    "eval-garbage": (lambda t, r, m: (t / "g.npz").write_bytes(b"PK\x03\x04 cut") and ["eval", str(t / "g.npz")], 1,
                     r"g\.npz: not a checkpoint, or truncated/corrupt"),
    "eval-run-folder": (lambda t, r, m: ["eval", str(r)], 0, r"best\.npz: mobilenetv2/static, epoch 1"),
    "eval-empty-folder": (lambda t, r, m: ["eval", str(t)], 1, r"a folder without best\.npz or last\.npz"),
    "eval-nan-weights": (lambda t, r, m: ["eval", str(nan_weights(r, t, "fc.weight"))], 1,
                         r"the weights hold NaN/inf \(fc\.weight\)"),
    "eval-nan-running-var": (lambda t, r, m: ["eval", str(nan_weights(r, t, "bn1.running_var"))], 1,
                             r"the weights hold NaN/inf \(bn1\.running_var\)"),
    "eval-overflowing-weights": (lambda t, r, m: ["eval", str(scaled_weights(r, t, "fc.weight", 3e38))], 1,
                                 r"the model's outputs are NaN/inf for 4 of 4 test images"),
    "resume-corrupt": (lambda t, r, m: (t / "r").mkdir() or (t / "r" / "last.npz").write_bytes(b"junk") and
                       resume(t / "r" / "last.npz"), 1, r"last\.npz: not a checkpoint, or truncated/corrupt"),
    "resume-trainer-list": (lambda t, r, m: resume(edited(r, t, trainer=[])), 1,
                            r"entry 'trainer' must be a JSON object, got a JSON array"),
    "resume-loader-null": (lambda t, r, m: resume(edited(r, t, rng__loader=None)), 1,
                           r"entry 'rng/loader' must be a JSON object, got null"),
    "resume-bad-scheduler": (lambda t, r, m: resume(edited(r, t, scheduler={"step_size": "x"})), 1,
                             r"scheduler state is malformed .*step_size must be an int >= 1"),
    "resume-bad-history": (lambda t, r, m: resume(edited(r, t, trainer={"history": [{"epoch": 1, "lr": "a"}]})), 1,
                           r"trainer\.history\[0\] has non-numeric lr"),
    "resume-bad-lr": (lambda t, r, m: resume(edited(r, t, optimizer__param_groups=[{"n_params": 1}])), 1,
                      r"optimizer state does not fit"),
    "eval-other-model": (lambda t, r, m: ["eval", str(edited(r, t, config={**json.loads(
        str(np.load(r / "last.npz")["config"])), "conv": "coconv", "experts": 2}))], 1,
                         r"does not fit this model \(load_state_dict\(MobileNetV2\): 17 shape mismatch\(es\): .* "
                         r"and 13 more \| 119 missing key\(s\): .* and 115 more\); was it saved from another model"),
    # ---- output folders
    "out-is-a-file": (lambda t, r, m: (t / "f").write_text("x") and [*TRAIN, "--out", str(t / "f")], 1,
                      r"f: exists and is not a folder"),
    "out-under-a-file": (lambda t, r, m: (t / "f").write_text("x") and [*TRAIN, "--out", str(t / "f" / "run")], 1,
                         r"f/run: cannot be a run folder, .*f is a file"),
    "out-read-only": (lambda t, r, m: read_only(m) or [*TRAIN, "--out", str(t / "ro")], 1,
                      r"ro: cannot write in the run folder \(Permission denied\)"),
    "out-disk-full-config": (lambda t, r, m: m.setattr(atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device"))) or [*TRAIN, "--out", str(t / "full")], 1,
                             r"full/config\.json: No space left on device"),
}
if sys.platform.startswith("linux"):  # /sys and /proc/self/fd
    CASES["out-in-sys"] = (lambda t, r, m: [*TRAIN, "--out", "/sys/minicoconv-run"], 1,
                           r"/sys/minicoconv-run: cannot (create|write in) the run folder")
    CASES["out-disk-full"] = (lambda t, r, m: no_space(m) or [*TRAIN, "--out", str(t / "full")], 1,
                              r"full/last\.npz: cannot write the checkpoint \(No space left on device\); the "
                              r"previous last\.npz, if any, is unchanged")


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_a_clear_message_and_exit_status(name, run, tmp_path, capsys, monkeypatch):
    setup, code, pattern = CASES[name]
    argv = setup(tmp_path, run, monkeypatch)
    assert cli(argv) == code
    out, err = capsys.readouterr()
    text = out if code == 0 else err
    assert "Traceback" not in err and "RuntimeWarning" not in err
    assert re.search(pattern, text), f"{name}: expected /{pattern}/ in:\n{text[-2000:]}"
    if code:
        assert len(err) < 2500, f"{name}: a message of {len(err)} characters"
    assert not list(tmp_path.rglob("*.tmp")), "a failed write left a temporary file"


def test_help_documents_the_exit_codes(capsys):
    assert cli(["--help"]) == 0
    out = capsys.readouterr().out
    for line in ("0    success", "1    bad input", "2    usage", "130  interrupted"):
        assert line in out
