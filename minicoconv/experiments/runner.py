"""Running a grid on this machine: N runs at a time, finished runs skipped, cut ones resumed.

Each run is `python -m minicoconv.cli.main train ... --no-progress` in its own process,
its output appended to RUN/train.log. A run's state comes from its folder:

    done      metrics.jsonl reaches the configured epochs      -> skipped
    partial   last.npz exists, fewer epochs                    -> resumed (--resume)
    new       no last.npz                                      -> started

With N runs at a time each gets cores // N Numba threads (NUMBA_NUM_THREADS, unless the
environment already sets it). Ctrl-C reaches the runs, which save their last finished
step (minicoconv train's own handling); running the grid again resumes them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .cells import Run
from .runs import RunError, read_run

POLL_SECONDS = 0.2


def run_state(run: Run) -> str:
    """'done', 'partial' or 'new' (see the module docstring)."""
    if not (run.out / "last.npz").is_file():
        return "new"
    try:
        record = read_run(run.out)
    except RunError:
        return "partial"  # train --resume reads the checkpoint itself and says what is wrong
    return "done" if record.epochs_done >= run.config.epochs else "partial"


def train_argv(run: Run, state: str) -> list[str]:
    """The command line that starts (or resumes) `run` in a subprocess."""
    argv = [sys.executable, "-m", "minicoconv.cli.main", "train", *run.argv, "--no-progress"]
    return argv + (["--resume"] if state == "partial" else [])


def run_grid(runs: list[Run], jobs: int, log: Callable[[str], object] = print) -> int:
    """Run every unfinished run, `jobs` at a time. Returns 0 all done, 1 some failed, 130 interrupted."""
    todo = []
    for run in runs:
        state = run_state(run)
        if state == "done":
            log(f"done      {run.out}")
        else:
            todo.append((run, state))
    env = dict(os.environ)
    env.setdefault("NUMBA_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    running: dict[subprocess.Popen, tuple[Run, float]] = {}
    failed, finished, total = [], 0, len(todo)
    try:
        while todo or running:
            while todo and len(running) < jobs:
                run, state = todo.pop(0)
                running[_start(run, state, env)] = (run, time.perf_counter())
                log(f"{'resuming' if state == 'partial' else 'starting':<9} {run.out}")
            for proc in [p for p in running if p.poll() is not None]:
                run, start = running.pop(proc)
                finished += 1
                ok = proc.returncode == 0
                if not ok:
                    failed.append(run)
                log(f"[{finished}/{total}] {'finished' if ok else f'FAILED (exit {proc.returncode})'} {run.out} "
                    f"in {time.perf_counter() - start:.0f} s" + ("" if ok else f"; see {run.out / 'train.log'}"))
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        for proc in running:  # a terminal's Ctrl-C reached them already; a signal sent to us alone did not
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in running:
            proc.wait()
        log("interrupted: the runs saved where they stopped; run the same grid command again to resume them")
        return 130
    if failed:
        log(f"{len(failed)} run(s) failed: " + ", ".join(str(r.out) for r in failed))
        return 1
    return 0


def _start(run: Run, state: str, env: dict) -> subprocess.Popen:
    run.out.mkdir(parents=True, exist_ok=True)
    stale = run.out / "metrics.jsonl"
    if state == "new" and stale.exists():  # epochs of an attempt that saved no checkpoint: it starts over
        stale.unlink()
    log_file: Path = run.out / "train.log"
    with open(log_file, "ab") as out:
        return subprocess.Popen(train_argv(run, state), stdout=out, stderr=subprocess.STDOUT, env=env)
