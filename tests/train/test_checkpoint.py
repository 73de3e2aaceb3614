"""Checkpoints: round trip, atomic writes, and clear errors for bad files."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

import minicoconv as mc
from minicoconv import nn, optim
from minicoconv.train import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from minicoconv.train.checkpoint import copy_checkpoint

from .helpers import TinyNet


def _trained_tiny(steps: int = 2):
    mc.manual_seed(0)
    model = TinyNet()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = optim.StepLR(opt, step_size=1, gamma=0.5)
    x = mc.randn(4, 3, 32, 32)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), np.arange(4))
        opt.zero_grad()
        loss.backward()
        opt.step()
    sched.step()
    return model, opt, sched


@pytest.fixture
def saved(tmp_path):
    model, opt, sched = _trained_tiny()
    path = save_checkpoint(tmp_path / "last.npz", model, opt, sched, epoch=3, global_step=17,
                           loader={"seed": 5, "epoch": 3, "batch": 0}, config={"model": "tiny"},
                           trainer={"note": "hello"})
    return path, model, opt, sched


def test_round_trip_restores_everything(saved):
    path, model, opt, sched = saved
    rng_state = mc.get_rng_state()
    mc.randn(10)  # move the global generator on: restore must bring it back
    ckpt = load_checkpoint(path)
    assert (ckpt.epoch, ckpt.global_step, ckpt.version) == (3, 17, FORMAT_VERSION)
    assert ckpt.loader == {"seed": 5, "epoch": 3, "batch": 0}
    assert ckpt.config == {"model": "tiny"} and ckpt.trainer == {"note": "hello"}

    mc.manual_seed(123)
    fresh = TinyNet()
    fresh_opt = optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    fresh_sched = optim.StepLR(fresh_opt, step_size=1, gamma=0.5)
    ckpt.restore(fresh, fresh_opt, fresh_sched)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert np.array_equal(a, b), name
    assert fresh_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 0.05
    saved_bufs, new_bufs = opt.state_dict()["momentum_buffers"], fresh_opt.state_dict()["momentum_buffers"]
    assert saved_bufs.keys() == new_bufs.keys() and all(np.array_equal(saved_bufs[i], new_bufs[i]) for i in saved_bufs)
    assert fresh_sched.state_dict() == sched.state_dict()
    assert mc.get_rng_state() == rng_state


def test_file_is_plain_npz_without_pickles(saved):
    path = saved[0]
    with np.load(path, allow_pickle=False) as npz:
        keys = set(npz.files)
        assert int(npz["format_version"]) == FORMAT_VERSION
        assert json.loads(str(npz["config"])) == {"model": "tiny"}
    assert {"model/conv.weight", "model/bn.running_mean", "optimizer/param_groups", "optimizer/momentum/0",
            "scheduler", "epoch", "global_step", "rng/global", "rng/loader", "trainer"} <= keys


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    model, opt, sched = _trained_tiny(1)
    path = save_checkpoint(tmp_path / "last.npz", model, opt, sched, epoch=1)
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, opt, sched, epoch=2)
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.npz"]


def test_copy_checkpoint(saved, tmp_path):
    path = saved[0]
    best = copy_checkpoint(path, tmp_path / "sub" / "best.npz")
    assert best.read_bytes() == path.read_bytes()
    assert load_checkpoint(best).epoch == 3


# ---- bad files: each error names the file and the problem --------------------------------

def _expect_error(path, *fragments):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.npz", "no such checkpoint")


def test_truncated_file(saved):
    path = saved[0]
    data = path.read_bytes()
    for cut in (len(data) // 2, 100, 0):
        path.write_bytes(data[:cut])
        _expect_error(path, "truncated")


def test_corrupt_bytes_inside_the_archive(saved):
    path = saved[0]
    data = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).infolist()[1]  # damage the first array's header/data
    start = info.header_offset + 30 + len(info.filename)
    data[start:start + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    _expect_error(path)


def test_not_a_zip_at_all(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("this is not a checkpoint\n")
    _expect_error(path, "not a valid .npz")


def test_other_npz_is_refused(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, w=np.ones(3))
    _expect_error(path, "not a minicoconv checkpoint")


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, format_version=np.array(FORMAT_VERSION), obj=np.array([{"a": 1}], dtype=object))
    _expect_error(path, "corrupt or not a minicoconv checkpoint")


def test_wrong_version(saved, tmp_path):
    path = saved[0]
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["format_version"] = np.array(FORMAT_VERSION + 1)
    other = tmp_path / "future.npz"
    np.savez(other, **arrays)
    _expect_error(other, f"version {FORMAT_VERSION + 1}")


def test_a_version_1_checkpoint_is_refused_with_the_reason(saved, tmp_path):
    """Format 1 kept DY-CNN/ODConv temperatures under class-name trainer keys; format 2 keeps the
    layers' schedule state in the model's buffers, so a version-1 file is refused, saying so."""
    with np.load(saved[0], allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["format_version"] = np.array(1)
    old = tmp_path / "old.npz"
    np.savez(old, **arrays)
    _expect_error(old, "format version 1, written by an older minicoconv", "buffers", "Retrain")


def test_missing_keys(saved, tmp_path):
    path = saved[0]
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k not in ("rng/global", "epoch")}
    other = tmp_path / "partial.npz"
    np.savez(other, **arrays)
    _expect_error(other, "missing", "epoch", "rng/global")


def test_wrong_model_shape(saved):
    path = saved[0]
    ckpt = load_checkpoint(path)
    other = TinyNet(classes=10)  # a classifier of another size
    with pytest.raises(CheckpointError) as info:
        ckpt.load_model(other)
    message = str(info.value)
    assert str(path) in message and "fc.weight" in message and "shape" in message


def test_wrong_model_names(saved):
    ckpt = load_checkpoint(saved[0])
    with pytest.raises(CheckpointError, match=r"missing key\(s\)"):
        ckpt.load_model(nn.Sequential(nn.Conv2d(3, 4, 3)))


def test_checkpoint_from_real_model_refuses_other_conv_type(tmp_path):
    from minicoconv import models

    mc.manual_seed(0)
    static = models.build("mobilenetv2", conv="static", num_classes=10)
    path = save_checkpoint(tmp_path / "m.npz", static)
    coconv = models.build("mobilenetv2", conv="coconv", experts=2, num_classes=10)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path).load_model(coconv)
    assert str(path) in str(info.value) and "does not fit this model" in str(info.value)
    assert len(str(info.value)) < 1500 and "... and " in str(info.value)  # was one line of 7-18 KB


def test_files_are_readable_by_others(saved):
    mode = os.stat(saved[0]).st_mode & 0o777
    assert mode & 0o044 == 0o044  # not the 0600 of a temporary file
