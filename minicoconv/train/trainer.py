"""The training loop: one step, one epoch, evaluation, checkpoints and exact resume.

    trainer = Trainer.from_config(TrainConfig(model="resnet18", conv="static", synthetic=True, epochs=3))
    result = trainer.fit()              # trains, evaluates, writes RUN_DIR/{metrics.jsonl,last.npz,best.npz}

Everything that decides what the next step computes is saved state: the
weights and BN statistics, the momentum buffers, the learning-rate schedule,
the global generator (dropout), and the loader's (seed, epoch, batch), from
which the data order and the augmentation follow. So a run resumed from
last.npz produces bit-identical weights to one that was never stopped.

Ctrl-C: the first one lets the current step finish, then last.npz is written
(the state after the last completed step) and `fit` returns with
`interrupted=True`; a second Ctrl-C stops at once. A non-finite loss stops the
run with `TrainingDiverged` before the bad step is applied, and no checkpoint
is overwritten.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..nn.dynamic.hooks import TrainingProgress, training_progress
from ..tensor import Tensor
from .atomic import atomic_write, remove_stale_temporaries
from .checkpoint import Checkpoint, CheckpointError, copy_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .metrics import MetricsWriter, RunningMean, topk_correct
from .resume_state import check_trainer_state
from .step import TrainingDiverged, evaluate, nonfinite_parameters, train_step


@dataclass
class FitResult:
    """What `Trainer.fit` returns: per-epoch records, the final and the best-by-validation one."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    interrupted: bool = False

    @property
    def final(self) -> dict[str, Any] | None:
        return self.history[-1] if self.history else None


