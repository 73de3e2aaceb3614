"""`minicoconv bench`: time layers, dynamic layers and whole models, ours against PyTorch CPU.

    minicoconv bench --layers [--batch-size 32] [--repeats 5] [--threads 2]
    minicoconv bench --dynamic [--experts 4]
    minicoconv bench --model resnet18 --conv coconv [--compare-torch] [--device cpu] [--profile]
    minicoconv bench --all [--conv-types static odconv dgc] [--json results.json]
    minicoconv bench --data-parallel 1 2 --model resnet18 --conv coconv --batch-size 128 [--sync-bn]

--dynamic prints two tables: CondConv/DY-CNN/CoConv, then ODConv and DGC (DGC's dense
eval form against its sparse inference form at keep 0.5 and 0.25, with MACs). --all
times every model with the paper's four conv types unless --conv-types names others
(MobileNetV2 has no DGC variant: it is skipped with a note).

PyTorch is compared whenever it is installed (--no-torch to skip, --compare-torch
to insist). Times are wall-clock ms, median and min of --repeats runs after
--warmup untimed ones; ratios use the min times of runs interleaved round-robin,
so that ours and PyTorch's see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..models import MODELS
from .plugins import add_plugin_argument, load_plugins

LAYER_COLUMNS = [("layer", "layer", "{}"), ("input", "input", "{}"), ("ms", "ms", "{:.2f}"),
                 ("min_ms", "min ms", "{:.2f}"), ("gflops", "GFLOP/s", "{:.1f}"),
                 ("torch_ms", "torch ms", "{:.2f}"), ("torch_min_ms", "torch min", "{:.2f}"),
                 ("torch_gflops", "torch GFLOP/s", "{:.1f}"), ("ratio", "ours/torch", "{:.2f}")]
DYNAMIC_COLUMNS = [("shape", "shape", "{}"), ("layer", "layer", "{}"), ("mode", "mode", "{}"),
                   ("ms", "ms", "{:.2f}"), ("min_ms", "min ms", "{:.2f}"), ("vs_static", "/static", "{:.2f}"),
                   ("target", "target", "<={:.2f}"), ("meets", "ok", "{}"), ("torch_ms", "torch ms", "{:.2f}"),
                   ("torch_min_ms", "torch min", "{:.2f}"), ("ratio", "ours/torch", "{:.2f}")]
BEYOND_COLUMNS = [("shape", "shape", "{}"), ("layer", "layer", "{}"), ("mode", "mode", "{}"), ("form", "form", "{}"),
                  ("ms", "ms", "{:.2f}"), ("min_ms", "min ms", "{:.2f}"), ("vs_static", "/static", "{:.2f}"),
                  ("mmacs", "MMAC/img", "{:.2f}"), ("vs_dense", "/dense", "{:.2f}"),
                  ("macs_vs_dense", "MACs/dense", "{:.2f}"), ("torch_ms", "torch ms", "{:.2f}"),
                  ("torch_min_ms", "torch min", "{:.2f}"), ("ratio", "ours/torch", "{:.2f}"), ("note", "note", "{}")]
MODEL_COLUMNS = [("model", "model", "{}"), ("conv", "conv", "{}"), ("params_m", "params", "{:.2f}M"),
                 ("train_ms", "train ms", "{:.0f}"), ("train_min_ms", "min", "{:.0f}"),
                 ("train_img_s", "img/s", "{:.1f}"), ("peak_mb", "peak MB", "{:.0f}"),
                 ("torch_train_ms", "torch ms", "{:.0f}"), ("torch_train_min_ms", "torch min", "{:.0f}"),
                 ("train_ratio", "ours/torch", "{:.2f}"), ("torch_tf32_train_min_ms", "torch tf32 min", "{:.0f}"),
                 ("tf32_ratio", "ours/tf32", "{:.2f}"), ("target", "target", "<={:.2f}"),
                 ("meets", "ok", "{}"), ("infer_ms", "infer ms", "{:.0f}"), ("infer_img_s", "img/s", "{:.1f}"),
                 ("torch_infer_ms", "torch infer", "{:.0f}"), ("infer_ratio", "ours/torch", "{:.2f}")]
PROFILE_COLUMNS = [("op", "op", "{}"), ("phase", "phase", "{}"), ("calls", "calls", "{}"),
                   ("ms", "ms", "{:.1f}"), ("percent", "%", "{:.1f}")]


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="time layers and models against PyTorch CPU",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to time (at least one)")
    what.add_argument("--layers", action="store_true",
                      help="ResNet18 3x3 convs per stage, MobileNetV2 depthwise convs, BN, pooling (fwd+bwd)")
    what.add_argument("--dynamic", action="store_true",
                      help="CondConv/DY-CNN/CoConv, then ODConv and DGC (dense and sparse inference), vs a "
                           "static conv of the same shape, training and inference")
    what.add_argument("--model", choices=sorted(MODELS), help="a full training step and fused inference")
    what.add_argument("--all", action="store_true",
                      help="every model with static, condconv, dycnn and coconv convs (or --conv-types), one table")
    what.add_argument("--data-parallel", type=int, nargs="+", metavar="K",
                      help="with --model: training step time over K MPI ranks (mpiexec) against one process at "
                           "the same global batch, speedup and scaling efficiency (needs the mpi extra)")
    p.add_argument("--sync-bn", action="store_true", help="with --data-parallel: BatchNorm over the global batch")
    p.add_argument("--conv", default="static", metavar="NAME",
                   help="conv type of --model (default static; every built-in type has a PyTorch reference)")
    p.add_argument("--conv-types", nargs="+", metavar="CONV",
                   help="with --all: the conv types to time (default the paper's four: static condconv dycnn "
                        "coconv)")
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5, help="timed runs; median and min are reported (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first; the first compiles (default 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for Numba and PyTorch (default: available cores)")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="threads for NumPy's BLAS (default: NumPy's, or the count set in the environment; "
                        "1 is faster on a busy machine)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or reference (default cpu)")
    torch_group = p.add_mutually_exclusive_group()
    torch_group.add_argument("--compare-torch", action="store_true",
                             help="time PyTorch too, fail if it is not installed (default: when installed)")
    torch_group.add_argument("--no-torch", action="store_true", help="do not time PyTorch")
    p.add_argument("--no-memory", action="store_true", help="skip the extra step that measures peak memory")
    p.add_argument("--profile", action="store_true",
                   help="with --model/--all: split one extra training step op by op")
    p.add_argument("--json", metavar="FILE", help="also save the machine and all rows as JSON")
    add_plugin_argument(p)
    p.set_defaults(run=run, parser=p)


def _fail(message: str) -> int:
    print(f"minicoconv bench: {message}", file=sys.stderr)
    return 1


def _load_torch(args):
    if args.no_torch:
        return None
    try:
        import torch
    except ImportError as e:
        if args.compare_torch:
            raise SystemExit("minicoconv bench: --compare-torch needs PyTorch "
                             "(pip install 'minicoconv[reference]')") from e
        return None
    return torch


def _table(rows: list[dict], columns) -> str:
    from ..bench.table import Column, format_table

    shown = [c for c in columns if not c[0].startswith("torch_tf32") and c[0] != "tf32_ratio"
             or any(r.get(c[0]) is not None for r in rows)]  # the TF32 columns only where PyTorch ran on CUDA
    return format_table(rows, [Column(*c) for c in shown])


def _progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def _make_setup(args, torch):
    """The Setup for our device and PyTorch's; raises with the backend's message if the device is unusable."""
    from ..backend import get_backend
    from ..bench import Setup

    backend = get_backend(args.device)
    if not backend.is_available():
        raise RuntimeError(f"device {args.device!r} is not available on this machine")
    torch_device = "cpu"
    torch_sync = None
    if torch is not None and args.device == "cuda":
        if torch.cuda.is_available():
            torch_device, torch_sync = "cuda", torch.cuda.synchronize
        else:
            print("minicoconv bench: PyTorch has no CUDA here: its times are on the CPU", file=sys.stderr)
    return Setup(device=args.device, torch=torch, torch_device=torch_device, repeats=args.repeats,
                 warmup=args.warmup, sync=getattr(backend, "synchronize", None), torch_sync=torch_sync)


def run(args: argparse.Namespace) -> int:
    from ..bench import bench_beyond, bench_dynamic, bench_layers, bench_model, peak_rss_bytes
    from ..bench.machine import available_cores, describe, numba_threading_layer, set_threads
    from ..bench.models import PAPER_CONVS, UNSUPPORTED

    load_plugins(args.parser, args.plugins, args.conv, *(args.conv_types or ()))
    if args.data_parallel:
        return run_data_parallel(args)
    if not (args.layers or args.dynamic or args.model or args.all):
        return _fail("choose what to time: --layers, --dynamic, --model M or --all")
    if args.model and args.all:
        return _fail("--model and --all exclude each other")
    if args.conv_types and not args.all:
        return _fail("--conv-types goes with --all (use --conv with --model)")
    if args.model and (args.model, args.conv) in UNSUPPORTED:
        return _fail(f"{args.model} with --conv {args.conv}: {UNSUPPORTED[args.model, args.conv]}")
    for name in ("batch_size", "repeats", "experts"):
        if getattr(args, name) < 1:
            return _fail(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        return _fail("--warmup must be >= 0")
    torch = _load_torch(args)
    threads = args.threads or available_cores()
    try:
        warnings = set_threads(threads, torch, args.blas_threads)
    except ValueError as e:
        return _fail(str(e))
    try:
        setup = _make_setup(args, torch)
    except Exception as e:  # the backend's own message says why the device cannot be used
        return _fail(str(e))

    machine = describe(torch, args.device)
    print("machine")
    for key, value in machine.items():
        print(f"  {key:<13} {value}")
    for w in warnings:
        print(f"  warning: {w}")
    print(f"  timing        batch {args.batch_size}, {args.warmup} warm-up + {args.repeats} timed runs each; "
          "ms = median, ratios from min times")
    results: dict = {"machine": machine, "options": {k: v for k, v in vars(args).items() if k != "run"}}

    if args.layers:
        rows = bench_layers(setup, args.batch_size, progress=_progress)
        results["layers"] = rows
        print(f"\nlayers: forward + backward, batch {args.batch_size} "
              "(conv GFLOP/s counts forward+backward as 3 x forward, forward = 2 x MACs; from min times)")
        print(_table(rows, LAYER_COLUMNS))
    if args.dynamic:
        rows = bench_dynamic(setup, args.batch_size, args.experts, progress=_progress)
        results["dynamic"] = rows
        print(f"\ndynamic layers: {args.experts} experts, batch {args.batch_size}, 3x3 padding 1; "
              "train = forward + backward, inference = eval + nn.fuse + no_grad")
        print("  /static = ours / our static conv of the same shape and mode; "
              "PyTorch: CondConv/DY-CNN as one grouped conv over the batch, CoConv as n convs + n BNs "
              "(inference: its fused form as one grouped conv)")
        print(_table(rows, DYNAMIC_COLUMNS))
        rows = bench_beyond(setup, args.batch_size, args.experts, progress=_progress)
        results["dynamic_beyond"] = rows
        print(f"\nODConv ({args.experts} kernels) and DGC (4 heads): train = forward + backward; inference: static "
              "eval, ODConv fused, DGC dense eval (zeroed channels convolved, as the original code) and sparse "
              "(nn.fuse: only the kept channels)")
        print("  /static = ours / our static conv of the same shape and mode; /dense and MACs/dense = DGC sparse / "
              "DGC dense eval; MMAC/img = millions of multiply-accumulates per image, routing included; DGC adds "
              "a BN + ReLU; PyTorch: interop/torch_beyond.py (no sparse DGC)")
        print(_table(rows, BEYOND_COLUMNS))
    if args.model or args.all:
        convs = tuple(dict.fromkeys(args.conv_types or PAPER_CONVS))
        combos = [(m, c) for m in sorted(MODELS) for c in convs] if args.all else [(args.model, args.conv)]
        for combo in [c for c in combos if c in UNSUPPORTED]:
            print(f"  note: skipped {combo[0]} {combo[1]}: {UNSUPPORTED[combo]}")
            combos.remove(combo)
        rows = []
        for i, (model, conv) in enumerate(combos, 1):
            row = bench_model(setup, model, conv, args.batch_size, args.experts, memory=not args.no_memory,
                              profile=args.profile)
            row["params_m"] = row["params"] / 1e6
            rows.append(row)
            theirs = row["torch_train_min_ms"]
            _progress(f"[{i}/{len(combos)}] {model} {conv}: train {row['train_min_ms']:.0f} ms"
                      + (f", torch {theirs:.0f} ms" if theirs else ""))
            if args.profile:
                print(f"\nprofile of one training step: {model} {conv}")
                print(_table(_profile_rows(row["profile"]), PROFILE_COLUMNS))
        results["models"] = rows
        print(f"\nmodels: training step (forward, cross-entropy, backward, SGD momentum 0.9 wd 5e-4) and fused "
              f"inference, batch {args.batch_size}, {args.experts} experts; img/s from min times; peak MB = NumPy "
              "memory allocated during one training step (tracemalloc); PyTorch's CoConv inference uses its fused "
              "form; DGC: training adds its lasso term, our inference is the sparse form, PyTorch's the dense one")
        print(_table(rows, MODEL_COLUMNS) if rows else "  (no model to time)")
    print(f"\npeak resident memory of this process: {peak_rss_bytes() / 2**20:.0f} MB; "
          f"numba threading layer: {numba_threading_layer()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
        print(f"rows saved to {args.json}")
    return 0


DATA_PARALLEL_COLUMNS = [("ranks", "ranks", "{}"), ("batch", "global batch", "{}"), ("step_ms", "step ms", "{:.0f}"),
                         ("min_ms", "min", "{:.0f}"), ("img_s", "img/s", "{:.1f}"),
                         ("allreduce_ms", "allreduce ms", "{:.1f}"), ("allreduce_pct", "allreduce %", "{:.1f}"),
                         ("speedup", "speedup", "{:.2f}"), ("efficiency", "efficiency", "{:.2f}")]


def run_data_parallel(args: argparse.Namespace) -> int:
    """--data-parallel K...: one timing job per K (see minicoconv.bench.data_parallel)."""
    from ..bench.data_parallel import run_scaling
    from ..bench.machine import describe

    if not args.model or args.all or args.layers or args.dynamic:
        return _fail("--data-parallel times one model: give --model M (and no --all/--layers/--dynamic)")
    if any(k < 1 for k in args.data_parallel):
        return _fail("--data-parallel: rank counts must be >= 1")
    for name in ("batch_size", "repeats", "experts"):
        if getattr(args, name) < 1:
            return _fail(f"--{name.replace('_', '-')} must be >= 1")
    if args.batch_size < max(args.data_parallel):
        return _fail(f"--batch-size {args.batch_size} is smaller than {max(args.data_parallel)} ranks")
    try:
        rows = run_scaling(args.data_parallel, args.model, args.conv, args.experts, args.batch_size, args.warmup,
                           args.repeats, sync_bn=args.sync_bn, device=args.device, progress=_progress)
    except RuntimeError as e:
        return _fail(str(e))
    machine = describe(None, args.device)
    print("machine")
    for key, value in machine.items():
        print(f"  {key:<13} {value}")
    print(f"\ndata-parallel training step: {args.model} {args.conv}, global batch {args.batch_size} split over K "
          f"ranks, {args.warmup} warm-up + {args.repeats} timed steps, median; speedup = T_1 / T_K, efficiency = "
          f"speedup / K; BatchNorm {'over the global batch (--sync-bn)' if args.sync_bn else 'per rank'}")
    print(_table(rows, DATA_PARALLEL_COLUMNS))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "data_parallel": rows}, f, indent=1, default=str)
        print(f"rows saved to {args.json}")
    return 0


def _profile_rows(profile: list[dict], top: int = 15) -> list[dict]:
    rows = [dict(r, ms=r["seconds"] * 1e3, percent=100 * r["share"]) for r in profile]
    shown = [r for r in rows if r["op"] != "(outside ops)"][:top]
    rest = rows[top:-1] if len(rows) > top + 1 else []
    if rest:
        shown.append({"op": f"({len(rest)} other ops)", "phase": "-", "calls": sum(r["calls"] for r in rest),
                      "ms": sum(r["ms"] for r in rest), "percent": sum(r["percent"] for r in rest)})
    shown.append(rows[-1])
    return shown
