"""Tutorial 06: the GPU backend (numba.cuda kernels behind the backend seam).

How to run it, from the repository root:

    python tutorials/06_gpu_backend.py                      # on an NVIDIA GPU (pip install "minicoconv[cuda12]")
    python tutorials/06_gpu_backend.py --quick --plots out  # fewer training steps, a picture in out/ (the tests)

Without a GPU, run it under numba's CUDA simulator, which executes the very same kernels
on the CPU, one Python thread per GPU thread: slow, but everything below works and is checked.

    NUMBA_ENABLE_CUDASIM=1 python tutorials/06_gpu_backend.py --quick

(Run as a script without a GPU, `main()` starts that command for you in a child process.)
Numba reads the flag when numba.cuda is first imported, so in a notebook set
os.environ["NUMBA_ENABLE_CUDASIM"] = "1" before anything imports numba.cuda, then call
`main(["--quick"])`. Importing this file runs nothing and does not import numba.cuda.

What you will learn, one printed section each:

1. Threads and outputs: how a kernel maps GPU threads to the elements it writes, and how
   the backend's elementwise kernels find broadcast operands with one index helper
   (picture: which thread wrote which element).
2. Shared-memory tiling: why the matmul kernel loads TILE x TILE tiles into shared memory,
   and how many global-memory reads that saves.
3. Moving a model to the GPU: `Module.to("cuda")`, `device="cuda"` tensors, and a training
   run whose losses match the CPU's.
4. What the simulator is for: testing and debugging kernels without a GPU.

Each section names the engine files (minicoconv/backend/cuda/...) that it explains.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

import minicoconv as mc
from minicoconv import nn
from minicoconv.bench.timing import measure_interleaved
from minicoconv.lesson import check, save_figure, section
from minicoconv.nn import functional as F
from minicoconv.optim import SGD


def gpu_or_simulator() -> bool:
    """True when numba.cuda can run kernels here: a GPU, or the simulator flag set before import."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return True
    from numba import cuda

    return cuda.is_available()


# ---------------------------------------------------------------------------------------
# The lesson's own kernels, written as plain Python functions and compiled by kernels() on first
# use. `cuda` is a module global on purpose: numba.cuda is imported by kernels(), not when this
# file is imported, and the simulator runs a kernel by swapping a fake `cuda` into its globals.
cuda = None


def axpy(alpha, x, y, out, who):
    """out[i] = alpha * x[i] + y[i]; who[i] records the thread that wrote element i."""
    # cuda.grid(1) = blockIdx.x * blockDim.x + threadIdx.x: this thread's number in the grid.
    # The loop steps by the whole grid (cuda.gridsize(1) threads), so a grid of any size
    # covers every element: the "grid-stride loop" every kernel of the backend uses.
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = alpha * x[i] + y[i]
        who[i] = cuda.grid(1)


def naive_matmul(a, b, c):
    """c = a @ b with one thread per element of c, each reading a whole row of a and column of b."""
    m, k = a.shape
    n = b.shape[1]
    for t in range(cuda.grid(1), m * n, cuda.gridsize(1)):
        i, j = t // n, t % n
        acc = 0.0
        for q in range(k):
            acc += a[i, q] * b[q, j]
        c[i, j] = acc


def forgot_the_bounds_check(x, out):
    i = cuda.grid(1)
    out[i] = 2 * x[i]  # no `if i < out.size`: the extra threads of the last block overrun


@functools.cache
def kernels() -> SimpleNamespace:
    """Import numba.cuda and compile the three kernels above (once)."""
    global cuda
    from numba import cuda as numba_cuda

    cuda = numba_cuda
    return SimpleNamespace(cuda=cuda, axpy=cuda.jit(axpy), naive_matmul=cuda.jit(naive_matmul),
                           forgot_the_bounds_check=cuda.jit(forgot_the_bounds_check))