class Trainer:
    """Trains `model` for `epochs` epochs, evaluating on val (if any) and test after each.

    The test set is reported but never used to choose anything: the best epoch
    is the one with the best validation top-1, or the last epoch without a
    validation set. With `out_dir`, writes metrics.jsonl, config.json (with a
    config), last.npz and best.npz there.

    Args:
        model, optimizer, scheduler: a Module, an SGD, a StepLR (stepped once per epoch) or None.
        train_loader: a BatchLoader (anything with seed, set_epoch, len and iter).
        val_loader, test_loader: BatchLoaders in order without augmentation, or None.
        epochs: train until this many epochs are done; max_steps: at most this many steps per epoch.
        out_dir: the run folder, or None to write nothing; config: the run's TrainConfig, if any.
        synthetic: label results as synthetic (default: the training set's own flag).
        progress: a tqdm bar per epoch (default: when stderr is a terminal); log: where lines go.
        on_step: called as on_step(trainer) after every completed step.
    """

    def __init__(self, model, optimizer, train_loader, *, scheduler=None, val_loader=None, test_loader=None,
                 epochs: int = 1, max_steps: int | None = None, out_dir=None, config: TrainConfig | None = None,
                 synthetic: bool | None = None, device: str = "cpu",
                 progress: bool | None = None, log: Callable[[str], Any] = print,
                 on_step: Callable[[Trainer], Any] | None = None):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.train_loader, self.val_loader, self.test_loader = train_loader, val_loader, test_loader
        self.dataset = getattr(train_loader, "dataset", None)
        if synthetic is None:  # labelled by the data set itself
            synthetic = bool(getattr(self.dataset, "synthetic", False))
        self.epochs, self.config, self.synthetic = epochs, config, synthetic
        _check_last_batch(model, train_loader)
        self.steps_per_epoch = len(train_loader) if max_steps is None else min(len(train_loader), max_steps)
        if self.steps_per_epoch < 1:  # an epoch of no steps would report a loss of nothing as "nan"
            raise ValueError(f"the training loader yields no batches ({len(train_loader)} per epoch, max_steps "
                             f"{max_steps}): is the training set empty?")
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device, self.log, self.on_step = device, log, on_step
        self.progress = _tqdm_available() and (sys.stderr.isatty() if progress is None else progress)
        # where the run stands (all of it saved in checkpoints)
        self.epoch = 0                 # completed epochs
        self.step_in_epoch = 0         # completed steps of the epoch in progress
        self.global_step = 0           # optimizer steps since the start of the run
        self.train_loss, self.train_correct = RunningMean(), RunningMean()  # of the epoch in progress
        self.train_seconds = 0.0       # time spent in training steps in the epoch in progress
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        # Ctrl-C handling
        self._stop_requested = False
        self._consistent = True        # False while a step or the end-of-epoch update is half done

    # ---- construction from a config --------------------------------------------------
    @classmethod
    def from_config(cls, cfg: TrainConfig, *, datasets: tuple | None = None, out_dir=...,
                    progress: bool | None = None, log: Callable[[str], Any] = print,
                    on_step: Callable[[Trainer], Any] | None = None) -> Trainer:
        """Build data, model, optimizer and loaders from `cfg`.

        datasets: (train, val or None, test) to use as given instead of loading them.
        out_dir: defaults to cfg.run_dir(); None writes nothing.
        """
        from .prepare import build_model, build_optimizer, check_batch_floor, check_device, load_datasets, make_loaders

        cfg.validate()
        check_device(cfg.device)
        train, val, test = datasets if datasets is not None else load_datasets(cfg, log=log)
        model = build_model(cfg)
        min_batch = check_batch_floor(cfg, model, len(train))
        optimizer, scheduler = build_optimizer(cfg, model)
        train_loader, val_loader, test_loader = make_loaders(cfg, train, val, test, min_batch)
        return cls(model, optimizer, train_loader, scheduler=scheduler, val_loader=val_loader,
                   test_loader=test_loader, epochs=cfg.epochs, max_steps=cfg.max_steps,
                   out_dir=cfg.run_dir() if out_dir is ... else out_dir, config=cfg, synthetic=train.synthetic,
                   device=cfg.device,
                   progress=progress, log=log, on_step=on_step)

    # ---- the loop ----------------------------------------------------------------------
    def fit(self) -> FitResult:
        """Train the remaining epochs; returns the history and the best epoch (see FitResult)."""
        self._start_run()
        try:
            with self._ctrl_c_finishes_the_step():
                while self.epoch < self.epochs:
                    self.train_epoch()
                    start = time.perf_counter()
                    val, test = self._evaluate(self.val_loader), self._evaluate(self.test_loader)
                    self.end_epoch(val, test, eval_seconds=time.perf_counter() - start)
        except KeyboardInterrupt:
            self._save_on_interrupt()
            return FitResult(list(self.history), self.best, interrupted=True)
        self._report_end()
        return FitResult(list(self.history), self.best)

    def _evaluate(self, loader) -> dict[str, float] | None:
        """evaluate() on `loader`; TrainingDiverged (nothing saved) if any output is NaN/inf."""
        if loader is None:
            return None
        result = evaluate(self.model, loader, self.device, self._stopping)
        if result["nonfinite"]:
            name = getattr(loader.dataset, "name", "evaluation")
            message = (f"training diverged: after epoch {self.epoch + 1} the model's outputs are NaN/inf for "
                       f"{result['nonfinite']} of {result['n']} {name} images; this epoch was not saved.")
            last = self.out_dir / "last.npz" if self.out_dir is not None else None
            if last is not None and last.exists():
                message += f" The last good checkpoint, {last} (epoch {self.epoch}), was kept."
            raise TrainingDiverged(message + " Try a smaller --lr.")
        return result

    def train_epoch(self) -> None:
        """Run the remaining steps of epoch `self.epoch` (all of them, unless resumed mid-epoch)."""
        steps = self.steps_per_epoch
        if self.step_in_epoch >= steps:
            return
        self.train_loader.set_epoch(self.epoch)   # the data order and augmentation of this epoch
        batches = iter(self.train_loader)
        bar = self._progress_bar()
        try:
            for _ in range(self.step_in_epoch):   # resumed mid-epoch: skip the batches already trained on
                next(batches)
            while self.step_in_epoch < steps:
                x, y = next(batches)
                self._consistent = False
                start = time.perf_counter()
                self.apply_schedules()
                try:
                    loss, correct, n = self._train_batch(x, y)
                except TrainingDiverged as e:
                    raise TrainingDiverged(self._diverged_message(e)) from None
                self.train_seconds += time.perf_counter() - start
                self.train_loss.update(loss, n)
                self.train_correct.update(correct / n, n)
                self.step_in_epoch += 1
                self.global_step += 1
                self._consistent = True
                if bar is not None:
                    bar.set_postfix_str(f"loss {self.train_loss.mean:.3f} acc {100 * self.train_correct.mean:.1f}% "
                                        f"{_rate(self.train_correct.count / self.train_seconds)} img/s",
                                        refresh=False)
                    bar.update(1)
                if self.on_step is not None:
                    self.on_step(self)
                if self._stopping():
                    raise KeyboardInterrupt
        finally:
            if bar is not None:
                bar.close()
            if hasattr(batches, "close"):
                batches.close()  # stops the prefetch thread

    def _train_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int, int]:
        """One step on batch (x, y): (mean loss, top-1 correct, images) of the batch (data-parallel: overridden)."""
        loss, logits = train_step(self.model, self.optimizer, Tensor(x, device=self.device), y)
        return loss, topk_correct(logits, y, (1,))[0], len(y)

    def apply_schedules(self) -> None:
        """Tell every layer where the run stands before a step (its `on_training_progress` hook, if any)."""
        training_progress(self.model, TrainingProgress(self.epoch, self.step_in_epoch, self.global_step,
                                                       self.steps_per_epoch, self.epochs))

    def end_epoch(self, val: dict | None, test: dict | None, eval_seconds: float = 0.0) -> dict[str, Any]:
        """Record the finished epoch, step the lr schedule, save last.npz (and best.npz)."""
        self._consistent = False
        lr = self.optimizer.param_groups[0]["lr"]
        record = {
            "epoch": self.epoch + 1, "lr": lr, "global_step": self.global_step,
            "train_loss": self.train_loss.mean, "train_top1": 100 * self.train_correct.mean,
            "val_top1": _get(val, "top1"), "val_top5": _get(val, "top5"), "val_loss": _get(val, "loss"),
            "test_top1": _get(test, "top1"), "test_top5": _get(test, "top5"), "test_loss": _get(test, "loss"),
            "images_per_s": self.train_correct.count / max(self.train_seconds, 1e-9),
            "train_seconds": self.train_seconds, "seconds": self.train_seconds + eval_seconds,
            "synthetic": self.synthetic,
        }
        routing = self._routing_record()
        if routing:
            record["routing"] = routing
        if self.scheduler is not None:
            self.scheduler.step()
        self.epoch += 1
        self.step_in_epoch = 0
        self.train_loss, self.train_correct, self.train_seconds = RunningMean(), RunningMean(), 0.0
        self.history.append(record)
        is_best = val is None or self.best is None or val["top1"] > self.best["val_top1"]
        if is_best:
            self.best = record
        self._consistent = True
        self.log(_epoch_line(record, self.epochs, is_best and val is not None))
        if self.out_dir is not None:
            self.save(self.out_dir / "last.npz")
            if is_best:
                copy_checkpoint(self.out_dir / "last.npz", self.out_dir / "best.npz")
            MetricsWriter(self.out_dir / "metrics.jsonl").write(record)
        return record

    def _routing_record(self) -> dict | None:
        """Routing entropy, saturation and usage per dynamic layer on 64 fixed training images (eval mode,
        no gradients, no random numbers drawn: logging it changes nothing in the run); None without routing."""
        from ..diagnostics import epoch_summary, routed_layers

        if self.dataset is None or not routed_layers(self.model):
            return None
        if getattr(self, "_probe", None) is None:
            from ..data import BatchLoader

            first = BatchLoader(self.dataset, 64, shuffle=False, prefetch=False)
            self._probe = next(iter(first))[0]
        return epoch_summary(self.model, self._probe, self.device)

    # ---- checkpoints -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The trainer's own state (beyond model, optimizer, scheduler, RNG), as JSON-able values."""
        return {"step_in_epoch": self.step_in_epoch, "steps_per_epoch": self.steps_per_epoch,
                "train_loss": self.train_loss.state_dict(), "train_correct": self.train_correct.state_dict(),
                "train_seconds": self.train_seconds, "history": self.history, "best": self.best,
                "synthetic": self.synthetic}

    def save(self, path) -> Path:
        """Write a checkpoint of the whole run state to `path` (atomically)."""
        bad = nonfinite_parameters(self.model)
        if bad:
            raise TrainingDiverged(f"parameters {', '.join(bad[:3])} hold NaN/inf: not saving {path}")
        loader = {"seed": self.train_loader.seed, "epoch": self.epoch, "batch": self.step_in_epoch}
        return save_checkpoint(path, self.model, self.optimizer, self.scheduler, epoch=self.epoch,
                               global_step=self.global_step, loader=loader, trainer=self.state(),
                               config=self.config.to_dict() if self.config is not None else None)

    def resume(self, path=None) -> Checkpoint:
        """Continue from a checkpoint (default: out_dir/last.npz) exactly where it stopped."""
        if path is None:
            if self.out_dir is None:
                raise ValueError("resume: give a checkpoint path (this trainer has no out_dir)")
            path = self.out_dir / "last.npz"
        ckpt = load_checkpoint(path)
        state = check_trainer_state(ckpt.path, ckpt.trainer, ckpt.loader)
        if ckpt.loader.get("seed") != self.train_loader.seed:
            raise CheckpointError(f"{path}: saved with loader seed {ckpt.loader.get('seed')}, this trainer's "
                                  f"loader has seed {self.train_loader.seed}: the data order would differ")
        if state.get("step_in_epoch") and state.get("steps_per_epoch") != self.steps_per_epoch:
            raise CheckpointError(f"{path}: stopped mid-epoch with {state.get('steps_per_epoch')} steps per "
                                  f"epoch, this trainer has {self.steps_per_epoch}: cannot continue that epoch")
        ckpt.restore(self.model, self.optimizer, self.scheduler)
        self.epoch, self.global_step = ckpt.epoch, ckpt.global_step
        self.step_in_epoch = state["step_in_epoch"]
        self.train_loss = RunningMean.from_state(state["train_loss"])
        self.train_correct = RunningMean.from_state(state["train_correct"])
        self.train_seconds = float(state["train_seconds"])
        self.history, self.best = list(state["history"]), state.get("best")
        where = f"epoch {self.epoch + 1}, step {self.step_in_epoch}" if self.step_in_epoch else \
            f"the end of epoch {self.epoch}"
        self.log(f"resumed from {path} at {where} (global step {self.global_step})")
        if self.out_dir is not None:  # the checkpoint's history is the record of the finished epochs
            MetricsWriter(self.out_dir / "metrics.jsonl").rewrite(self.history)
        return ckpt

    # ---- Ctrl-C, divergence, reporting -----------------------------------------------------
    @contextlib.contextmanager
    def _ctrl_c_finishes_the_step(self) -> Iterator[None]:
        """While training, the first Ctrl-C only asks to stop after the current step (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._stop_requested:  # the second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._stop_requested = True
            print("\nCtrl-C: finishing the current step, then saving (press Ctrl-C again to stop at once)",
                  file=sys.stderr, flush=True)

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            self._stop_requested = False

    def _stopping(self) -> bool:
        return self._stop_requested

    def _save_on_interrupt(self) -> None:
        where = f"epoch {self.epoch + 1}, step {self.step_in_epoch}/{self.steps_per_epoch}"
        if self.out_dir is None:
            self.log(f"Interrupted at {where}; no out_dir, so nothing was saved.")
            return
        last = self.out_dir / "last.npz"
        if self._consistent:
            self.save(last)
            self.log(f"Interrupted at {where}: saved {last} (the state after the last completed step).")
        else:
            kept = f"kept the previous {last}" if last.exists() else "no checkpoint has been written yet"
            self.log(f"Interrupted in the middle of a step at {where}: the model was half-updated, so it was not "
                     f"saved ({kept}).")
            if not last.exists():
                return
        self.log(f"Resume with: {self._resume_hint()}")

    def _resume_hint(self) -> str:
        if self.config is not None:
            return f"minicoconv train --out {self.out_dir} --resume"
        return f"trainer.resume('{self.out_dir / 'last.npz'}'); trainer.fit()"

    def _diverged_message(self, error: Exception) -> str:
        message = (f"training diverged: {error} at epoch {self.epoch + 1}, step {self.step_in_epoch + 1}/"
                   f"{self.steps_per_epoch} (global step {self.global_step + 1}); stopped before applying it.")
        last = self.out_dir / "last.npz" if self.out_dir is not None else None
        if last is not None and last.exists():
            message += f" The last good checkpoint, {last} (epoch {self.epoch}), was kept."
        return message + " Try a smaller --lr."

    def _start_run(self) -> None:
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            stale = remove_stale_temporaries(self.out_dir)
            if stale:
                self.log(f"removed {len(stale)} temporary file(s) that an interrupted write left in {self.out_dir}")
            if self.config is not None:
                text = self.config.to_json() + "\n"
                atomic_write(self.out_dir / "config.json", lambda f: f.write(text.encode("utf-8")))
        data = getattr(self.dataset, "name", "the training set")
        if self.dataset is not None:
            data += f" ({len(self.dataset)} images{', SYNTHETIC' if self.synthetic else ''})"
        self.log(f"training {self.epochs - self.epoch} epoch(s) of {self.steps_per_epoch} steps on {data}"
                 + (f"; run folder {self.out_dir}" if self.out_dir is not None else ""))
        dropped = getattr(self.train_loader, "dropped_last", 0)
        if dropped:
            _, who = self.model.training_batch_floor()
            images = f"{dropped} image{'s' * (dropped > 1)}"
            self.log(f"the last batch of each epoch ({images}) is skipped: {who} needs at least "
                     f"{self.train_loader.min_batch} images per training batch")
        if self.val_loader is None and self.epoch < self.epochs:
            self.log("no validation split (--val-split N): best.npz will be the last epoch's checkpoint; "
                     "the test set is never used to choose")

    def _report_end(self) -> None:
        final, best = (self.history[-1] if self.history else None), self.best
        if final is None:
            return
        tag = " [synthetic data]" if self.synthetic else ""
        self.log(f"final (epoch {final['epoch']}): test top-1 {_pct(final['test_top1'])}, "
                 f"top-5 {_pct(final['test_top5'])}{tag}")
        if best is not None and best.get("val_top1") is not None:
            self.log(f"best by validation (epoch {best['epoch']}, val top-1 {_pct(best['val_top1'])}): "
                     f"test top-1 {_pct(best['test_top1'])}, top-5 {_pct(best['test_top5'])}{tag}")
        else:
            self.log("best: no validation split, so best = last (epoch "
                     f"{final['epoch']}): test top-1 {_pct(final['test_top1'])}{tag}")

    def _progress_bar(self):
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, desc=f"epoch {self.epoch + 1}/"
                    f"{self.epochs}", unit="step", leave=False, file=sys.stderr, dynamic_ncols=True)


def _check_last_batch(model, loader) -> None:
    """ValueError, before any step, when a training batch of `loader` is too small for `model`."""
    need, who = model.training_batch_floor()
    batch, n = getattr(loader, "batch_size", None), len(getattr(loader, "dataset", ()))
    if need < 2 or batch is None or not n:
        return
    smallest = min(batch, n) if len(loader) * batch <= n else n - (len(loader) - 1) * batch
    if smallest < need:
        raise ValueError(f"{who} needs at least {need} images per training batch, and the loader yields a batch of "
                         f"{smallest}: use a larger batch size, or BatchLoader(..., min_batch={need}) to skip a "
                         "last batch that small")


def _tqdm_available() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def _get(d: dict | None, key: str):
    return None if d is None else d[key]


def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.2f}%"


def _epoch_line(r: dict[str, Any], epochs: int, best: bool) -> str:
    parts = [f"epoch {r['epoch']}/{epochs}", f"lr {r['lr']:.4g}",
             f"train loss {r['train_loss']:.4f} top-1 {r['train_top1']:.2f}%"]
    if r["val_top1"] is not None:
        parts.append(f"val top-1 {r['val_top1']:.2f}% top-5 {r['val_top5']:.2f}%" + (" (best)" if best else ""))
    if r["test_top1"] is not None:
        parts.append(f"test top-1 {r['test_top1']:.2f}% top-5 {r['test_top5']:.2f}%")
    parts.append(f"{_rate(r['images_per_s'])} img/s, {r['seconds']:.1f} s")
    return " | ".join(parts) + (" [synthetic]" if r["synthetic"] else "")
