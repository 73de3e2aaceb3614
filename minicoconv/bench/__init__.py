"""Benchmarks behind `minicoconv bench`: layers, dynamic layers and whole models, against PyTorch.

    timing.py           the timer (warm-up, repeats, median and min) and peak memory
    machine.py          the machine description and one thread count for Numba, BLAS and PyTorch
    layers.py           representative layers and the dynamic convolutions, forward + backward and inference
    beyond.py           ODConv and DGC (dense and sparse inference) against a static conv, with MACs
    models.py           a full training step and fused inference of the CIFAR models
    profile.py          the time of one step split op by op
    table.py            aligned text tables
The PyTorch references (the same layers and models, imported only when asked for) live in
minicoconv.interop (torch_layers.py, torch_models.py, torch_beyond.py), shared with to_torch.
"""

from .beyond import bench_beyond
from .layers import Setup, bench_dynamic, bench_layers
from .models import bench_model
from .timing import Timing, measure, measure_interleaved, numpy_peak_bytes, peak_rss_bytes

__all__ = ["Setup", "Timing", "bench_beyond", "bench_dynamic", "bench_layers", "bench_model", "measure",
           "measure_interleaved", "numpy_peak_bytes", "peak_rss_bytes"]
