"""The numba.cuda backend (device "cuda").

Nothing here imports numba.cuda until `load_cuda_backend()` is called, so importing
minicoconv never needs a GPU or the CUDA packages. The kernels run on an NVIDIA GPU,
or on the CPU under numba's CUDA simulator when NUMBA_ENABLE_CUDASIM=1 is set before
numba is imported (slow, for tests and for reading kernels with a debugger).
"""

from __future__ import annotations

INSTALL_HINT = 'install the CUDA extra: pip install "minicoconv[cuda]" (numba-cuda)'


def load_cuda_backend():
    """Return the CUDA backend, or raise one RuntimeError saying what is missing and how to fix it."""
    try:
        from numba import cuda
    except ImportError as err:  # numba without its CUDA target (numba >= 0.61 moves it to numba-cuda)
        raise RuntimeError(f"device 'cuda' needs numba's CUDA target, which is not installed ({err}); "
                           f"{INSTALL_HINT}") from None
    if not cuda.is_available():
        raise RuntimeError(
            f"device 'cuda' is not available ({_reason(cuda)}). It needs an NVIDIA GPU with its driver, and "
            f"numba's CUDA target ({INSTALL_HINT}). To run the CUDA kernels on the CPU instead (slowly, "
            "for testing), set NUMBA_ENABLE_CUDASIM=1 before starting Python."
        )
    from .backend import CUDABackend
    from .device import SIMULATOR

    if not SIMULATOR:  # before numba makes its CUDA context: contexts keep the manager they start with
        from .memory import install_pool

        install_pool()
    return CUDABackend()


def _reason(cuda) -> str:
    """numba's own explanation of why no GPU can be used, on one line."""
    try:
        count = len(cuda.gpus)  # raises CudaSupportError with the driver's message
    except Exception as err:  # any failure here is the reason we report
        text = " ".join(str(err).split()).rstrip(" :.")
        return f"numba reports: {text}" if text else "numba found no CUDA driver"
    return f"numba found {count} GPU(s) but none it can use"


__all__ = ["load_cuda_backend"]