def threads_and_outputs(plots: Path | None = None) -> None:
    section(1, "Threads and outputs")
    # Engine: minicoconv/backend/cuda/device.py (THREADS, launch), elementwise.py (the broadcast
    # kernels), indexing.py (strided_offset) and layout.py (broadcast_strides).
    from minicoconv.backend import get_backend
    from minicoconv.backend.cuda import device as dev
    from minicoconv.backend.cuda.indexing import strided_offset
    from minicoconv.backend.cuda.layout import broadcast_strides

    kern = kernels()
    cuda = kern.cuda  # noqa: F811 - the same module, as a local
    be = get_backend("cuda")
    print("backend:", be, "| simulator:", be.simulator, "| threads per block:", dev.THREADS)

    # A kernel launch names a grid of blocks of threads: kernel[blocks, threads_per_block](...).
    # Every thread runs the same Python function; only its indices differ.
    n, blocks, threads = 20, 2, 4
    x = cuda.to_device(np.arange(n, dtype=np.float32))
    y = cuda.to_device(np.ones(n, dtype=np.float32))
    out = cuda.device_array(n, dtype=np.float32)
    who = cuda.device_array(n, dtype=np.int64)
    kern.axpy[blocks, threads](np.float32(2), x, y, out, who)
    print(f"{blocks} blocks x {threads} threads = {blocks * threads} threads for {n} elements:")
    print("  element:", list(range(n)))
    print("  thread: ", who.copy_to_host().tolist())
    check(np.array_equal(out.copy_to_host(), 2 * np.arange(n) + 1), "out = 2 x + 1")
    check(np.array_equal(who.copy_to_host(), np.arange(n) % (blocks * threads)),
          "thread t writes elements t, t + 8, t + 16 (consecutive threads, consecutive memory)")
    if plots is not None:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend is chosen or changed

        fig = Figure(figsize=(9, 1.6))
        ax = fig.subplots()
        ax.imshow(who.copy_to_host()[None, :], cmap="tab10", aspect="auto")
        for i, t in enumerate(who.copy_to_host()):
            ax.text(i, 0, str(t), ha="center", va="center", fontsize=8)
        ax.set_yticks([])
        ax.set_xticks(range(n))
        ax.set_xlabel("element i of out (number = the thread that wrote it)")
        ax.set_title(f"grid-stride loop: {blocks} blocks x {threads} threads over {n} elements")
        save_figure(fig, plots, "06_threads_to_elements.png")

    # Broadcasting without copies: output element i (C order) reads each operand at
    #     strided_offset(i, out_shape, strides),   stride 0 along broadcast axes.
    # The helper is plain Python compiled twice: .host (numba.njit, tested against NumPy)
    # and .device (cuda.jit(device=True), called inside the kernels).
    a_shape, out_shape = (3, 1), (3, 4)
    strides = broadcast_strides(a_shape, out_shape)
    reads = [strided_offset.host(i, out_shape, strides) for i in range(12)]
    print(f"(3, 1) broadcast to (3, 4): strides {strides}; output i reads element {reads}")
    check(reads == [0] * 4 + [1] * 4 + [2] * 4, "each row of the output reads one element of the (3, 1) operand")

    col, row = np.array([[10.0], [20.0], [30.0]]), np.array([[1.0, 2.0, 3.0, 4.0]])
    got = be.to_numpy(be.add(be.asarray(col), be.asarray(row)))
    check(np.array_equal(got, col + row), "be.add broadcasts (3, 1) + (1, 4) on the device")


# ---------------------------------------------------------------------------------------
def shared_memory_tiling() -> None:
    section(2, "Shared-memory tiling of the matmul")
    # Engine: minicoconv/backend/cuda/linalg.py (the tiled kernel), device.py (TILE, launch);
    # cublas.py uses NVIDIA's library instead where it is installed.
    from minicoconv.backend import get_backend
    from minicoconv.backend.cuda import device as dev

    kern = kernels()
    cuda = kern.cuda  # noqa: F811 - the same module, as a local
    be = get_backend("cuda")
    tile = dev.TILE
    rng = np.random.default_rng(0)
    m, k, n = 2 * tile + 1, 3 * tile, 2 * tile - 1  # ragged edges on purpose
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)

    # The naive kernel: every thread reads k elements of a and k of b from global memory.
    c = cuda.device_array((m, n), dtype=np.float32)
    dev.launch(kern.naive_matmul, m * n, cuda.to_device(a), cuda.to_device(b), c)
    check(np.allclose(c.copy_to_host(), a @ b, atol=1e-5), "the naive kernel computes a @ b")

    # The backend's kernel (backend/cuda/linalg.py) gives a block of TILE x TILE threads one
    # TILE x TILE tile of c. For each step along k, every thread copies ONE element of a and
    # ONE of b into shared memory (on-chip, shared by the block), the block synchronises, and
    # then every thread reads the TILE values it needs from shared memory. Each element loaded
    # from global memory is used TILE times, so global reads drop by a factor of TILE.
    naive_reads = 2 * m * n * k
    tiled_reads = 2 * (-(-m // tile) * tile) * (-(-n // tile) * tile) * (-(-k // tile) * tile) // tile
    print(f"tile {tile} x {tile}; c is {m} x {n} = {-(-m // tile)} x {-(-n // tile)} tiles, k = {k}")
    print(f"global reads: naive {naive_reads}, tiled {tiled_reads} (about 1/{tile}; padded edge tiles load zeros)")
    got = be.to_numpy(be.matmul(be.asarray(a), be.asarray(b)))
    check(np.allclose(got, a @ b, atol=1e-5), "be.matmul (tiled, shared memory) equals NumPy's a @ b")

    if not dev.SIMULATOR:  # timings mean something only on a real GPU
        big = 1024
        da = be.asarray(rng.standard_normal((big, big)).astype(np.float32))
        db = be.asarray(rng.standard_normal((big, big)).astype(np.float32))
        out = cuda.device_array((big, big), dtype=np.float32)
        calls = {"naive": lambda: dev.launch(kern.naive_matmul, big * big, da, db, out),
                 "tiled": lambda: be.matmul(da, db)}
        # Kernels run asynchronously: the timer synchronises before reading the clock. One untimed
        # call each compiles the kernels; then 5 interleaved repeats, median and minimum.
        times = measure_interleaved(calls, repeats=5, warmup=1, syncs=dict.fromkeys(calls, be.synchronize))
        for name, t in times.items():
            print(f"{name} {big}^3 matmul: median {t.median_ms:.2f} ms (min {t.min_ms:.2f}), "
                  f"{2 * big ** 3 / (t.min_ms / 1e3) / 1e9:.0f} GFLOP/s at the minimum")


# ---------------------------------------------------------------------------------------
class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dynamic = nn.CoConv2d(8, 8, 3, padding=1, experts=2)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.max_pool2d(self.bn(self.conv(x)).relu(), 2)
        return self.fc(F.adaptive_avg_pool2d(self.dynamic(x).relu(), 1).flatten(1))


def train(device: str, steps: int, images: np.ndarray, labels: np.ndarray) -> list[float]:
    mc.manual_seed(0)
    model = TinyCNN().to(device)  # parameters and BN buffers move to the device, in place
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = mc.tensor(images, device=device)  # data goes to the device once...
    t = mc.tensor(labels, device=device)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), t)  # ...and every op of the step runs there:
        opt.zero_grad()
        loss.backward()                       # the backward kernels,
        opt.step()                            # and the SGD update kernel, in place
        losses.append(loss.item())            # only the loss comes back, for logging
    return losses


