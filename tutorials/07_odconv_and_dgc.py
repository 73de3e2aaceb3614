"""Tutorial 07: ODConv and DGC, and all five dynamic convolutions side by side.

How to run it, from the repository root:

    python tutorials/07_odconv_and_dgc.py                      # the whole lesson (about a minute)
    python tutorials/07_odconv_and_dgc.py --quick --plots out  # small sizes, pictures in out/ (the tests)

Or from a notebook: `main(["--quick", "--plots", "out"])`, or call the section functions.

CondConv, DY-CNN and CoConv (tutorial 04) choose *which kernels* to mix per sample.
Two more families attend to other things:

- ODConv (omni-dimensional) attends along four axes of the kernel space at once: the
  input channels (alpha_c), the output channels (alpha_f), the k x k positions (alpha_s)
  and the n kernels (alpha_w). Per sample:  y = alpha_f * conv(alpha_c * x, alpha_s * sum_i alpha_w[i] W_i).
- DGC (dynamic group convolution) does the opposite of adding experts: each of H heads
  scores the input channels per sample (a saliency q >= 0), keeps the best fraction g,
  and convolves only those. Trained densely with the pruned channels zeroed, its
  inference form can skip them entirely and do about g times the work.

What you will learn, one printed section each:

1. What each routing produces for two different inputs (picture: ODConv's spatial attention).
2. Temperature: how dividing the routing logits by T flattens DY-CNN's and ODConv's
   weights, and why both papers start training hot (picture: weights and entropy against T).
3. Which "fused == eval" equalities prove something and which hold by construction.
4. Cost per image: parameters and MACs from `minicoconv.summary`, and measured time,
   with the reasons the time ratios are not the MAC ratios.

The engine files behind each section are named where the section starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import minicoconv as mc
from minicoconv import nn, summary
from minicoconv.bench.timing import measure_interleaved
from minicoconv.lesson import check, new_figure, save_figure, section
from minicoconv.nn import functional as F
from minicoconv.nn.dynamic import set_dgc_progress


def build_layers(channels: int) -> dict[str, nn.Module]:
    mc.manual_seed(0)
    return {
        "static": nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        "CondConv": nn.CondConv2d(channels, channels, 3, padding=1),
        "DY-CNN": nn.DyConv2d(channels, channels, 3, padding=1),
        "CoConv": nn.CoConv2d(channels, channels, 3, padding=1),
        "ODConv": nn.ODConv2d(channels, channels, 3, padding=1),
        "DGC (keep 0.5)": nn.DGConv2d(channels, channels, 3, padding=1, heads=4, keep=0.5),
    }


def warm_up(layers: dict, x: mc.Tensor) -> None:
    """One training-mode forward each (BN running statistics move away from 0 / 1), then eval mode."""
    with mc.no_grad():
        for layer in layers.values():
            layer.train()
            layer(x * 2 + 0.5)
            layer.eval()


# ---------------------------------------------------------------------------------------
def what_each_routing_produces(layers: dict, x: mc.Tensor, plots: Path | None) -> None:
    section(1, "What the routing produces for sample 0 vs sample 1")
    # Engine: minicoconv/nn/dynamic/condconv.py, dycnn.py, coconv.py, odconv.py, dgc.py
    # (one file per layer, the math in each module docstring).
    with mc.no_grad():
        r = layers["CondConv"].routing_weights(x).numpy()
        print(f"CondConv  expert weights (sigmoid):        {np.round(r[0], 3)}  vs  {np.round(r[1], 3)}")
        check(r.shape == (x.shape[0], 4) and np.all((r > 0) & (r < 1)), "CondConv: one sigmoid weight per expert")
        r = layers["DY-CNN"].routing_weights(x).numpy()
        print(f"DY-CNN    expert weights (softmax, sum 1): {np.round(r[0], 3)}  vs  {np.round(r[1], 3)}")
        check(np.allclose(r.sum(axis=1), 1, atol=1e-6), "DY-CNN: the weights of each sample sum to 1")
        r = layers["CoConv"].routing_weights(x).numpy()
        print(f"CoConv    one weight per expert AND output channel: shape {r.shape[1:]}, "
              f"first channel {np.round(r[0, :, 0], 3)} vs {np.round(r[1, :, 0], 3)}")
        check(r.shape[1:] == (4, x.shape[1]), "CoConv: (experts, C') weights per sample")
        a_c, a_f, a_s, a_w = (a.numpy() for a in layers["ODConv"].attentions(x))
        print(f"ODConv    kernel attention {np.round(a_w[0], 3)}; spatial 3x3 attention of sample 0:")
        print("          " + str(np.round(a_s[0].reshape(3, 3), 3)).replace("\n", "\n          "))
        print(f"          + {a_c.shape[1]} input-channel and {a_f.shape[1]} output-channel weights per sample")
        check(a_s.shape == (x.shape[0], 9) and np.allclose(a_w.sum(axis=1), 1, atol=1e-6),
              "ODConv: 9 spatial weights per sample, kernel weights summing to 1")
        check(np.abs(a_s[0] - a_s[1]).max() > 0, "ODConv: each sample gets its own spatial attention")
        dgc = layers["DGC (keep 0.5)"]
        q = dgc.saliency(dgc.bn(x).relu())
        kept = dgc.keep_mask(q)
    c = x.shape[1]
    print(f"DGC       head 0 keeps {kept[0, 0].sum()} of {c} input channels; sample 0 keeps "
          f"{np.flatnonzero(kept[0, 0])[:8]}..., sample 1 keeps {np.flatnonzero(kept[0, 1])[:8]}...")
    check(int(kept[0, 0].sum()) == c - dgc.pruned, f"DGC: each head keeps C - m = {c - dgc.pruned} channels")

    if plots is not None:
        shown = min(4, x.shape[0])
        fig = new_figure(2.2 * shown, 2.4)
        axes = fig.subplots(1, shown, squeeze=False)[0]
        for b, ax in enumerate(axes):
            image = ax.imshow(a_s[b].reshape(3, 3), cmap="viridis", vmin=a_s[:shown].min(), vmax=a_s[:shown].max())
            ax.set_title(f"sample {b}")
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(image, ax=list(axes), shrink=0.8)
        fig.suptitle("ODConv: spatial attention alpha_s over the 3x3 kernel positions")
        save_figure(fig, plots, "07_odconv_spatial_attention.png")


# ---------------------------------------------------------------------------------------
def entropy(weights: np.ndarray) -> float:
    """Mean entropy of rows that sum to 1, normalised by log(n): 1 = uniform, 0 = one expert."""
    p = np.clip(weights, 1e-12, 1.0)
    return float((-(p * np.log(p)).sum(axis=1) / np.log(weights.shape[1])).mean())


def temperature_effect(layers: dict, x: mc.Tensor, plots: Path | None) -> None:
    section(2, "Temperature: softmax(logits / T)")
    # Engine: minicoconv/nn/dynamic/dycnn.py and odconv.py (the schedules, in each layer's
    # on_training_progress hook, active with --anneal); the trainer calls the hook before every
    # step without knowing the layer (minicoconv/nn/dynamic/hooks.py, minicoconv/train/trainer.py).
    #
    # softmax(z / T) with a large T is nearly uniform whatever z is: every expert gets about
    # 1/n of every sample, so every expert receives gradient from every sample early on. As T
    # falls to 1 the routing may become selective. Both papers anneal T from 30 to 1 over the
    # first epochs; without it, one expert can win early and the others never train.
    temperatures = [0.25, 0.5, 1.0, 2.0, 5.0, 30.0]
    dy, od = layers["DY-CNN"], layers["ODConv"]
    dy_weights, od_weights = [], []
    saved = dy.temperature, od.temperature
    try:
        with mc.no_grad():
            for t in temperatures:
                dy.temperature = od.temperature = t
                dy_weights.append(dy.routing_weights(x).numpy())
                od_weights.append(od.attentions(x)[3].numpy())
    finally:
        dy.temperature, od.temperature = saved
    print(f"{'T':>6} {'DY-CNN sample 0':>34} {'entropy':>8} {'ODConv alpha_w entropy':>23}")
    dy_h = [entropy(w) for w in dy_weights]
    od_h = [entropy(w) for w in od_weights]
    for t, w, h, ho in zip(temperatures, dy_weights, dy_h, od_h):
        print(f"{t:>6g} {str(np.round(w[0], 3)):>34} {h:>8.4f} {ho:>23.4f}")
    check(all(a < b for a, b in zip(dy_h, dy_h[1:])), "DY-CNN: a higher temperature gives a flatter routing")
    check(all(a < b for a, b in zip(od_h, od_h[1:])), "ODConv: the same for its kernel attention")
    check(np.abs(dy_weights[-1] - 0.25).max() < 0.01, "at T = 30 every expert gets about 1/n = 0.25")
    print("An untrained router's logits are small, so even T = 1 is fairly flat here; training grows them,")
    print("and T then decides how sharply the layer may pick its experts.")

    if plots is not None:
        fig = new_figure(9, 3.2)
        left, right = fig.subplots(1, 2)
        n = dy_weights[0].shape[1]
        width = 0.8 / len(temperatures)
        for j, (t, w) in enumerate(zip(temperatures, dy_weights)):
            left.bar(np.arange(n) + j * width, w[0], width, label=f"T = {t:g}")
        left.set_xticks(np.arange(n) + 0.4 - width / 2, [f"expert {i}" for i in range(n)])
        left.set_ylabel("routing weight (sample 0)")
        left.set_title("DY-CNN: softmax(logits / T)")
        left.legend(fontsize=7)
        right.semilogx(temperatures, dy_h, "o-", label="DY-CNN")
        right.semilogx(temperatures, od_h, "s-", label="ODConv alpha_w")
        right.set_xlabel("temperature T")
        right.set_ylabel("routing entropy (1 = uniform)")
        right.set_title("flatter as T grows")
        right.legend()
        save_figure(fig, plots, "07_temperature_routing.png")


# ---------------------------------------------------------------------------------------
def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


def what_fusion_proves(layers: dict, x: mc.Tensor) -> None:
    section(3, "Inference forms: which equalities prove something")
    # Engine: minicoconv/nn/dynamic/fused.py (nn.fuse walks a model and asks each layer),
    # the layers' own fuse() methods, and minicoconv/backend/cpu/per_sample_conv.py.
    with mc.no_grad():
        # CondConv and DY-CNN: training already runs one aggregated kernel per sample, so there is
        # nothing to fuse: fuse() returns the layer itself and "fused - eval" is 0 by construction.
        for name in ("CondConv", "DY-CNN"):
            layer = layers[name]
            check(nn.fuse(layer) is layer, f"{name}: nn.fuse returns the layer itself (fused - eval = 0, trivially)")
            # What is worth checking is the batched computation against the definition, one image at a time:
            r = layer.routing_weights(x).numpy()
            kernels = np.einsum("bn,n...->b...", r, layer.weight.numpy())
            by_hand = F.per_sample_conv2d(x, mc.tensor(kernels), padding=1).numpy()
            err = max_diff(layer(x).numpy(), by_hand)
            check(err < 1e-4, f"{name}: conv(x_b, sum_i r_bi W_i), image by image, matches ({err:.1e})")

        # ODConv: its fused module calls the same forward in eval mode under no_grad, so again
        # fused - eval = 0 by construction. The real question is whether applying alpha_c to the
        # input and alpha_f to the output equals folding both into the kernel (the paper's form):
        od = layers["ODConv"]
        check(max_diff(nn.fuse(od)(x).numpy(), od(x).numpy()) == 0.0,
              "ODConv: fused - eval = 0 exactly (the same computation, so this proves nothing)")
        kernels = od.per_sample_kernels(*od.attentions(x))
        err = max_diff(F.per_sample_conv2d(x, kernels, padding=1).numpy(), od(x).numpy())
        check(err < 1e-4, f"ODConv: conv(x_b, alpha_f alpha_c alpha_s sum_i alpha_w W_i) matches ({err:.1e})")

        # CoConv: NOT trivial. Training runs n convolutions, n BatchNorms and a weighted sum; the fused
        # form runs ONE convolution with kernel sum_i (r_i a_i) W_i (tutorial 04, section 4 derives it).
        # Two different computations agree only because the algebra is right.
        co = layers["CoConv"]
        y, y_fused = co(x).numpy(), nn.fuse(co)(x).numpy()
        err, scale = max_diff(y, y_fused), float(np.abs(y).max())
        check(nn.fuse(co) is not co and err < 1e-5 * scale,
              f"CoConv: fused - eval = {err:.1e} (outputs up to {scale:.2f}): float32 rounding of a different "
              "computation")

        # DGC: also not trivial. The training form convolves all C channels with the pruned ones
        # zeroed; the sparse form gathers only the kept channels and convolves fewer of them.
        dgc = layers["DGC (keep 0.5)"]
        y, y_sparse = dgc(x).numpy(), nn.fuse(dgc)(x).numpy()
        err, scale = max_diff(y, y_sparse), float(np.abs(y).max())
        check(err < 1e-5 * scale, f"DGC: sparse - dense = {err:.1e} (outputs up to {scale:.2f})")


# ---------------------------------------------------------------------------------------
def cost_per_image(layers: dict, x: mc.Tensor, repeats: int) -> None:
    section(4, "Cost per image: parameters, MACs and measured time")
    # Engine: minicoconv/summary.py counts MACs by tracing one image through the training form
    # and through nn.fuse(model); minicoconv/bench/timing.py times calls round-robin.
    c, size = x.shape[1], x.shape[2]
    rows = {}
    for name, layer in layers.items():
        counted = summary.count(layer, (c, size, size))
        rows[name] = {"params": sum(p.numel() for p in layer.parameters()),
                      "train": sum(r.macs_train for r in counted), "fused": sum(r.macs_fused for r in counted)}

    # Time eval-mode forwards of every layer round-robin, so a busy moment of the machine hits
    # all of them alike; report the median and the minimum of the repeats.
    calls = {}
    for name, layer in layers.items():
        fused = nn.fuse(layer)
        calls[name + " eval"] = (lambda layer=layer: layer(x))
        calls[name + " fused"] = (lambda fused=fused: fused(x))
    with mc.no_grad():
        times = measure_interleaved(calls, repeats=repeats, warmup=1)
    print(f"{x.shape[0]} images of {c} x {size} x {size}; times: median (min) of {repeats} interleaved repeats.")
    print("The machine may be busy (other processes, a laptop on battery): rerun and compare.\n")
    print(f"{'layer':<15} {'params':>9} {'MACs train':>12} {'MACs fused':>12} {'eval ms':>15} {'fused ms':>15}")
    for name, row in rows.items():
        te, tf = times[name + " eval"], times[name + " fused"]
        print(f"{name:<15} {row['params']:>9,} {row['train']:>12,} {row['fused']:>12,} "
              f"{te.median_ms:>7.2f} ({te.min_ms:5.2f}) {tf.median_ms:>7.2f} ({tf.min_ms:5.2f})")
    static = rows["static"]["train"]
    check(rows["CoConv"]["train"] > 3.5 * static, "CoConv's training form costs about n = 4 static convolutions")
    check(rows["CoConv"]["fused"] < 1.2 * static, "fused, it costs about one static convolution (plus mixing)")
    check(rows["DGC (keep 0.5)"]["fused"] < 0.75 * rows["DGC (keep 0.5)"]["train"],
          "DGC's sparse form counts about `keep` of the dense MACs")

    ratio = {name: times[name + " fused"].min_ms / times["static fused"].min_ms for name in rows}
    print("\nReading the table (ratios of the minimum times to the static convolution's):")
    print("  " + ", ".join(f"{name} {r:.1f}x" for name, r in ratio.items()))
    noisy = [name for name, r in ratio.items() if r < 1 and rows[name]["fused"] >= rows["static"]["fused"]]
    if noisy:
        print(f"  ({', '.join(noisy)} measured faster than static while doing more MACs: that is the machine's")
        print("   load moving between repeats, not a real speed-up; rerun, or raise the repeats.)")
    print("- MACs count multiply-adds, not time. The static convolution is one im2col plus ONE large GEMM,")
    print("  which BLAS runs near peak. A dynamic layer first builds each sample's kernel from n experts")
    print("  (n * |W| multiply-adds per sample, but memory-bound: every expert weight is read once per")
    print("  sample) and then convolves each sample with its own kernel, a kernel entry serving only that")
    print("  sample's H'W' pixels (minicoconv/ops/dynamic_conv.py, minicoconv/backend/cpu/mixture_aggregate.py,")
    print("  per_sample_conv.py and mixture_conv.py). Where a fused form runs slower than its MAC count,")
    print("  close to the static one's, suggests, that is why; tutorial 04 (section 5) measures the split.")
    print("- The routing branch is a handful of tiny ops (pooling, 1x1 convs, sigmoid/softmax) whose cost is")
    print("  Python and launch overhead, not arithmetic: it is invisible in MACs and visible in ms, most")
    print("  of all at small sizes like these.")
    print("- DGC's sparse form convolves each sample and head with only its kept channels (a Numba kernel,")
    print("  minicoconv/backend/cpu/gathered_conv.py): about `keep` of the MACs, but a different kernel per")
    print("  sample and head instead of one BLAS GEMM, so the time saved is less than the MACs saved.")
    set_dgc_progress(nn.Sequential(layers["DGC (keep 0.5)"]), 0.0)
    print(f"(During training DGC prunes progressively: at progress 0 it prunes "
          f"{layers['DGC (keep 0.5)'].pruned} channels per head; a new layer starts fully pruned.)")


# ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few timing repeats (used by the tests)")
    parser.add_argument("--plots", metavar="DIR", type=Path, help="write the pictures (PNG) to DIR")
    args = parser.parse_args(argv)
    channels, size, batch, repeats = (32, 8, 4, 3) if args.quick else (128, 16, 16, 7)

    layers = build_layers(channels)
    mc.manual_seed(1)
    x = mc.randn(batch, channels, size, size)
    print(f"One layer of each kind: {channels} -> {channels} channels, 3x3, on {batch} images of {size}x{size}")
    warm_up(layers, x)
    what_each_routing_produces(layers, x, args.plots)
    temperature_effect(layers, x, args.plots)
    what_fusion_proves(layers, x)
    cost_per_image(layers, x, repeats)
    print("\nDone: five routings, temperature, what the inference forms prove, and what they cost.")


if __name__ == "__main__":
    main()
