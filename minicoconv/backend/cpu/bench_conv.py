"""Time conv2d forward + backward (dx and dw) against PyTorch CPU in the same process.

    python -m minicoconv.backend.cpu.bench_conv      # the ResNet18 / MobileNetV2 table

Best of `repeat` runs, ours and PyTorch's interleaved so that a load change on the
machine hits both. Meaningful only on an otherwise idle machine.
"""

import time

import numpy as np

from .conv_kernels import conv2d_backward, conv2d_forward


def _best_ms(fns, repeat):
    """Best time of each function in ms, the functions run interleaved (fair under load)."""
    best = [float("inf")] * len(fns)
    for fn in fns:
        fn()
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return [b * 1e3 for b in best]


def bench_conv(c_in, c_out, size, kernel=3, stride=1, padding=1, groups=1, batch=32,
               dtype=np.float32, repeat=10, torch_threads=None):
    """Best-of-`repeat` ms of forward + backward (dx, dw), ours and PyTorch's (or None).

    Returns a dict: ms, torch_ms, ratio (ours / torch), gflops (ours, 3 x forward flops).
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, c_in, size, size)).astype(dtype)
    w = rng.standard_normal((c_out, c_in // groups, kernel, kernel)).astype(dtype)
    args = ((stride, stride), (padding, padding), (1, 1), groups)
    y, _ = conv2d_forward(x, w, None, *args)
    gy = rng.standard_normal(y.shape).astype(dtype)

    def ours():
        _, saved = conv2d_forward(x, w, None, *args)
        conv2d_backward(gy, x, w, saved, *args, True, True, False)

    flops = 3 * 2 * y.size * (c_in // groups) * kernel * kernel
    result = {"ms": None, "torch_ms": None, "ratio": None}
    try:
        import torch
    except ImportError:
        result["ms"] = _best_ms([ours], repeat)[0]
        result["gflops"] = flops / result["ms"] / 1e6
        return result
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    tx = torch.from_numpy(x).requires_grad_(True)
    tw = torch.from_numpy(w).requires_grad_(True)
    tgy = torch.from_numpy(gy)

    def theirs():
        ty = torch.nn.functional.conv2d(tx, tw, None, stride, padding, 1, groups)
        torch.autograd.grad(ty, (tx, tw), tgy)

    result["ms"], result["torch_ms"] = _best_ms([ours, theirs], repeat)
    result["gflops"] = flops / result["ms"] / 1e6
    result["ratio"] = result["ms"] / result["torch_ms"]
    return result


CASES = [  # (c_in, c_out, size, stride, groups)
    (64, 64, 32, 1, 1), (128, 128, 16, 1, 1), (256, 256, 8, 1, 1), (512, 512, 4, 1, 1),
    (192, 192, 16, 1, 192), (192, 192, 16, 2, 192),
]


def main():
    import os

    threads = os.cpu_count()
    print(f"{'conv':<28}{'ours ms':>9}{'torch ms':>10}{'ratio':>7}{'GFLOP/s':>9}")
    for c_in, c_out, size, stride, groups in CASES:
        r = bench_conv(c_in, c_out, size, stride=stride, groups=groups, torch_threads=threads)
        name = f"{c_in}->{c_out} {size}x{size} s{stride} g{groups}"
        torch_ms = f"{r['torch_ms']:10.2f}" if r["torch_ms"] else f"{'-':>10}"
        ratio = f"{r['ratio']:7.2f}" if r["ratio"] else f"{'-':>7}"
        print(f"{name:<28}{r['ms']:9.2f}{torch_ms}{ratio}{r['gflops']:9.1f}")


if __name__ == "__main__":
    main()
