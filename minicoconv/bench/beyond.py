"""ODConv and DGC against a static conv of the same shape: the second table of `bench --dynamic`.

`bench_beyond` times, at the shapes of `layers.DYNAMIC_CASES` (3x3, padding 1), in two
round-robins per shape (see timing.py):

    train      static conv, ODConv2d, DGConv2d: forward + backward (input and parameter
               gradients). DGC's training form is dense: it convolves the zeroed channels,
               so its cost does not depend on the kept fraction (timed at the first keep).
    inference  eval mode + no_grad: the static conv; ODConv's fused form (`nn.fuse`: every
               attention folded into one kernel per sample); DGC's dense eval form (the
               DGConv2d itself in eval mode, as the original code runs it) and its sparse
               inference form (`nn.fuse` -> SparseDGConv2d, only the kept channels of each
               sample and head are convolved) at each kept fraction (default 0.5 and 0.25).

Every row carries its multiply-accumulates per image (`summary.count`: the convolution, the
aggregation of per-sample kernels and the routing convs; DGC's saliency generator is not
counted, as in the papers), its time over our static conv's, and for DGC's sparse rows the
time and MACs over DGC's dense eval form: the saving of gathering only the kept channels.
DGC (dense convs only, `heads` dividing both channel counts) is skipped where the shape does
not allow it, with the reason in the row's note. The DGC layer includes its pre-activation
BN + ReLU, which the static conv does not.

PyTorch (interop/torch_beyond.py): ODConv in training and eval; DGC in training and dense eval (the
original implementation has no sparse form, so the sparse rows have no PyTorch column).
"""

from __future__ import annotations

from .. import creation, nn
from ..autograd import no_grad
from ..summary import count
from . import layers
from .layers import OURS, TORCH, LayerCase, Setup

#: DGC's kept fractions compared with its dense form, and its number of heads
DGC_KEEPS = (0.5, 0.25)
DGC_HEADS = 4
#: every row has these keys (None where they do not apply, e.g. a skipped DGC)
ROW_KEYS = ("shape", "layer", "mode", "form", "keep", "ms", "min_ms", "vs_static", "mmacs", "vs_dense",
            "macs_vs_dense", "torch_ms", "torch_min_ms", "ratio", "note")


def dgc_skip_reason(case: LayerCase, heads: int = DGC_HEADS) -> str | None:
    """Why DGC cannot run at `case` (None if it can)."""
    if case.groups != 1:
        return "DGC skipped: it replaces dense convs only (this one is grouped/depthwise)"
    if case.channels % heads or case.out_channels % heads:
        return f"DGC skipped: heads={heads} must divide {case.channels} and {case.out_channels}"
    return None


def build_beyond(case: LayerCase, kind: str, experts: int = 4, heads: int = DGC_HEADS, keep: float = 0.5):
    """Our ODConv2d / DGConv2d at `case`."""
    args = (case.channels, case.out_channels, case.kernel, case.stride, 1)
    if kind == "odconv":
        return nn.ODConv2d(*args, groups=case.groups, experts=experts)
    if kind == "dgc":
        return nn.DGConv2d(*args, heads=heads, keep=keep)
    raise ValueError(f"unknown layer {kind!r}: expected odconv or dgc")


def build_torch_beyond(case: LayerCase, torch, kind: str, experts: int = 4, heads: int = DGC_HEADS,
                       keep: float = 0.5):
    from ..interop import torch_beyond as ref

    args = (case.channels, case.out_channels, case.kernel, case.stride, 1)
    if kind == "odconv":
        return ref.TorchODConv2d(*args, case.groups, experts=experts)
    return ref.TorchDGConv2d(*args, heads=heads, keep=keep)


def macs_per_image(layer, case: LayerCase) -> tuple[int, int]:
    """(training / eval form, fused form) multiply-accumulates per image of `layer`, its routing included."""
    rows = count(layer, (case.channels, case.size, case.size))
    return sum(r.macs_train for r in rows), sum(r.macs_fused for r in rows)


def ours_eval_step(layer, shape: tuple, device: str):
    """eval mode, no graph, the layer as it is (not fused)."""
    layer.eval()
    x = creation.randn(*shape, device=device)

    def step():
        with no_grad():
            layer(x)
    return step


