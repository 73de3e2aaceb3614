"""Count what the CUDA backend asks of the device: kernel launches and copies.

    from minicoconv.backend.cuda.counters import counting

    with counting() as c:                     # or counting(run_kernels=False)
        ...one training step on device "cuda"...
    c.launches, c.by_kernel                   # kernel launches, and per kernel name
    c.host_to_device, c.device_to_host        # copies that wait for the host (each one a sync)
    c.device_to_device, c.host_args           # D2D copies; NumPy arrays passed to a kernel

Every kernel of this backend starts in `device.launch`, `device.launch_tiles` or
`device.launch_rows`, so wrapping those three counts every launch (a GEMM that goes to cuBLAS is not a launch of
ours and is not counted; under the simulator every GEMM is the tiled kernel). Copies are
counted where numba makes them: `cuda.to_device`, and the device array class's
`copy_to_host` / `copy_to_device` (a device source is a D2D copy, a host one H2D). A
NumPy array handed to a kernel is copied in and back by numba behind our back:
`host_args` counts those (it should stay 0).

`run_kernels=False` counts without running anything: shapes, launches, allocations and
copies are those of the real work, the values are uninitialised garbage. Under the
simulator that counts a ResNet18-CoConv step at batch 128 in seconds (running it there
would take hours). Code that branches on values (a NaN check on the loss) must not be
inside such a run.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from . import device as dev


@dataclass
class Counts:
    """What one `counting()` block saw."""

    launches: int = 0
    by_kernel: Counter = field(default_factory=Counter)
    host_to_device: int = 0
    device_to_host: int = 0
    device_to_device: int = 0
    host_args: int = 0

    @property
    def host_copies(self) -> int:
        """Copies between host and device, either way."""
        return self.host_to_device + self.device_to_host


def _name(kernel) -> str:
    fn = getattr(kernel, "py_func", None) or getattr(kernel, "fn", None) or kernel
    return getattr(fn, "__name__", type(kernel).__name__)


def _array_class():
    """The class that defines copy_to_host for this numba (DeviceNDArrayBase, or the simulator's array)."""
    for cls in type(dev.empty((1,), np.float32)).__mro__:
        if "copy_to_host" in vars(cls):
            return cls
    raise RuntimeError("no device array class defines copy_to_host")


@contextmanager
def counting(run_kernels: bool = True):
    """Count launches and copies of the CUDA backend inside the block (see the module docstring)."""
    counts = Counts()
    cls, cuda = _array_class(), dev.cuda
    saved = {"launch": dev.launch, "launch_tiles": dev.launch_tiles, "launch_rows": dev.launch_rows,
             "to_device": cuda.to_device,
             "copy_to_host": vars(cls)["copy_to_host"], "copy_to_device": vars(cls)["copy_to_device"]}

    def record(kernel, args) -> None:
        counts.launches += 1
        counts.by_kernel[_name(kernel)] += 1
        flat = [x for a in args for x in (a if isinstance(a, tuple) else (a,))]  # tuples of arrays too
        counts.host_args += sum(isinstance(a, np.ndarray) for a in flat)

    def launch(kernel, work, *args, **kwargs):
        if work > 0:
            record(kernel, args)
            if run_kernels:
                saved["launch"](kernel, work, *args, **kwargs)

    def launch_tiles(kernel, rows, cols, batch, *args):
        if rows > 0 and cols > 0 and batch > 0:
            record(kernel, args)
            if run_kernels:
                saved["launch_tiles"](kernel, rows, cols, batch, *args)

    def launch_rows(kernel, work, rows, *args):
        if work > 0 and rows > 0:
            record(kernel, args)
            if run_kernels:
                saved["launch_rows"](kernel, work, rows, *args)

    def to_device(obj, *args, **kwargs):
        counts.host_to_device += 1
        return saved["to_device"](obj, *args, **kwargs)

    def copy_to_host(self, *args, **kwargs):
        counts.device_to_host += 1
        return saved["copy_to_host"](self, *args, **kwargs)

    def copy_to_device(self, ary, *args, **kwargs):
        if dev.is_device_array(ary):
            counts.device_to_device += 1
        else:
            counts.host_to_device += 1
        return saved["copy_to_device"](self, ary, *args, **kwargs)

    dev.launch, dev.launch_tiles, dev.launch_rows, cuda.to_device = launch, launch_tiles, launch_rows, to_device
    cls.copy_to_host, cls.copy_to_device = copy_to_host, copy_to_device
    try:
        yield counts
    finally:
        dev.launch, dev.launch_tiles, dev.launch_rows = saved["launch"], saved["launch_tiles"], saved["launch_rows"]
        cuda.to_device = saved["to_device"]
        cls.copy_to_host, cls.copy_to_device = saved["copy_to_host"], saved["copy_to_device"]
