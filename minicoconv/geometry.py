"""Convolution and window geometry, checked once: the rules every layer, op and backend share.

    pair(op, name, value, minimum)   int or (h, w) -> (h, w), each >= minimum
    conv_geometry(op, x_shape, w_shape, stride, padding, dilation, groups) -> ConvGeometry
    is_depthwise(x, w)               a convolution whose every channel sees only itself

Output size of a convolution or pooling window along one axis:
    out = (size + 2 * padding - (dilation * (k - 1) + 1)) // stride + 1
A ValueError names the op, the argument, what was expected and what came.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class ConvGeometry(NamedTuple):
    kh: int
    kw: int
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    out_shape: tuple  # (N, Cout, OH, OW)


def is_int(value: Any) -> bool:
    """An int or NumPy integer, and not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def as_pair(value: Any) -> tuple:
    """An int -> (value, value); a pair as a tuple (no checks: for values already checked)."""
    return (value, value) if isinstance(value, int | np.integer) else tuple(value)


def pair(op: str, name: str, value: Any, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= minimum -> a tuple of two ints."""
    values = (value, value) if is_int(value) else value
    if not isinstance(values, tuple | list) or len(values) != 2 or not all(map(is_int, values)):
        raise ValueError(f"{op}: expected {name} as an int or an (h, w) pair of ints, got {value!r}")
    if min(values) < minimum:
        raise ValueError(f"{op}: expected {name} >= {minimum}, got {value!r}")
    return int(values[0]), int(values[1])


def shape4(op: str, name: str, shape: Any, layout: str) -> tuple[int, int, int, int]:
    """A 4-d shape of non-negative ints."""
    shape = tuple(shape) if isinstance(shape, tuple | list) else ()
    if len(shape) != 4 or not all(map(is_int, shape)) or min(shape) < 0:
        raise ValueError(f"{op}: expected {name} of shape {layout} (4 non-negative ints), "
                         f"got {shape if shape else 'a non-shape'}")
    return tuple(int(s) for s in shape)


def output_size(op: str, axis: str, size: int, pad: int, k: int, dil: int, stride: int) -> int:
    """The output length along one axis; ValueError if the dilated kernel does not fit."""
    span = dil * (k - 1) + 1
    if span > size + 2 * pad:
        raise ValueError(f"{op}: expected the dilated kernel {axis} ({span}) to fit the padded "
                         f"input {axis} ({size} + 2*{pad} = {size + 2 * pad})")
    return (size + 2 * pad - span) // stride + 1


def conv_geometry(op: str, x_shape, w_shape, stride, padding, dilation, groups) -> ConvGeometry:
    """Check a convolution of x (N, Cin, H, W) with w (Cout, Cin/groups, kh, kw); return its geometry."""
    n_batch, c_in, height, width = shape4(op, "x", x_shape, "(N, Cin, H, W)")
    c_out, c_in_g, kh, kw = shape4(op, "w", w_shape, "(Cout, Cin/groups, kh, kw)")
    stride = pair(op, "stride", stride, 1)
    padding = pair(op, "padding", padding, 0)
    dilation = pair(op, "dilation", dilation, 1)
    if not is_int(groups) or groups < 1:
        raise ValueError(f"{op}: expected groups as an int >= 1, got {groups!r}")
    if min(c_in, height, width) < 1:
        raise ValueError(f"{op}: expected x with Cin, H, W >= 1, got shape {tuple(x_shape)}")
    if min(c_out, c_in_g, kh, kw) < 1:
        raise ValueError(f"{op}: expected w with Cout, Cin/groups, kh, kw >= 1, got shape {tuple(w_shape)}")
    if c_in % groups:
        raise ValueError(f"{op}: expected Cin divisible by groups, got Cin={c_in}, groups={groups}")
    if c_in_g * groups != c_in:
        raise ValueError(f"{op}: expected w.shape[1] * groups == Cin, got w.shape[1]={c_in_g}, "
                         f"groups={groups}, Cin={c_in}")
    if c_out % groups:
        raise ValueError(f"{op}: expected Cout divisible by groups, got Cout={c_out}, groups={groups}")
    out_h = output_size(op, "height", height, padding[0], kh, dilation[0], stride[0])
    out_w = output_size(op, "width", width, padding[1], kw, dilation[1], stride[1])
    return ConvGeometry(kh, kw, stride, padding, dilation, int(groups), (n_batch, c_out, out_h, out_w))


def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1) -> tuple:
    """Validate a convolution's arguments and return its output shape (N, Cout, OH, OW)."""
    return conv_geometry("conv2d", x_shape, w_shape, stride, padding, dilation, groups).out_shape


def is_depthwise(x, w) -> bool:
    """Cin/groups == 1 (a channel never mixes with another) for a kernel w (Cout, Cin/g, kh, kw) or
    per-sample kernels (N, Cout, Cin/g, kh, kw); Cin == 1 is an ordinary convolution."""
    return w.shape[-3] == 1 and x.shape[1] > 1
