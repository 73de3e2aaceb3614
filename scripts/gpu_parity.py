"""Check the CUDA backend on a real GPU at real sizes, against the CPU backend and NumPy.

    python scripts/gpu_parity.py [--json FILE] [--batch 16] [--big-batch 128] [--quick]

The `cuda`-marked tests use tiny shapes (they also run under the simulator); the paths
only real sizes reach are checked here: GEMMs over many tiles with transposed operands
(cuBLAS and the tiled kernel), block reductions over thousands of elements, softmax
rows, expert mixing on 16x16 maps, and one training step (float64, then float32) of every model on both
backends (loss, logits and every parameter's gradient), ResNet18-CoConv at batch 128.
Errors are max-normalised: max|cuda - cpu| / max|cpu|. Each check prints one line;
the exit status is 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

import numpy as np

import minicoconv as mc
from minicoconv import models
from minicoconv.nn import functional as F
from minicoconv.optim import SGD

F32_TOL = 1e-4  # float32 rounding of sums over thousands of terms, accumulated in another order
GRAD_TOL = 2e-3  # gradients: the same, compounded through ~20 layers of backward
F64_TOL = 1e-9  # float64 steps: rounding near 1e-15, times the conditioning of BN's backward
RESULTS: list[dict] = []
DEVICE = {"name": "cuda"}  # --device cpu: a dry run of this script itself, cpu against cpu


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    want = np.asarray(want, np.float64)
    scale = max(float(np.max(np.abs(want))), 1e-30) if want.size else 1.0
    return float(np.max(np.abs(np.asarray(got, np.float64) - want))) / scale if want.size else 0.0


def check(name: str, err: float, tol: float, **extra) -> None:
    ok = bool(np.isfinite(err) and err <= tol)
    RESULTS.append({"check": name, "err": err, "tol": tol, "ok": ok, **extra})
    print(f"{'PASS' if ok else 'FAIL'}  {name:<58} err {err:.2e} (tol {tol:.0e})"
          + "".join(f"  {k}={v}" for k, v in extra.items()), flush=True)


def section(fn):
    """Run one group of checks; an exception is a failed check with its traceback, the others still run."""
    def run(*args):
        start = time.perf_counter()
        try:
            fn(*args)
        except Exception as e:
            traceback.print_exc()
            RESULTS.append({"check": fn.__name__, "ok": False, "error": repr(e)})
            print(f"FAIL  {fn.__name__}: {e!r}", flush=True)
        print(f"      ({fn.__name__}: {time.perf_counter() - start:.1f} s)", flush=True)
    return run


@section
def smoke():
    if DEVICE["name"] != "cuda":
        return
    from numba import cuda

    @cuda.jit
    def add_one(a):
        i = cuda.grid(1)
        if i < a.size:
            a[i] += 1

    a = cuda.to_device(np.arange(1000, dtype=np.float32))
    add_one[4, 256](a)
    check("3-line kernel", rel_err(a.copy_to_host(), np.arange(1000) + 1), 0)


@section
def gemms():
    if DEVICE["name"] != "cuda":
        return
    from minicoconv.backend.cuda import linalg

    be = mc.backend.get_backend(DEVICE["name"])
    rng = np.random.default_rng(0)
    print(f"      gemm engine available: {linalg.gemm_engine()}", flush=True)
    cases = [((1024, 777), (777, 513)), ((8, 300, 200), (200, 100)), ((4, 1, 257, 3000), (3, 3000, 129))]
    for engine in ("cublas", "tiled"):
        old = linalg.set_gemm_engine(engine)
        try:
            for sa, sb in cases:
                for dtype in (np.float32, np.float64):
                    a, b = rng.standard_normal(sa).astype(dtype), rng.standard_normal(sb).astype(dtype)
                    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
                    got = be.to_numpy(be.matmul(be.asarray(a), be.asarray(b)))
                    tol = F32_TOL if dtype == np.float32 else 1e-12
                    check(f"matmul {engine} {sa}@{sb} {np.dtype(dtype).name}", rel_err(got, want), tol)
                at = rng.standard_normal(sa[::-1] if len(sa) == 2 else sa).astype(np.float32)
                if len(sa) == 2:  # a transposed operand: the strided GEMM reads it through swapped strides
                    got = be.to_numpy(be.matmul(be.transpose(be.asarray(at), (1, 0)), be.asarray(b.astype(np.float32))))
                    check(f"matmul {engine} transposed A {sa}", rel_err(got, at.T.astype(np.float64) @ b), F32_TOL)
        finally:
            linalg.set_gemm_engine(old)


@section
def reductions():
    be = mc.backend.get_backend(DEVICE["name"])
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 5000)).astype(np.float32)
    check("sum rows of 5000", rel_err(be.to_numpy(be.sum(be.asarray(x), axis=(1,))), x.astype(np.float64).sum(1)),
          F32_TOL)
    y = rng.standard_normal((128, 256, 8, 8)).astype(np.float32)  # BN-style: over (N, H, W) per channel
    check("sum over (0,2,3) of (128,256,8,8)", rel_err(be.to_numpy(be.sum(be.asarray(y), axis=(0, 2, 3))),
                                                        y.astype(np.float64).sum((0, 2, 3))), F32_TOL)
    z = rng.standard_normal(10_000_000).astype(np.float32)
    check("sum of 1e7", rel_err(be.to_numpy(be.sum(be.asarray(z), axis=None)), z.astype(np.float64).sum()), F32_TOL)
    check("max rows of 5000", rel_err(be.to_numpy(be.max(be.asarray(x), axis=(1,))), x.max(1)), 0)
    lg = (rng.standard_normal((128, 100)) * 10).astype(np.float32)
    want = np.exp(lg - lg.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    check("softmax (128, 100)", rel_err(be.to_numpy(be.softmax(be.asarray(lg), 1)), want), F32_TOL)


@section
def layers():
    """Dynamic layers at ResNet18's stage-2 size (16x16 maps), forward and backward, both backends."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((128, 64, 16, 16)).astype(np.float32)
    for conv in ("coconv", "condconv", "dycnn", "odconv"):
        conv_cls = models.conv_factory(conv, experts=4)
        mc.manual_seed(0)
        layer = conv_cls(64, 64, 3, stride=1, padding=1)
        outs = []
        for device in ("cpu", DEVICE["name"]):  # a fresh copy on each side: backward accumulates into grads
            m = _copy_to(layer, device)
            xt = mc.Tensor(x, device=device, requires_grad=True)
            y = m(xt)
            (y * y).sum().backward()
            outs.append((y.numpy(), xt.grad.numpy(), {n: p.grad.numpy() for n, p in m.named_parameters()}))
        (y0, gx0, g0), (y1, gx1, g1) = outs
        check(f"{conv} 16x16x64 batch 128 forward", rel_err(y1, y0), F32_TOL)
        check(f"{conv} 16x16x64 batch 128 dx", rel_err(gx1, gx0), GRAD_TOL)
        check(f"{conv} 16x16x64 batch 128 worst param grad", max(rel_err(g1[k], g0[k]) for k in g0), GRAD_TOL)