def moving_a_model(steps: int) -> None:
    section(3, "Moving a model to the GPU")
    # Engine: Module.to in minicoconv/nn/module.py, the backend seam in minicoconv/backend/__init__.py
    # and base.py, minicoconv/backend/cuda/backend.py (every op's kernels), sgd.py (the update).
    rng = np.random.default_rng(1)
    images = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    labels = np.array([0, 1, 2, 3])
    gpu = train("cuda", steps, images, labels)
    cpu = train("cpu", steps, images, labels)
    for i, (g, c) in enumerate(zip(gpu, cpu)):
        print(f"step {i}: loss cuda {g:.6f}  cpu {c:.6f}")
    check(np.allclose(gpu, cpu, rtol=1e-4), "the same model trains to the same losses on both devices")
    check(gpu[-1] < gpu[0], "the loss goes down")
    try:
        mc.ones(2) + mc.ones(2, device="cuda")
    except RuntimeError as err:
        print("mixing devices ->", err)


# ---------------------------------------------------------------------------------------
def what_the_simulator_is_for() -> None:
    section(4, "What the simulator is for")
    # Engine: minicoconv/backend/cuda/simulator.py (what the backend does differently under it).
    from minicoconv.backend.cuda import device as dev

    kern = kernels()
    cuda = kern.cuda  # noqa: F811 - the same module, as a local
    print("NUMBA_ENABLE_CUDASIM=1 runs kernels as Python: one thread per GPU thread, real barriers")
    print("and shared memory, so the tests of the GPU backend run on any CPU-only machine (tests/cuda).")
    print("You can print() inside a kernel, or step through it with pdb; indexing past an array")
    print("raises IndexError instead of silently corrupting memory as it can on a GPU. It does not")
    print("check numba's typing rules (a GPU compiles the kernel, the simulator just runs Python):")
    print("compile for a GPU without one with numba.cuda.compile_ptx(kernel.py_func, signature, cc=...).")
    if not dev.SIMULATOR:
        print("(Running on a GPU: the out-of-bounds demo is skipped.)")
        return
    x = cuda.to_device(np.arange(6, dtype=np.float32))
    out = cuda.device_array(6, dtype=np.float32)
    try:
        kern.forgot_the_bounds_check[1, 8](x, out)  # 8 threads, 6 elements
    except IndexError as err:
        print("IndexError:", str(err).splitlines()[0])
        check(True, "the simulator catches the out-of-bounds write")
    else:
        raise SystemExit("the simulator should have caught the out-of-bounds write")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer training steps (used by the test suite)")
    parser.add_argument("--plots", metavar="DIR", type=Path, help="write the picture (PNG) to DIR")
    args = parser.parse_args(argv)

    threads_and_outputs(args.plots)
    shared_memory_tiling()
    moving_a_model(steps=3 if args.quick else 10)
    what_the_simulator_is_for()
    print("\nDone: threads and outputs, shared-memory tiles, a model on the GPU, and the simulator.")


def run_under_simulator(argv: list[str]) -> int:
    """Run this file again in a child process with NUMBA_ENABLE_CUDASIM=1 (numba reads it at import)."""
    print("No CUDA GPU here: running this tutorial under numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1).")
    sys.stdout.flush()
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    return subprocess.run([sys.executable, os.path.abspath(__file__), *argv], env=env, check=False).returncode


if __name__ == "__main__":
    if gpu_or_simulator():
        main()
    else:
        sys.exit(run_under_simulator(sys.argv[1:]))