def _entries(setup: Setup, case: LayerCase, mode: str, batch: int, experts: int, heads: int, keeps) -> list[dict]:
    """What to time for one shape and mode: {layer, form, ours (fn), torch (fn or None), macs, keep, note}."""
    shape, torch, tdev = case.input_shape(batch), setup.torch, setup.torch_device
    train = mode == "train"
    ours_step = layers.ours_train_step if train else layers.ours_infer_step

    def torch_step(build):
        if torch is None:
            return None
        layer = build()
        return (layers.torch_train_step if train else layers.torch_infer_step)(layer, shape, torch, tdev)

    static = layers.build_ours(case, "static").to(setup.device)
    entries = [{"layer": "static", "form": "fwd+bwd" if train else "eval",
                "ours": ours_step(static, shape, setup.device),
                "torch": torch_step(lambda: layers.build_torch(case, torch, "static")),
                "macs": layers.conv_flops(case, 1) // 2}]
    od = build_beyond(case, "odconv", experts).to(setup.device)
    od_macs = macs_per_image(od, case)
    entries.append({"layer": "odconv", "form": "fwd+bwd" if train else "fused",
                    "ours": ours_step(od, shape, setup.device),
                    "torch": torch_step(lambda: build_torch_beyond(case, torch, "odconv", experts)),
                    "macs": od_macs[0] if train else od_macs[1]})
    skip = dgc_skip_reason(case, heads)
    if skip:
        entries.append({"layer": "dgc", "form": "-", "note": skip})
        return entries
    dense = build_beyond(case, "dgc", heads=heads, keep=keeps[0]).to(setup.device)
    dense_macs = macs_per_image(dense, case)[0]
    entries.append({"layer": "dgc", "form": "fwd+bwd (dense)" if train else "dense eval", "keep": keeps[0],
                    "ours": (layers.ours_train_step if train else ours_eval_step)(dense, shape, setup.device),
                    "torch": torch_step(lambda: build_torch_beyond(case, torch, "dgc", heads=heads, keep=keeps[0])),
                    "macs": dense_macs,
                    "note": "training cost does not depend on keep" if train else "zeroed channels convolved too"})
    if not train:
        for keep in keeps:
            sparse = build_beyond(case, "dgc", heads=heads, keep=keep).to(setup.device)
            entries.append({"layer": "dgc", "form": f"sparse keep {keep:g}", "keep": keep, "sparse": True,
                            "ours": layers.ours_infer_step(sparse, shape, setup.device), "torch": None,
                            "macs": macs_per_image(sparse, case)[1]})
    return entries


def bench_beyond(setup: Setup, batch: int = 32, experts: int = 4, cases=None, keeps=DGC_KEEPS,
                 heads: int = DGC_HEADS, progress=None) -> list[dict]:
    """Per shape (default DYNAMIC_CASES) and mode: ODConv and DGC rows (see the module docstring).

    Row keys (ROW_KEYS): mmacs is millions of MACs per image; vs_dense and macs_vs_dense are set on
    DGC's sparse rows; ratio is ours / PyTorch (min times).
    """
    rows = []
    for case in layers.DYNAMIC_CASES if cases is None else cases:
        for mode in ("train", "inference"):
            entries = _entries(setup, case, mode, batch, experts, heads, keeps)
            timed = [e for e in entries if "ours" in e]
            fns = {}
            for i, e in enumerate(timed):
                e["index"] = i
                fns[f"{OURS} {i}"] = e["ours"]
                if e.get("torch") is not None:
                    fns[f"{TORCH} {i}"] = e["torch"]
            t = setup.measure(fns)
            static = t[f"{OURS} 0"]
            dense = next((i for i, e in enumerate(timed) if e["layer"] == "dgc" and not e.get("sparse")), None)
            for e in entries:
                row = dict.fromkeys(ROW_KEYS)
                row.update({"shape": case.name, "layer": e["layer"], "mode": mode, "form": e["form"],
                            "keep": e.get("keep"), "note": e.get("note")})
                if "ours" in e:
                    i = e["index"]
                    ours, theirs = t[f"{OURS} {i}"], t.get(f"{TORCH} {i}")
                    row.update({
                        "ms": ours.median_ms, "min_ms": ours.min_ms,
                        "vs_static": ours.min_ms / static.min_ms if i else None, "mmacs": e["macs"] / 1e6,
                        "torch_ms": theirs.median_ms if theirs else None,
                        "torch_min_ms": theirs.min_ms if theirs else None,
                        "ratio": layers._ratio(ours.min_ms, theirs.min_ms if theirs else None)})
                    if e.get("sparse"):
                        row["vs_dense"] = ours.min_ms / t[f"{OURS} {dense}"].min_ms
                        row["macs_vs_dense"] = e["macs"] / timed[dense]["macs"]
                rows.append(row)
            if progress:
                progress(f"odconv/dgc {case.name} {mode}: static {static.min_ms:.2f} ms")
    return rows