def _copy_to(module, device):
    import copy

    clone = copy.deepcopy(module)
    return clone.to(device)


class ReluMasks:
    """Record the mask [y > 0] of every ReLU backward of one step, or impose recorded masks.

    A pre-activation within float32 rounding of 0 (AlexNet DY-CNN has one at about 4e-8 in its
    classifier at batch 16) takes its sign from the summation order, so two correct float32
    steps can route a gradient differently; one such flip moved classifier.1.weight's gradient
    by 1e-1 of its largest entry on the CPU backend itself (float32 against float64). Replaying
    one run's masks in the other removes that, and leaves only rounding to compare.
    """

    def __init__(self, device: str, replay: list | None = None):
        self.be, self.replay, self.masks = mc.backend.get_backend(device), replay, []

    def __enter__(self):
        be, orig = self.be, self.be.relu_backward

        def relu_backward(g, y):
            self.masks.append(be.to_numpy(y) > 0)  # this run's own mask, also when another is imposed
            if self.replay is None:
                return orig(g, y)
            mask = self.replay[len(self.masks) - 1]
            if mask.shape != tuple(y.shape):
                raise RuntimeError(f"replayed ReLU mask {mask.shape} != {tuple(y.shape)}: the graphs differ")
            return be.where(be.asarray(mask), g, be.zeros(tuple(g.shape), g.dtype))

        be.relu_backward = relu_backward
        return self

    def __exit__(self, *exc):
        del self.be.relu_backward


def flips(a: list, b: list) -> int:
    """ReLU mask entries that differ between two runs of the same graph."""
    return sum(int(np.count_nonzero(x != y)) for x, y in zip(a, b))


def _one_step(model, device: str, dtype: str, x, labels, replay: list | None = None):
    """Loss, logits, every parameter's gradient and the ReLU masks of one SGD step of a copy of `model`."""
    m = _copy_to(model, device)
    if dtype == "float64":
        m = m.to(dtype=mc.float64)
    mc.manual_seed(1)  # the same dropout masks on every side
    opt = SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    with ReluMasks(device, replay) as relu:
        logits = m(mc.Tensor(x.astype(dtype), device=device))
        loss = F.cross_entropy(logits, mc.Tensor(labels, dtype="int64", device=device))
        opt.zero_grad()
        loss.backward()
    grads = {n: p.grad.numpy() for n, p in m.named_parameters()}
    opt.step()
    return loss.item(), logits.numpy(), grads, relu.masks


