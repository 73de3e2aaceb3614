"""Creating device arrays and moving data between host and device.

`asarray` is the only way data enters the device (one host-to-device copy) and
`to_numpy` the only way it leaves (one device-to-host copy); everything else the
backend does stays in device memory.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from . import device as dev
from .elementwise import astype, fill


def asarray(data, dtype=None):
    """A device array of `data`: a NumPy array, a Python scalar or list, or a device array.

    Device arrays of the right dtype are returned as they are (no copy, as np.asarray);
    other objects with `__cuda_array_interface__` (CuPy, PyTorch CUDA tensors) are
    wrapped without a copy too.
    """
    if hasattr(data, "__cuda_array_interface__") and not dev.is_device_array(data):
        data = cuda.as_cuda_array(data)
    if dev.is_device_array(data):
        data = dev.contiguous(data)
        return data if dtype is None else astype(data, dtype)
    return dev.to_device(np.asarray(data, dtype=dtype))


def to_numpy(a) -> np.ndarray:
    """The values of a device array as a new NumPy array in host memory."""
    return dev.to_host(a)


def full(shape, fill_value, dtype=None):
    """np.full on the device (dtype defaults to fill_value's, as NumPy)."""
    shape = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
    dtype = np.asarray(fill_value).dtype if dtype is None else np.dtype(dtype)
    return fill(dev.empty(shape, dtype), fill_value)


def zeros(shape, dtype=np.float64):
    """np.zeros on the device."""
    return full(shape, 0, dtype)


def copy(a):
    """A new device array with a's values (np.array(a))."""
    out = dev.empty(a.shape, a.dtype)
    if a.size:
        out.copy_to_device(dev.contiguous(a))
    return out
