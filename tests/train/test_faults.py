"""Faults during training (issue 15): kill -9 at random moments, a second Ctrl-C during the save,
stale temporary files, NaN outputs in evaluation, and divergence without NumPy's warnings."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from minicoconv.cli.main import main
from minicoconv.train import TrainingDiverged, load_checkpoint, read_metrics
from minicoconv.train import trainer as trainer_module

from .helpers import tiny_trainer

ROOT = Path(__file__).resolve().parents[2]
#: a real model at its cheapest, 4 epochs so that kills land between, during and after saves
RUN = ["--model", "mobilenetv2", "--synthetic", "--synthetic-train", "48", "--synthetic-test", "8",
       "--batch-size", "8", "--max-steps", "2", "--epochs", "4", "--no-progress"]


def _train_until_killed(out: Path, resume: bool, delay: float) -> int | None:
    """Start `minicoconv train`, SIGKILL it `delay` s after training starts; its exit code, or None if killed."""
    command = [sys.executable, "-m", "minicoconv.cli.main", "train", *RUN, "--out", str(out)]
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(command + (["--resume"] if resume else []), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    started = threading.Event()

    def drain() -> None:  # read everything, so that the run never blocks on a full pipe
        for line in proc.stdout:
            if line.startswith("training "):
                started.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        while not started.wait(0.05) and proc.poll() is None:  # imports and data take a while
            pass
        try:
            return proc.wait(timeout=delay)  # finished before its moment came
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
        reader.join(timeout=60)
        proc.stdout.close()


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_is_bit_identical(tmp_path):
    straight, faulty = tmp_path / "straight", tmp_path / "faulty"
    assert main(["train", *RUN, "--out", str(straight)]) == 0
    rng = random.Random(15)
    kills, longest = 0, 2.5  # delays are drawn below `longest`, shrunk when a run is faster than that
    for attempt in range(16):
        last = faulty / "last.npz"
        if last.exists():  # whatever moment the kill came at, the checkpoint on disk is whole
            load_checkpoint(last)
        start = time.perf_counter()
        code = _train_until_killed(faulty, resume=last.exists(), delay=rng.uniform(0.0, longest) if kills < 4 else 300)
        if code is None:
            kills += 1
            continue
        assert code == 0, f"attempt {attempt}: exit {code}"
        if kills:
            break
        # finished before any kill came (a warm cache makes the run shorter than the delays): start over, faster
        shutil.rmtree(faulty)
        longest = 0.5 * (time.perf_counter() - start)
    else:
        pytest.fail("the run never finished after being killed")
    assert kills >= 1
    a, b = load_checkpoint(straight / "last.npz"), load_checkpoint(faulty / "last.npz")
    assert a.epoch == b.epoch == 4 and a.model.keys() == b.model.keys()
    for key in a.model:
        assert np.array_equal(a.model[key], b.model[key]), key
    assert [r["train_loss"] for r in read_metrics(straight / "metrics.jsonl")] == \
        [r["train_loss"] for r in read_metrics(faulty / "metrics.jsonl")]
    assert not list(faulty.glob(".*.tmp")), "the finished run left temporary files behind"


def test_stale_temporaries_are_removed_when_the_run_folder_is_used_again(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    stale = [tmp_path / ".last.npz.k2j3h4.tmp", tmp_path / ".best.npz.x.tmp", tmp_path / ".config.json.y.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    keep = tmp_path / ".other.tmp"
    keep.write_bytes(b"not ours")
    lines = []
    tiny_trainer(tmp_path, epochs=1, log=lines.append).fit()
    assert not any(p.exists() for p in stale) and keep.exists()
    assert any("removed 3 temporary file(s)" in line for line in lines)


def test_second_ctrl_c_during_the_save_says_what_is_on_disk(tmp_path, capsys, monkeypatch):
    """Epoch 1 saved, Ctrl-C, then a second Ctrl-C during that save: the message must not say nothing was saved."""
    real_end_epoch = trainer_module.Trainer.end_epoch

    def end_epoch_then_ctrl_c(self, *args, **kwargs):
        real_end_epoch(self, *args, **kwargs)
        raise KeyboardInterrupt  # the first Ctrl-C, right after epoch 1 was saved

    def save_interrupted(self):
        raise KeyboardInterrupt  # the second one, during the save

    monkeypatch.setattr(trainer_module.Trainer, "end_epoch", end_epoch_then_ctrl_c)
    monkeypatch.setattr(trainer_module.Trainer, "_save_on_interrupt", save_interrupted)
    out = tmp_path / "run"
    code = main(["train", *RUN, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 130
    assert f"interrupted; {out / 'last.npz'} holds the last completed save" in err and "nothing was saved" not in err
    assert load_checkpoint(out / "last.npz").epoch == 1


def test_nan_outputs_in_evaluation_stop_the_run_before_saving(tmp_path):
    def blow_up_running_var(trainer):
        if trainer.global_step == 3:  # the last step of epoch 1: its evaluation sees the damage
            trainer.model.bn.running_var.data[...] = -1.0  # sqrt of a negative variance: NaN outputs

    trainer = tiny_trainer(tmp_path, epochs=2, on_step=blow_up_running_var)
    with pytest.raises(TrainingDiverged, match=r"after epoch 1 the model's outputs are NaN/inf for \d+ of 32 "
                                               r"synthetic-cifar100\(seed=0\)-test images; this epoch was not saved"):
        trainer.fit()
    assert not (tmp_path / "last.npz").exists()


def test_divergence_prints_no_numpy_warnings(tmp_path):
    def huge_weights(trainer):
        if trainer.global_step == 1:
            trainer.model.fc.weight.data[...] = 3e38  # finite, but every logit overflows

    trainer = tiny_trainer(tmp_path, epochs=1, on_step=huge_weights)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TrainingDiverged, match="loss is nan|loss is inf"):
            trainer.fit()
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
