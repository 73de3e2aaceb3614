"""Step time and scaling efficiency of data-parallel training: K ranks against one process.

    minicoconv bench --data-parallel 1 2 --model resnet18 --conv coconv --batch-size 128

For each K, a fresh job (`mpiexec -n K python -m minicoconv.bench.data_parallel ...`; K = 1
is a plain process, the engine as `train` runs it without MPI) times `repeats` training
steps at the same global batch B after `warmup` untimed ones. Strong scaling, so

    speedup S_K = T_1 / T_K,   efficiency E_K = S_K / K = T_1 / (K T_K)

with T the median step time; E_K = 1 is perfect. `allreduce %` is the share of a step
spent in the gradient allreduce (packing, reduction, unpacking), rank 0's clock. The
batch is synthetic and the same every step, so the times are the engine's alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

RESULT_TAG = "DATA_PARALLEL_RESULT "


def find_mpiexec() -> str | None:
    """The mpiexec beside this Python (the `mpi` extra's MPICH wheel puts it there), else the one on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "mpiexec"
    if beside.is_file():
        return str(beside)
    return shutil.which("mpiexec")


def worker(model: str, conv: str, experts: int, batch: int, warmup: int, repeats: int, sync_bn: bool,
           device: str = "cpu") -> dict | None:
    """Time `repeats` steps of this rank (or of the one process); the result on rank 0, None elsewhere."""
    from .. import models, optim
    from .. import random as mc_random
    from ..distributed import launched_by_mpi
    from ..tensor import Tensor
    from ..train.step import train_step

    world = None
    if launched_by_mpi():
        from ..distributed.placement import select_local_gpu, share_cores
        from ..distributed.world import World

        world = World()
        share_cores(world.local_size)
        if device == "cuda":
            select_local_gpu(world.local_rank)
    mc_random.manual_seed(0)
    net = models.build(model, conv=conv, experts=experts, num_classes=100)
    if device != "cpu":
        net.to(device)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 100, batch)
    if world is None:
        opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        images = Tensor(x, device=device)

        def step() -> None:
            train_step(net, opt, images, y)

        gradients = None
    else:
        from ..distributed.gradients import GradientAllreduce
        from ..distributed.sharding import shard_bounds
        from ..distributed.sync_batchnorm import convert_sync_batchnorm
        from ..distributed.trainer import data_parallel_step

        if sync_bn:
            convert_sync_batchnorm(net, world)
        opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        gradients = GradientAllreduce(net.parameters(), world)
        lo, hi = shard_bounds(batch, world.rank, world.size)
        images = Tensor(x[lo:hi], device=device)

        def step() -> None:
            data_parallel_step(net, opt, gradients, images, y[lo:hi], (lo, hi, batch))

    times, reduce_times = [], []
    for i in range(warmup + repeats):
        if world is not None:
            world.barrier()  # every rank starts the step together
        before = gradients.seconds if gradients is not None else 0.0
        start = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
            reduce_times.append(gradients.seconds - before if gradients is not None else 0.0)
    if world is not None and not world.is_root:
        return None
    return {"ranks": 1 if world is None else world.size, "batch": batch, "step_ms": 1e3 * float(np.median(times)),
            "min_ms": 1e3 * min(times), "allreduce_ms": 1e3 * float(np.median(reduce_times)),
            "params": sum(p.numel() for p in net.parameters())}


def run_scaling(ranks: list[int], model: str, conv: str, experts: int, batch: int, warmup: int, repeats: int,
                sync_bn: bool = False, device: str = "cpu", timeout: float | None = None,
                progress=lambda message: None) -> list[dict]:
    """One job per K in `ranks`; rows with step time, speedup and efficiency against K = 1 (which is added)."""
    ks = sorted(set([1, *ranks]))
    mpiexec = find_mpiexec()
    if any(k > 1 for k in ks) and mpiexec is None:
        raise RuntimeError('no mpiexec found: install the MPI extra (pip install "minicoconv[mpi]")')
    rows = []
    for k in ks:
        cmd = [sys.executable, "-m", "minicoconv.bench.data_parallel", "--model", model, "--conv", conv,
               "--experts", str(experts), "--batch-size", str(batch), "--warmup", str(warmup), "--repeats",
               str(repeats), "--device", device] + (["--sync-bn"] if sync_bn else [])
        if k > 1:
            cmd = [mpiexec, "-n", str(k), *cmd]
        progress(f"{k} rank(s): {' '.join(cmd)}")
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_TAG)]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"the {k}-rank job failed (status {done.returncode}):\n{done.stderr[-3000:]}")
        rows.append(json.loads(lines[-1][len(RESULT_TAG):]))
    base = rows[0]["step_ms"]
    for row in rows:
        row["speedup"] = base / row["step_ms"]
        row["efficiency"] = row["speedup"] / row["ranks"]
        row["allreduce_pct"] = 100 * row["allreduce_ms"] / row["step_ms"]
        row["img_s"] = 1e3 * row["batch"] / row["step_ms"]
    return rows


def main(argv: list[str] | None = None) -> int:
    """The worker's command line (run by run_scaling on every rank)."""
    p = argparse.ArgumentParser(description="one data-parallel timing job (see minicoconv bench --data-parallel)")
    p.add_argument("--model", required=True)
    p.add_argument("--conv", default="static")
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--sync-bn", action="store_true")
    a = p.parse_args(argv)
    result = worker(a.model, a.conv, a.experts, a.batch_size, a.warmup, a.repeats, a.sync_bn, a.device)
    if result is not None:
        print(RESULT_TAG + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    from ..distributed import launched_by_mpi

    if launched_by_mpi():
        from ..distributed.launch import run_under_mpi

        sys.exit(run_under_mpi(lambda args, world: main(), argparse.Namespace()))
    sys.exit(main())
