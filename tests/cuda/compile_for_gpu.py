"""Compile every kernel the CUDA tests launch for a real GPU, on a machine without one.

The simulator runs kernels as plain Python, so it cannot catch what only numba's CUDA
compiler rejects (a type that does not unify, an unsupported call). This script runs
tests/cuda with the GPU launch configuration (256 threads, 16 x 16 tiles) while device
arrays are NumPy arrays and every kernel launch is replaced by
`numba.cuda.compile_ptx(kernel.py_func, argument types, cc=...)`: each kernel
specialisation the tests reach is compiled to PTX, nothing runs, so the tests' value
checks fail by design; only compile failures count. It needs numba's CUDA target with
the NVVM compiler, e.g. `pip install "numba-cuda[cu12]"`, but no GPU and no driver:

    python tests/cuda/compile_for_gpu.py [--cc 8.0]      # from the repository root

Exit status 1 if any kernel fails to compile.
"""

from __future__ import annotations

import argparse
import os
import sys
import types

import numpy as np


class HostDeviceArray(np.ndarray):
    """A NumPy array standing in for a device array (the methods the backend calls)."""

    def copy_to_host(self, *args, **kwargs):
        return np.array(self)

    def is_c_contiguous(self):
        return self.flags.c_contiguous

    def copy_to_device(self, other, *args, **kwargs):
        self[...] = np.asarray(other)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cc", default="8.0", help="compute capability to compile for (default 8.0)")
    args = parser.parse_args()
    cc = tuple(int(p) for p in args.cc.split("."))
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        sys.exit("unset NUMBA_ENABLE_CUDASIM: this compiles for a GPU")

    import numba
    import numba.cuda.dispatcher
    import pytest
    from numba import cuda

    # Device functions ask the current device for its compute capability: answer for it.
    numba.cuda.dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=cc)
    cuda.device_array = lambda shape, dtype=np.float64, **kw: np.empty(shape, dtype).view(HostDeviceArray)
    cuda.to_device = lambda a, **kw: np.array(a, copy=True).view(HostDeviceArray)
    cuda.is_available = lambda: True
    cuda.synchronize = lambda: None

    import minicoconv.backend.cuda as cuda_backend
    from minicoconv.backend.cuda import device as dev

    cuda_backend._check_compiler = lambda cuda: None  # its probe kernel would launch: no driver here

    compiled: dict = {}
    failures: list = []

    def compile_only(kernel, arguments):
        def host(a):
            if isinstance(a, tuple):
                return tuple(host(x) for x in a)
            return np.asarray(a) if isinstance(a, HostDeviceArray) else a

        signature = tuple(numba.typeof(host(a)) for a in arguments)
        key = (kernel.py_func, signature)
        if key in compiled:
            return
        try:
            cuda.compile_ptx(kernel.py_func, signature, cc=cc)
            compiled[key] = True
        except Exception as err:  # report every failure, keep going
            compiled[key] = False
            failures.append(f"{kernel.py_func.__qualname__}{signature}:\n{err}")

    dev.launch = lambda kernel, work, *a, items_per_block=0: compile_only(kernel, a) if work > 0 else None
    dev.launch_tiles = lambda kernel, rows, cols, batch, *a: compile_only(kernel, a) if rows * cols * batch else None
    dev.launch_rows = lambda kernel, work, rows, *a: compile_only(kernel, a) if work * rows else None
    pytest.main(["tests/cuda", "-q", "-p", "no:cacheprovider", "--tb=no", "-rN", "--no-header"])
    print(f"\ncompiled {sum(compiled.values())} kernel specialisations for sm_{cc[0]}{cc[1]}; "
          f"{len(failures)} failed to compile")
    for failure in failures:
        print("\nFAILED", failure)
    if not compiled:
        print("nothing was compiled: the tests did not reach a kernel (see their errors above)")
    return 1 if failures or not compiled else 0


if __name__ == "__main__":
    sys.exit(main())
