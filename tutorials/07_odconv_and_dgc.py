"""Tutorial 07: ODConv and DGC, and all five dynamic convolutions side by side.

Run:  python tutorials/07_odconv_and_dgc.py [--quick]

CondConv, DY-CNN and CoConv (tutorial 04) choose *which kernels* to mix per sample.
Two more families attend to other things:

- ODConv (omni-dimensional) attends along four axes of the kernel space at once: the
  input channels (alpha_c), the output channels (alpha_f), the k x k positions (alpha_s)
  and the n kernels (alpha_w). Per sample:  y = alpha_f * conv(alpha_c * x, alpha_s * sum_i alpha_w[i] W_i).
- DGC (dynamic group convolution) does the opposite of adding experts: each of H heads
  scores the input channels per sample (a saliency q >= 0), keeps the best fraction g,
  and convolves only those. Trained densely with the pruned channels zeroed, its
  inference form can skip them entirely and do about g times the work.

This script builds one ResNet18-shaped layer of each kind, prints what each one's
routing produces for two different inputs, and compares parameters, MACs and speed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import minicoconv as mc
from minicoconv import nn
from minicoconv.nn.dynamic import set_dgc_progress

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="small sizes, one timing repeat")
args = parser.parse_args()

C, SIZE, BATCH = (32, 8, 4) if args.quick else (128, 16, 16)
mc.manual_seed(0)
print(f"One layer: {C} -> {C} channels, 3x3, on {BATCH} images of {SIZE}x{SIZE}\n")

layers = {
    "static": nn.Conv2d(C, C, 3, padding=1, bias=False),
    "CondConv": nn.CondConv2d(C, C, 3, padding=1),
    "DY-CNN": nn.DyConv2d(C, C, 3, padding=1),
    "CoConv": nn.CoConv2d(C, C, 3, padding=1),
    "ODConv": nn.ODConv2d(C, C, 3, padding=1),
    "DGC (keep 0.5)": nn.DGConv2d(C, C, 3, padding=1, heads=4, keep=0.5),
}
x = mc.randn(BATCH, C, SIZE, SIZE)

# 1. Warm every layer up in training mode (BN statistics), then switch to eval.
for layer in layers.values():
    layer(x)
    layer.eval()

# 2. What each one attends to, for two different samples.
print("1. What the routing produces for sample 0 vs sample 1")
with mc.no_grad():
    r = layers["CondConv"].routing_weights(x).numpy()
    print(f"   CondConv  expert weights (sigmoid):            {np.round(r[0], 3)}  vs  {np.round(r[1], 3)}")
    r = layers["DY-CNN"].routing_weights(x).numpy()
    print(f"   DY-CNN    expert weights (softmax, sum 1):     {np.round(r[0], 3)}  vs  {np.round(r[1], 3)}")
    r = layers["CoConv"].routing_weights(x).numpy()
    print(f"   CoConv    one weight per expert AND output channel: shape {r.shape[1:]}, "
          f"first channel {np.round(r[0, :, 0], 3)} vs {np.round(r[1, :, 0], 3)}")
    a_c, a_f, a_s, a_w = (a.numpy() for a in layers["ODConv"].attentions(x))
    print(f"   ODConv    kernel attention {np.round(a_w[0], 3)}; spatial 3x3 attention of sample 0:")
    print("             " + str(np.round(a_s[0].reshape(3, 3), 3)).replace("\n", "\n             "))
    print(f"             + {a_c.shape[1]} input-channel and {a_f.shape[1]} output-channel weights per sample")
    dgc = layers["DGC (keep 0.5)"]
    q = dgc.saliency(dgc.bn(x).relu())
    kept = dgc.keep_mask(q)
    print(f"   DGC       head 0 keeps {kept[0, 0].sum()} of {C} input channels; sample 0 keeps "
          f"{np.flatnonzero(kept[0, 0])[:8]}..., sample 1 keeps {np.flatnonzero(kept[0, 1])[:8]}...")

# 3. The inference forms are exact.
print("\n2. Fused / sparse inference equals the eval-mode training form")
for name, layer in layers.items():
    if name == "static":
        continue
    with mc.no_grad():
        y, yf = layer(x).numpy(), nn.fuse(layer)(x).numpy()
    print(f"   {name:<15} max |fused - eval| = {np.abs(y - yf).max():.2e}  (output scale {np.abs(y).max():.2f})")

# 4. Parameters, MACs per image, and time.
print("\n3. Cost per image: parameters, MACs (training form / inference form), eval time per batch")


def macs(layer, fused):
    total = 0

    def hook(mod, inputs, out):
        nonlocal total
        if hasattr(mod, "macs"):
            total += mod.macs(inputs, out)
        elif isinstance(mod, nn.Conv2d | nn.Linear):
            fan = int(np.prod(mod.weight.shape[1:]))
            total += int(np.prod(out.shape)) * fan
    target = nn.fuse(layer) if fused else layer
    removers = [m.register_forward_hook(hook) for m in target.modules()]
    with mc.no_grad():
        target(x[:1])
    for remove in removers:
        remove()
    return total


def timed(fn, repeats):
    fn()  # the first call compiles the Numba kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


repeats = 1 if args.quick else 3
print(f"   {'layer':<15} {'params':>9} {'MACs train':>12} {'MACs infer':>12} {'eval ms':>9} {'fused ms':>9}")
for name, layer in layers.items():
    params = sum(p.numel() for p in layer.parameters())
    fused = nn.fuse(layer)
    with mc.no_grad():
        t_eval = timed(lambda layer=layer: layer(x), repeats)
        t_fused = timed(lambda fused=fused: fused(x), repeats)
    print(f"   {name:<15} {params:>9,} {macs(layer, False):>12,} {macs(layer, True):>12,} {t_eval:>9.2f} "
          f"{t_fused:>9.2f}")

print("\nReading the table: CondConv, DY-CNN and ODConv cost one aggregation of n kernels per")
print("sample on top of one convolution; CoConv trains with n convolutions but infers with one;")
print("DGC's sparse form does about `keep` times the static convolution's work.")
set_dgc_progress(nn.Sequential(dgc), 0.0)
print(f"(During training DGC prunes progressively: at progress 0 it prunes {dgc.pruned} channels per head.)")
