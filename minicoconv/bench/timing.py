"""A small timer for benchmarks: warm-up excluded, repeats, median and min; peak memory.

    t = measure(step, repeats=5, warmup=1, sync=backend_sync)
    t.median_ms, t.min_ms

Time is wall-clock (`time.perf_counter`) around one call, after `sync()` when the
work is asynchronous (a GPU backend). The first call compiles the Numba kernels
(or loads them from the on-disk cache), so `warmup` calls run untimed first.

Under load the minimum is the best estimate of a call's own cost and the median
the typical one; `measure_interleaved` runs several functions round-robin (ours,
then PyTorch's, then ours...) so that both see the same machine load and their
ratio stays fair even when other processes compete for the cores.

Memory. `numpy_peak_bytes(fn)` is the peak of memory allocated *during* `fn`
as traced by `tracemalloc`: NumPy reports every array buffer it allocates to
tracemalloc, so this counts activations, gradients, im2col scratch and
temporaries (arrays that exist before the call, e.g. parameters, are not
counted). It does not see memory allocated by other libraries (PyTorch,
arrays created inside Numba kernels, BLAS workspaces). `peak_rss_bytes()` is
the whole process's high-water mark of resident memory (`resource.getrusage`,
Linux reports kilobytes): it only grows, so it bounds everything run so far.
"""

from __future__ import annotations

import gc
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Timing:
    """Seconds per call of the timed repeats (warm-up excluded)."""

    times: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1e3

    @property
    def min_ms(self) -> float:
        return min(self.times) * 1e3

    def as_dict(self) -> dict:
        return {"median_ms": self.median_ms, "min_ms": self.min_ms, "times_ms": [t * 1e3 for t in self.times]}


def _timed_call(fn: Callable[[], object], sync: Callable[[], None] | None) -> float:
    if sync is not None:
        sync()
    start = time.perf_counter()
    fn()
    if sync is not None:
        sync()  # an asynchronous backend has only queued the work: wait for it before stopping
    return time.perf_counter() - start


def measure_interleaved(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1,
                        syncs: dict[str, Callable[[], None] | None] | None = None) -> dict[str, Timing]:
    """Time each function `repeats` times, round-robin, after `warmup` untimed calls of each.

    `syncs` maps a name to the synchronize function of the device its function runs on.
    """
    if repeats < 1:
        raise ValueError(f"measure: repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"measure: warmup must be >= 0, got {warmup}")
    syncs = syncs or {}
    for _ in range(warmup):
        for name, fn in fns.items():
            _timed_call(fn, syncs.get(name))
    results = {name: Timing() for name in fns}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # a collection inside one repeat would be charged to whichever call triggered it
    try:
        for _ in range(repeats):
            for name, fn in fns.items():
                results[name].times.append(_timed_call(fn, syncs.get(name)))
    finally:
        if gc_was_enabled:
            gc.enable()
    return results


def measure(fn: Callable[[], object], repeats: int = 5, warmup: int = 1,
            sync: Callable[[], None] | None = None) -> Timing:
    """Time `fn` `repeats` times after `warmup` untimed calls."""
    return measure_interleaved({"fn": fn}, repeats, warmup, {"fn": sync})["fn"]


def numpy_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes allocated by NumPy (and Python) while `fn` runs, above what was allocated before.

    Runs `fn` once under tracemalloc, which slows Python-level allocation: never time this call.
    """
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        return max(0, tracemalloc.get_traced_memory()[1] - base)
    finally:
        if not was_tracing:
            tracemalloc.stop()


def peak_rss_bytes() -> int:
    """High-water mark of this process's resident memory (never decreases)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux kilobytes
