"""Backend-parity cases, written once and run on every backend (reference, cpu, cuda).

A case builds host inputs from a seeded generator, then `run(be, inputs)` moves them onto
backend `be`, calls its primitives (forward, then backward with a random cotangent) and
returns every result as host arrays (None kept as None). `compare` holds two such tuples
to a tolerance that fits the dtype. Shapes are small; `TINY` marks the cases cheap enough
for the CUDA simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[np.random.Generator, np.dtype], dict]
    run: Callable[[object, dict], tuple]
    tiny: bool = True
    params: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return self.name


def host(be, a):
    """A backend array (or None, or a host array / scalar) as a NumPy array."""
    return None if a is None else np.asarray(be.to_numpy(a)) if not isinstance(a, np.ndarray) else a


def dev(be, a):
    return None if a is None else be.asarray(a)


def tolerance(dtype) -> tuple[float, float]:
    """(rtol, atol): float32 sums of a few hundred terms, float64 to round-off."""
    return (2e-5, 2e-5) if np.dtype(dtype) == np.float32 else (1e-11, 1e-11)


def compare(got: tuple, expected: tuple, dtype, label: str = "") -> None:
    """Same None pattern, shapes, dtypes; values within `tolerance(dtype)` (integers exactly)."""
    assert len(got) == len(expected), f"{label}: {len(got)} results != {len(expected)}"
    rtol, atol = tolerance(dtype)
    for k, (g, e) in enumerate(zip(got, expected, strict=True)):
        if e is None or g is None:
            assert g is None and e is None, f"{label}[{k}]: {type(g).__name__} vs {type(e).__name__}"
            continue
        assert g.shape == e.shape, f"{label}[{k}]: shape {g.shape} != {e.shape}"
        assert g.dtype == e.dtype, f"{label}[{k}]: dtype {g.dtype} != {e.dtype}"
        if e.dtype.kind == "f":
            scale = max(1.0, float(np.abs(e).max(initial=0)))
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol * scale, err_msg=f"{label}[{k}]")
        else:
            np.testing.assert_array_equal(g, e, err_msg=f"{label}[{k}]")


def _normal(rng, dtype, *shape):
    return rng.standard_normal(shape).astype(dtype)


# -- convolution ------------------------------------------------------------------------------
# (x shape, w shape, stride, padding, dilation, groups, bias?)
CONV_SHAPES = {
    "plain": ((2, 3, 6, 5), (4, 3, 3, 3), 1, 1, 1, 1, True),
    "strided-dilated-grouped": ((2, 4, 7, 6), (6, 2, 3, 2), (2, 1), (1, 2), (2, 1), 2, True),
    "depthwise": ((2, 4, 5, 5), (4, 1, 3, 3), 2, 1, 1, 4, False),
    "depthwise-multiplier": ((1, 2, 5, 4), (4, 1, 3, 3), 1, (0, 1), 1, 2, True),
    "pointwise-cin1": ((1, 1, 4, 4), (3, 1, 1, 1), 1, 0, 1, 1, True),
}


def _conv_make(shape_name, strided_input=False):
    def make(rng, dtype):
        xs, ws, s, p, d, g, has_bias = CONV_SHAPES[shape_name]
        x = _normal(rng, dtype, *xs)
        if strided_input:  # the same values in a non-contiguous layout (a transposed, sliced view)
            x = np.ascontiguousarray(np.pad(x, ((0, 0), (0, 0), (0, 0), (0, 1))).transpose(0, 1, 3, 2))
            x = x.transpose(0, 1, 3, 2)[..., :-1]
        return {"x": x, "w": _normal(rng, dtype, *ws),
                "b": _normal(rng, dtype, ws[0]) if has_bias else None, "geom": (s, p, d, g), "rng": rng}
    return make


def _conv_run(need=(True, True, True)):
    def run(be, a):
        x, w, b = dev(be, a["x"]), dev(be, a["w"]), dev(be, a["b"])
        y, saved = be.conv2d_forward(x, w, b, *a["geom"])
        gy_host = np.random.default_rng(1).standard_normal(host(be, y).shape).astype(a["x"].dtype)
        grads = be.conv2d_backward(dev(be, gy_host), x, w, saved, *a["geom"], *need)
        recomputed = be.conv2d_backward(dev(be, gy_host), x, w, None, *a["geom"], *need)  # saved=None: recompute
        return (host(be, y), *(host(be, g) for g in grads), *(host(be, g) for g in recomputed))
    return run


def _per_sample_make(rng, dtype, groups=2, depthwise=False):
    c, c_out = 4, (4 if depthwise else 6)
    cg = 1 if depthwise else c // groups
    return {"x": _normal(rng, dtype, 2, c, 6, 5), "k": _normal(rng, dtype, 2, c_out, cg, 3, 3),
            "geom": ((2, 1), (1, 1), (1, 2), c if depthwise else groups)}


def _per_sample_run(be, a):
    x, k = dev(be, a["x"]), dev(be, a["k"])
    y, saved = be.per_sample_conv2d_forward(x, k, *a["geom"])
    gy = np.random.default_rng(2).standard_normal(host(be, y).shape).astype(a["x"].dtype)
    dx, dk = be.per_sample_conv2d_backward(dev(be, gy), x, k, saved, *a["geom"], True, True)
    return host(be, y), host(be, dx), host(be, dk)


def _gathered_make(rng, dtype, keep=3):
    return {"x": _normal(rng, dtype, 2, 4, 6, 5), "w": _normal(rng, dtype, 2, 3, 4, 3, 3),
            "idx": rng.integers(0, 4, (2, 2, keep)), "scale": _normal(rng, dtype, 2, 2, keep)}


def _gathered_run(be, a):
    y = be.gathered_conv2d_forward(dev(be, a["x"]), dev(be, a["w"]), a["idx"], dev(be, a["scale"]), 2, 1)
    return (host(be, y),)


# -- mixtures of expert kernels ------------------------------------------------------------------
def _mixture_make(per_channel, spatial):
    def make(rng, dtype):
        return {"x": _normal(rng, dtype, 2, 3, 5, 6), "bank": _normal(rng, dtype, 3, 4, 3, 3, 3),
                "coef": _normal(rng, dtype, *((2, 3, 4) if per_channel else (2, 3))),
                "s": _normal(rng, dtype, 2, 9) if spatial else None}
    return make


MIX_GEOM = ((2, 2), (1, 1), (1, 1))  # stride, padding, dilation


def _aggregate_run(be, a):
    bank, coef = dev(be, a["bank"]), dev(be, a["coef"])
    k = be.aggregate_kernels(bank, coef)
    dk = dev(be, np.random.default_rng(3).standard_normal(host(be, k).shape).astype(a["x"].dtype))
    dbank, dcoef = be.aggregate_kernels_backward(dk, bank, coef)
    acc = be.copy(dev(be, a["bank"]))
    acc, only_coef = be.aggregate_kernels_backward(dk, bank, coef, True, False, dbank=acc)
    return host(be, k), host(be, dbank), host(be, dcoef), host(be, acc), host(be, only_coef)


def _mixture_run(be, a):
    x, bank, coef, s = (dev(be, a[k]) for k in ("x", "bank", "coef", "s"))
    y, saved = be.mixture_conv2d_forward(x, bank, coef, s, *MIX_GEOM)
    gy = dev(be, np.random.default_rng(4).standard_normal(host(be, y).shape).astype(a["x"].dtype))
    grads = be.mixture_conv2d_backward(gy, x, bank, coef, s, saved, *MIX_GEOM, need_ds=True)
    return (host(be, y), *(host(be, g) for g in grads))


# -- pooling ------------------------------------------------------------------------------------
POOL_WINDOWS = {"k3s2p1": (3, 2, 1), "k2x3-s2x1-p1x0": ((2, 3), (2, 1), (1, 0)), "k2s2": (2, 2, 0)}


def _pool_make(rng, dtype):
    return {"x": _normal(rng, dtype, 2, 3, 7, 6)}


def _pool_make_nan_ties(rng, dtype):
    """Ties (a window's maximum twice: the first wins) and NaNs (two in one window: the last wins)."""
    x = np.round(_normal(rng, dtype, 2, 3, 7, 6))
    x[0, 0, 1, 1] = x[0, 0, 2, 2] = np.nan
    x[1, 2, 3, :] = 9
    return {"x": x}


def _max_pool_run(window):
    def run(be, a):
        x = dev(be, a["x"])
        y, argmax = be.max_pool2d_forward(x, *window)
        gy = np.random.default_rng(5).standard_normal(host(be, y).shape).astype(a["x"].dtype)
        dx = be.max_pool2d_backward(dev(be, gy), argmax, a["x"].shape)
        return host(be, y), host(be, argmax).astype(np.int64), host(be, dx)
    return run


def _avg_pool_run(window):
    def run(be, a):
        y = be.avg_pool2d_forward(dev(be, a["x"]), *window)
        gy = np.random.default_rng(6).standard_normal(host(be, y).shape).astype(a["x"].dtype)
        return host(be, y), host(be, be.avg_pool2d_backward(dev(be, gy), a["x"].shape, *window))
    return run


def _adaptive_run(out):
    def run(be, a):
        y = be.adaptive_avg_pool2d_forward(dev(be, a["x"]), out)
        gy = np.random.default_rng(7).standard_normal(host(be, y).shape).astype(a["x"].dtype)
        return host(be, y), host(be, be.adaptive_avg_pool2d_backward(dev(be, gy), a["x"].shape))
    return run


# -- batch norm -----------------------------------------------------------------------------------
def _bn_make(rng, dtype):
    return {"x": (_normal(rng, dtype, 3, 4, 3, 2) * 2 + 1).astype(dtype), "w": _normal(rng, dtype, 4),
            "b": _normal(rng, dtype, 4), "rm": _normal(rng, dtype, 4),
            "rv": (rng.random(4) + 0.5).astype(dtype), "gy": _normal(rng, dtype, 3, 4, 3, 2)}


def _bn_run(be, a):
    x, w, b, gy = (dev(be, a[k]) for k in ("x", "w", "b", "gy"))
    y, mean, invstd = be.batch_norm_train_forward(x, w, b, 1e-5)
    grads = be.batch_norm_backward(gy, x, w, mean, invstd, True, True, True)
    no_dx = be.batch_norm_backward(gy, x, None, mean, invstd, False, True, False)
    rm, rv = dev(be, a["rm"]), dev(be, a["rv"])
    ye = be.batch_norm_eval_forward(x, rm, rv, w, b, 1e-5)
    eval_grads = be.batch_norm_eval_backward(gy, rv, w, 1e-5, x, rm, True, True, True)
    be.batch_norm_update_running(rm, rv, mean, invstd, 1e-5, 18, 0.1)
    return tuple(host(be, t) for t in (y, mean, invstd, *grads, *no_dx, ye, *eval_grads, rm, rv))


# -- expert mixing, relu, sgd ----------------------------------------------------------------------
def _expert_make(rng, dtype):  # G=2 groups, n=3 experts, D=2 channels each
    return {"z": _normal(rng, dtype, 2, 12, 3, 4), "x": _normal(rng, dtype, 2, 4, 3, 4),
            "r": _normal(rng, dtype, 2, 2, 3, 2)}


def _expert_run(be, a):
    z, x, r = dev(be, a["z"]), dev(be, a["x"]), dev(be, a["r"])
    y = be.expert_weighted_sum_forward(z, r)
    ws = be.expert_weighted_sum_backward(x, z, r)  # x has y's shape: a cotangent
    xs = be.expert_scale_forward(x, r)
    sc = be.expert_scale_backward(z, x, r, True, False)
    return tuple(host(be, t) for t in (y, *ws, xs, *sc))


def _relu_make(rng, dtype):
    a = _normal(rng, dtype, 3, 5, 4)
    a[0, 0, :2] = 0
    return {"a": a, "g": _normal(rng, dtype, 3, 5, 4)}


def _relu_run(be, a):
    y = be.relu_forward(dev(be, a["a"]))
    return host(be, y), host(be, be.relu_backward(dev(be, a["g"]), y))


def _sgd_run(momentum, weight_decay, nesterov):
    def run(be, a):
        p, buf = dev(be, a["x"].copy()), None  # (a copy: on NumPy backends asarray does not copy)
        outs = []
        for step in range(3):  # the first step with momentum creates buf, later ones update it
            g = dev(be, a["m"].T[:1] * (step + 1) - a["x"])
            buf = be.sgd_update(p, g, buf, 0.1, momentum, weight_decay, nesterov)
            outs += [host(be, p).copy(), None if buf is None else host(be, buf).copy()]
        return tuple(outs)
    return run


def _plain_make(rng, dtype):
    return {"x": _normal(rng, dtype, 3, 5), "m": _normal(rng, dtype, 5, 2)}


def _composed_run(be, a):
    x = dev(be, a["x"])
    idx = (np.array([0, 2, 0]), np.array([1, 1, 1]))
    return tuple(host(be, t) for t in (
        be.sigmoid(x), be.softmax(x, 1), be.log_softmax(x, 0), be.matmul(x, dev(be, a["m"])),
        be.sum(x, axis=1, keepdims=True), be.max(x, axis=0), be.argmax(x, axis=1),
        be.scatter_add((3, 5), idx, be.getitem(x, idx)), be.pad(x, ((1, 0), (0, 2)), 0.5),
        be.where(be.greater(x, 0), x, be.multiply(x, 0.5)), be.transpose(be.reshape(x, (5, 3)), (1, 0)),
    ))


def _cases() -> list[Case]:
    cases = [Case(f"conv2d[{k}]", _conv_make(k), _conv_run(), tiny=k != "strided-dilated-grouped")
             for k in CONV_SHAPES]
    cases += [Case("conv2d[need-dx-only]", _conv_make("plain"), _conv_run((True, False, False))),
              Case("conv2d[non-contiguous-x]", _conv_make("strided-dilated-grouped", True), _conv_run(), tiny=False),
              Case("conv2d[need-dw-db]", _conv_make("strided-dilated-grouped"), _conv_run((False, True, True)),
                   tiny=False),
              Case("per_sample_conv2d[grouped]", _per_sample_make, _per_sample_run),
              Case("per_sample_conv2d[depthwise]", lambda r, d: _per_sample_make(r, d, depthwise=True),
                   _per_sample_run),
              Case("gathered_conv2d", _gathered_make, _gathered_run),
              Case("gathered_conv2d[keep-none]", lambda r, d: _gathered_make(r, d, keep=0), _gathered_run)]
    for per_channel in (False, True):
        label = "per-channel" if per_channel else "per-expert"
        cases.append(Case(f"aggregate_kernels[{label}]", _mixture_make(per_channel, False), _aggregate_run))
        for spatial in (False, True):
            cases.append(Case(f"mixture_conv2d[{label}{'-spatial' if spatial else ''}]",
                              _mixture_make(per_channel, spatial), _mixture_run))
    for k, window in POOL_WINDOWS.items():
        cases += [Case(f"max_pool2d[{k}]", _pool_make, _max_pool_run(window)),
                  Case(f"avg_pool2d[{k}]", _pool_make, _avg_pool_run(window))]
    cases.append(Case("max_pool2d[ties-and-nans]", _pool_make_nan_ties, _max_pool_run((3, 2, 1))))
    for out in ((3, 4), (1, 1), (9, 5), (7, 6)):
        cases.append(Case(f"adaptive_avg_pool2d[{out[0]}x{out[1]}]", _pool_make, _adaptive_run(out)))
    cases += [Case("batch_norm", _bn_make, _bn_run), Case("expert_mixing", _expert_make, _expert_run),
              Case("relu", _relu_make, _relu_run), Case("composed", _plain_make, _composed_run)]
    for m, wd, nest in ((0.0, 0.0, False), (0.9, 1e-2, False), (0.9, 0.0, True)):
        cases.append(Case(f"sgd_update[m={m},wd={wd},nesterov={nest}]", _plain_make, _sgd_run(m, wd, nest)))
    return cases


CASES = _cases()
