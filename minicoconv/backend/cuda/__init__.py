"""The numba.cuda backend (device "cuda").

Nothing here imports numba.cuda until `load_cuda_backend()` is called, so importing
minicoconv never needs a GPU or the CUDA packages. The kernels run on an NVIDIA GPU,
or on the CPU under numba's CUDA simulator when NUMBA_ENABLE_CUDASIM=1 is set before
numba is imported (slow, for tests and for reading kernels with a debugger).
"""

from __future__ import annotations

INSTALL_HINT = ('install the CUDA extra matching your driver\'s CUDA version: pip install "minicoconv[cuda12]" '
                'or "minicoconv[cuda13]" (numba-cuda and CuPy)')


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
        _check_compiler(cuda)
    return CUDABackend()


def _check_compiler(cuda) -> None:
    """Compile and run one tiny kernel, so a broken CUDA toolchain fails here with a message, not mid-model."""
    import numpy as np

    try:
        @cuda.jit
        def probe(a):
            a[0] = 1

        a = cuda.device_array(1, np.int32)
        probe[1, 1](a)
        assert int(a.copy_to_host()[0]) == 1
    except Exception as err:
        text = " ".join(str(err).split())[:300]
        hint = ("numba-cuda could not find libNVVM: set CUDA_HOME to the CUDA toolkit's root (two folders above "
                "`which nvcc`)" if "nvvm" in text.lower() else
                f"numba-cuda may not support NumPy {np.__version__} (try numpy<2.5, or a newer numba-cuda)"
                if isinstance(err, AttributeError) and "numpy" in text else "check the CUDA driver and numba-cuda")
        raise RuntimeError(f"device 'cuda' cannot compile a kernel ({type(err).__name__}: {text}); {hint}") from None


def _reason(cuda) -> str:
    """numba's own explanation of why no GPU can be used, on one line."""
    try:
        count = len(cuda.gpus)  # raises CudaSupportError with the driver's message
    except Exception as err:  # any failure here is the reason we report
        text = " ".join(str(err).split()).rstrip(" :.")
        return f"numba reports: {text}" if text else "numba found no CUDA driver"
    return f"numba found {count} GPU(s) but none it can use"


__all__ = ["load_cuda_backend"]
