"""Sum every parameter's gradient over the ranks, in place, a bucket at a time.

After each rank's backward pass p.grad holds d((n_r/B) L_r)/dp; the sum over ranks is
dL/dp of the whole batch (see the package docstring). Parameters are packed, in reverse
order of registration (the order backward produces them, as in PyTorch's DDP), into
flat host buffers of about `bucket_mb` MB. Each bucket's nonblocking allreduce starts as
soon as it is packed, so packing bucket k+1 overlaps the reduction of bucket k; then
the sums are unpacked into p.grad.

Starting buckets during backward itself would need a per-gradient hook in the autograd
engine; on the 2-core machine there is no idle core for MPI to progress a reduction
while the Numba kernels use both, and the measured allreduce is a few percent of a
step (README, data parallelism), so that overlap would not pay here.

A parameter with no gradient on any rank keeps p.grad = None (SGD skips it, as in one
process); one with a gradient on some ranks only counts zeros on the others.
"""

from __future__ import annotations

import time

import numpy as np

from ..tensor import Tensor
from .world import World

#: bucket size in MB (PyTorch DDP's default is 25 MB)
DEFAULT_BUCKET_MB = 25.0


class GradientAllreduce:
    """Sums `parameters`' gradients across `world`, in buckets of about `bucket_mb` MB.

    Call `reduce()` after backward and before the optimizer step. `seconds` accumulates
    the time spent in it (packing, reduction, unpacking) for the scaling report.
    """

    def __init__(self, parameters, world: World, bucket_mb: float = DEFAULT_BUCKET_MB):
        self.params = list(parameters)[::-1]  # backward produces the last layers' gradients first
        self.world = world
        if not self.params:
            raise ValueError("GradientAllreduce: the model has no parameters")
        dtypes = {p.dtype for p in self.params}
        if len(dtypes) != 1:
            raise ValueError(f"GradientAllreduce: parameters of one dtype expected, got {sorted(map(str, dtypes))}")
        self.dtype = np.dtype(dtypes.pop())
        limit = max(1, int(bucket_mb * 2**20) // self.dtype.itemsize)
        self.buckets: list[list[int]] = [[]]   # indices into self.params
        size = 0
        for i, p in enumerate(self.params):
            if size and size + p.numel() > limit:
                self.buckets.append([])
                size = 0
            self.buckets[-1].append(i)
            size += p.numel()
        self.buffers = [np.empty(sum(self.params[i].numel() for i in b), self.dtype) for b in self.buckets]
        self.present = np.empty(len(self.params), np.int8)
        self.seconds = 0.0

    def reduce(self) -> None:
        """p.grad <- sum over ranks of p.grad, for every parameter (None counts as zeros)."""
        start = time.perf_counter()
        for i, p in enumerate(self.params):
            self.present[i] = p.grad is not None
        requests = [self.world.start_allreduce_sum_(self._pack(b, buf)) for b, buf in zip(self.buckets, self.buffers)]
        self.world.wait_all(requests)
        self.world.allreduce_max_(self.present)
        for b, buf in zip(self.buckets, self.buffers):
            self._unpack(b, buf)
        self.seconds += time.perf_counter() - start

    def _pack(self, bucket: list[int], buffer: np.ndarray) -> np.ndarray:
        offset = 0
        for i in bucket:
            p = self.params[i]
            part = buffer[offset : offset + p.numel()]
            if p.grad is None:
                part.fill(0)
            else:  # host-staged: to_numpy copies a device gradient to the host, a CPU one is a view
                part[:] = p._backend.to_numpy(p.grad.data).reshape(-1)
            offset += p.numel()
        return buffer

    def _unpack(self, bucket: list[int], buffer: np.ndarray) -> None:
        offset = 0
        for i in bucket:
            p = self.params[i]
            total = buffer[offset : offset + p.numel()].reshape(p.shape)
            offset += p.numel()
            if not self.present[i]:
                continue
            be = p._backend
            grad = None if p.grad is None else p.grad.data
            if isinstance(grad, np.ndarray) and grad.flags.writeable:  # a host gradient: overwrite it in place
                np.copyto(grad, total)
            else:
                p.grad = Tensor._from_array(be.asarray(total.copy()), be)
