"""The training loop: every model learns, exact resume, Ctrl-C, divergence, model selection."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

import minicoconv as mc
from minicoconv import models, nn, optim
from minicoconv.data import BatchLoader
from minicoconv.train import Trainer, TrainingDiverged, load_checkpoint, read_metrics, topk_correct, train_step
from minicoconv.train import trainer as trainer_module

from .helpers import TinyNet, tiny_data, tiny_trainer

CONV_TYPES = ("static", "condconv", "dycnn", "coconv")


# ---- every model x conv type learns ------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("conv", CONV_TYPES)
@pytest.mark.parametrize("name", ["alexnet", "resnet18", "mobilenetv2"])
def test_model_learns_a_fixed_batch(name, conv):
    """A few SGD steps on one repeated batch of 4 images lower the loss (2 experts to keep it quick)."""
    _assert_learns(name, conv)


#: the beyond-the-paper convolutions; DGC works on dense convolutions only (no MobileNetV2)
BEYOND = [(name, "odconv") for name in ("alexnet", "resnet18", "mobilenetv2")] + [
    (name, "dgc") for name in ("alexnet", "resnet18")]


@pytest.mark.slow
@pytest.mark.parametrize("name,conv", BEYOND, ids=[f"{n}-{c}" for n, c in BEYOND])
def test_beyond_model_learns_a_fixed_batch(name, conv):
    """ODConv and DGC too; DGC with its lasso penalty and the pruning schedule as the Trainer drives it.

    Fewer steps than above, for time (an ODConv ResNet18 step costs 2-3x a CoConv one): ResNet18 and
    MobileNetV2 lose more than 1 nat in their first step, AlexNet needs a third step to pass the margin.
    """
    _assert_learns(name, conv, steps=3 if name == "alexnet" else 2)


def _assert_learns(name: str, conv: str, steps: int = 4) -> None:
    train, _ = tiny_data()
    x, y = next(iter(BatchLoader(train, 4, shuffle=False, prefetch=False)))
    mc.manual_seed(0)
    model = models.build(name, conv=conv, experts=2)  # (DGC has no experts: ignored)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for step in range(steps):
        if conv == "dgc":  # progress through one short run (0, 1/steps, ...): the mask prunes more each step
            nn.dynamic.set_dgc_progress(model, step / steps)
        losses.append(train_step(model, opt, mc.tensor(x), y)[0])  # DGC: its lasso via nn.extra_loss
    assert all(np.isfinite(losses)), losses
    assert min(losses[1:]) < losses[0] - 0.02, f"{name}/{conv}: loss did not fall: {losses}"


# ---- metrics ---------------------------------------------------------------------------------

def test_topk_correct_matches_brute_force():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((50, 10))
    labels = rng.integers(0, 10, 50)
    ranks = (logits > logits[np.arange(50), labels][:, None]).sum(axis=1)  # classes scoring higher
    assert topk_correct(logits, labels, (1, 5, 10, 20)) == [int((ranks < k).sum()) for k in (1, 5, 10, 10)]


def test_fit_writes_metrics_and_checkpoints(tmp_path):
    trainer = tiny_trainer(tmp_path, epochs=2)
    result = trainer.fit()
    assert not result.interrupted and len(result.history) == 2
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert r["synthetic"] is True and r["val_top1"] is None
        assert 0 <= r["test_top1"] <= r["test_top5"] <= 100 and r["images_per_s"] > 0 and r["seconds"] > 0
    assert records[0]["lr"] == 0.05 and records[1]["lr"] == 0.025  # StepLR(step 1, gamma 0.5)
    last, best = load_checkpoint(tmp_path / "last.npz"), load_checkpoint(tmp_path / "best.npz")
    assert last.epoch == best.epoch == 2 and last.global_step == 6  # no val split: best = last
    assert result.best["epoch"] == 2


def test_best_is_chosen_by_validation_never_by_test(tmp_path):
    trainer = tiny_trainer(tmp_path, epochs=3, val=True)
    result = trainer.fit()
    vals = [r["val_top1"] for r in result.history]
    best_epoch = 1 + int(np.argmax(vals))  # the first epoch with the best validation top-1
    assert result.best["epoch"] == best_epoch
    assert load_checkpoint(tmp_path / "best.npz").epoch == best_epoch
    assert load_checkpoint(tmp_path / "last.npz").epoch == 3


def test_end_of_run_summary_reports_final_and_best(tmp_path):
    lines = []
    tiny_trainer(tmp_path, epochs=2, val=True, log=lines.append).fit()
    text = "\n".join(lines)
    assert "final (epoch 2): test top-1" in text
    assert "best by validation (epoch" in text and "[synthetic data]" in text


# ---- exact resume ------------------------------------------------------------------------------

def _weights(path):
    ckpt = load_checkpoint(path)
    return ckpt.model, ckpt.optimizer["momentum_buffers"]


def _assert_identical(path_a, path_b):
    (wa, ma), (wb, mb) = _weights(path_a), _weights(path_b)
    assert wa.keys() == wb.keys() and ma.keys() == mb.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), f"weights differ at {k}"
    for k in ma:
        assert np.array_equal(ma[k], mb[k]), f"momentum differs at {k}"


def test_resume_at_epoch_boundary_is_bit_identical(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    tiny_trainer(straight, epochs=2).fit()
    tiny_trainer(split, epochs=1).fit()
    resumed = tiny_trainer(split, epochs=2, seed=0)
    mc.manual_seed(999)  # whatever happened in between must not matter
    resumed.resume()
    resumed.fit()
    _assert_identical(straight / "last.npz", split / "last.npz")
    a, b = read_metrics(straight / "metrics.jsonl"), read_metrics(split / "metrics.jsonl")
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert [r["test_top1"] for r in a] == [r["test_top1"] for r in b]


def test_ctrl_c_saves_a_consistent_mid_epoch_checkpoint_and_resume_is_exact(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    tiny_trainer(straight, epochs=2).fit()

    def interrupt(trainer):
        if trainer.global_step == 4:  # epoch 2, after its first step
            raise KeyboardInterrupt

    lines = []
    result = tiny_trainer(split, epochs=2, on_step=interrupt, log=lines.append).fit()
    assert result.interrupted
    ckpt = load_checkpoint(split / "last.npz")
    assert (ckpt.epoch, ckpt.global_step, ckpt.trainer["step_in_epoch"]) == (1, 4, 1)
    assert any("Resume with" in line for line in lines)
    resumed = tiny_trainer(split, epochs=2)
    resumed.resume()
    resumed.fit()
    _assert_identical(straight / "last.npz", split / "last.npz")
    a, b = read_metrics(straight / "metrics.jsonl"), read_metrics(split / "metrics.jsonl")
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]  # running means were saved too


def test_real_sigint_finishes_the_step_then_saves(tmp_path):
    def press_ctrl_c(trainer):
        if trainer.global_step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # delivered to the handler fit() installed

    previous = signal.getsignal(signal.SIGINT)
    result = tiny_trainer(tmp_path, epochs=2, on_step=press_ctrl_c).fit()
    assert result.interrupted
    assert signal.getsignal(signal.SIGINT) is previous  # the handler was put back
    ckpt = load_checkpoint(tmp_path / "last.npz")
    assert (ckpt.epoch, ckpt.global_step, ckpt.trainer["step_in_epoch"]) == (0, 2, 2)


def test_interrupt_in_the_middle_of_an_update_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    trainer = tiny_trainer(tmp_path, epochs=2)
    real_step, calls = trainer.optimizer.step, []

    def step_then_interrupt():
        calls.append(1)
        if len(calls) == 5:  # epoch 2, second step: half the parameters updated, then Ctrl-C
            raise KeyboardInterrupt
        real_step()

    monkeypatch.setattr(trainer.optimizer, "step", step_then_interrupt)
    lines = []
    trainer.log = lines.append
    assert trainer.fit().interrupted
    assert load_checkpoint(tmp_path / "last.npz").epoch == 1  # epoch 1's checkpoint, untouched
    assert any("middle of a step" in line for line in lines)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    def poison(trainer):
        if trainer.global_step == 4:  # epoch 2 step 1 done: break the weights
            trainer.model.fc.weight.data[...] = np.nan

    trainer = tiny_trainer(tmp_path, epochs=3, on_step=poison)
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit()
    message = str(info.value)
    assert "epoch 2, step 2/3" in message and "nan" in message and "last.npz" in message
    ckpt = load_checkpoint(tmp_path / "last.npz")
    assert ckpt.epoch == 1 and all(np.isfinite(v).all() for v in ckpt.model.values())
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1]


def test_train_step_applies_no_update_on_nan():
    mc.manual_seed(0)
    model = TinyNet()
    opt = optim.SGD(model.parameters(), lr=0.1)
    before = {k: v.copy() for k, v in model.state_dict().items() if "running" not in k}
    x = mc.tensor(np.full((2, 3, 32, 32), np.nan, dtype=np.float32))
    with pytest.raises(TrainingDiverged):
        train_step(model, opt, x, np.array([0, 1]))
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


# ---- schedules -----------------------------------------------------------------------------------

class TinyDyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.DyConv2d(3, 4, 3, 4, 1, experts=2, anneal=True)
        self.fc = nn.Linear(4 * 8 * 8, 100)

    def forward(self, x):
        return self.fc(self.conv(x).relu().flatten(1))


def test_dycnn_anneal_is_per_iteration(monkeypatch):
    train, _ = tiny_data()
    mc.manual_seed(0)
    model = TinyDyNet()
    opt = optim.SGD(model.parameters(), lr=0.01)
    seen = []
    original = trainer_module.train_step

    def spy(model, *args, **kwargs):
        seen.append(model.conv.temperature)
        return original(model, *args, **kwargs)

    trainer = Trainer(model, opt, BatchLoader(train, 32, seed=0), epochs=2, progress=False, log=lambda line: None)
    monkeypatch.setattr(trainer_module, "train_step", spy)
    trainer.fit()
    expected = [30 - 29 * (e + s / 3) / 10 for e in range(2) for s in range(3)]
    assert np.allclose(seen, expected)


class TinyDGCNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 4, 1, bias=False)
        self.dgc = nn.dynamic.DGConv2d(8, 8, 3, 1, 1, heads=2, keep=0.5)
        self.fc = nn.Linear(8 * 8 * 8, 100)

    def forward(self, x):
        return self.fc(self.dgc(self.stem(x)).relu().flatten(1))


def test_dgc_pruning_follows_training_progress(monkeypatch):
    train, _ = tiny_data()
    mc.manual_seed(0)
    model = TinyDGCNet()
    seen = []
    original = trainer_module.train_step

    def spy(model, *args, **kwargs):
        seen.append(model.dgc.pruned)
        return original(model, *args, **kwargs)

    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.01), BatchLoader(train, 8, seed=0), epochs=2,
                      max_steps=6, progress=False, log=lambda line: None)
    monkeypatch.setattr(trainer_module, "train_step", spy)
    trainer.fit()
    expected = [nn.dynamic.dgc_pruned_channels(8, 0.5, t / 12) for t in range(12)]
    assert seen == expected and seen[0] == 0 and seen[-1] > 0
    assert model.state_dict()["dgc.pruned"] == seen[-1]  # the schedule state is a buffer: checkpoints keep it


def test_train_step_adds_the_layers_extra_loss():
    """train_step's loss is cross-entropy + the layers' extra loss (DGC: 1e-5 * its lasso), bit for bit."""
    train, _ = tiny_data()
    x, y = next(iter(BatchLoader(train, 8, shuffle=False, prefetch=False)))
    mc.manual_seed(0)
    model = TinyDGCNet().double()
    with mc.no_grad():
        logits = model(mc.tensor(x).double())
        expected = (nn.functional.cross_entropy(logits, y) + 1e-5 * model.dgc.lasso).item()
    plain = (nn.functional.cross_entropy(logits, y)).item()
    loss, _ = train_step(model, optim.SGD(model.parameters(), lr=0.0), mc.tensor(x).double(), y)
    assert loss == expected and loss != plain