def train_step_parity(name: str, conv: str, batch: int) -> None:
    """One training step of `name` on the device against the CPU backend, in float64 and float32.

    float64 is the test of the kernels: no ReLU mask flips, rounding near 1e-15, so every gradient
    tensor must match the CPU's to F64_TOL of its own largest entry (the CPU backend against the
    reference backend: below 1e-14). float32 then checks the float32 kernels: the CPU step is rerun
    with the device's ReLU masks (`ReluMasks`), and the device must be as close to float64 as that
    CPU run is, in units of the model's largest gradient entry."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 100, batch)
    mc.manual_seed(0)
    model = models.build(name, conv=conv, experts=4)
    tag = f"step {name} {conv} b{batch}"
    l0, z0, g0, _ = _one_step(model, "cpu", "float64", x, labels)
    l1, z1, g1, _ = _one_step(model, DEVICE["name"], "float64", x, labels)
    check(f"{tag} f64: logits vs cpu", rel_err(z1, z0), F64_TOL, loss_cpu=f"{l0:.9f}", loss_dev=f"{l1:.9f}")
    per = {k: rel_err(g1[k], g0[k]) for k in g0}
    worst = max(per, key=per.get)
    check(f"{tag} f64: grads, worst per tensor ({worst})", per[worst], F64_TOL)
    g64 = g0
    l1, z1, g1, masks = _one_step(model, DEVICE["name"], "float32", x, labels)
    l0, z0, g0, masks0 = _one_step(model, "cpu", "float32", x, labels, replay=masks)  # masks0: the CPU's own
    check(f"{tag} f32: logits vs cpu", rel_err(z1, z0), F32_TOL, loss_cpu=f"{l0:.6f}", loss_dev=f"{l1:.6f}")
    # per tensor: how much further from float64 the device is than the CPU's float32 with the same
    # masks, in units of the model's largest gradient entry (tensors whose exact gradient is ~0
    # count by their absolute error)
    scale = max(float(np.max(np.abs(g))) for g in g64.values())
    excess = {k: (np.max(np.abs(g1[k] - g64[k])) - np.max(np.abs(g0[k] - g64[k]))) / scale for k in g64}
    worst = max(excess, key=excess.get)
    cpu_err = max(float(np.max(np.abs(g0[k] - g64[k]))) / scale for k in g64)
    check(f"{tag} f32: grads, excess over cpu f32 ({worst})", max(excess[worst], 0.0), F32_TOL,
          cpu_f32_err=f"{cpu_err:.1e}", vs_cpu=f"{rel_err(g1[worst], g0[worst]):.1e}",
          relu_flips_vs_cpu=flips(masks, masks0))


@section
def steps(batch: int, big_batch: int, quick: bool):
    convs = ("static", "coconv") if quick else models.conv_types()
    for name in sorted(models.MODELS):
        for conv in convs:
            if (name, conv) == ("mobilenetv2", "dgc"):
                continue
            train_step_parity(name, conv, batch)
    train_step_parity("resnet18", "coconv", big_batch)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="write the results here")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--big-batch", type=int, default=128)
    p.add_argument("--quick", action="store_true", help="static and CoConv models only")
    p.add_argument("--gemm", choices=("cublas", "tiled"), help="force the CUDA GEMM engine (to bisect a failure)")
    p.add_argument("--device", default="cuda", help="cpu: a dry run of this script (cpu against cpu)")
    p.add_argument("--only", nargs="+", help="sections to run (smoke gemms reductions layers steps)")
    args = p.parse_args()
    DEVICE["name"] = args.device
    if args.gemm:
        from minicoconv.backend.cuda import linalg

        linalg.set_gemm_engine(args.gemm)
    print(f"parity: device {args.device}, gemm {args.gemm or 'default'}, "
          f"MINICOCONV_CUDA_POOL={os.environ.get('MINICOCONV_CUDA_POOL', '(unset)')}", flush=True)
    sections = {"smoke": (smoke, ()), "gemms": (gemms, ()), "reductions": (reductions, ()), "layers": (layers, ()),
                "steps": (steps, (args.batch, args.big_batch, args.quick))}
    for key, (fn, fn_args) in sections.items():
        if args.only is None or key in args.only:
            fn(*fn_args)
    failed = [r for r in RESULTS if not r["ok"]]
    print(f"\n{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(RESULTS, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
