"""Tutorial 04: dynamic convolutions -- CondConv, DY-CNN and CoConv, and why CoConv fuses exactly.

How to run it, from the repository root:

    python tutorials/04_dynamic_convolutions.py                      # the whole lesson (under a minute)
    python tutorials/04_dynamic_convolutions.py --quick --plots out  # tiny sizes, pictures in out/ (the tests)

Or from a notebook: `main(["--quick", "--plots", "out"])`, or call the section functions.

What you will learn, one printed section each:

1. Static vs dynamic: a static conv applies one kernel to every image; a dynamic conv
   builds a kernel per image from n "experts", mixed by a small routing network
   (picture: the experts and the mixed kernels).
2. CoConv's routing branch, step by step: A1, A3, concat, 1x1 conv, depthwise 3x3,
   1x1 conv, sigmoid -- with the shape after every step.
3. What the experts' weights look like per sample: different inputs, different mixtures
   (pictures: routing weights per image, CoConv's per-channel gates).
4. Why fusion is exact: the paper's eq. 3 derived in the comments, then checked
   numerically (fused inference vs the eval-mode training form).
5. What it costs: parameters, multiply-accumulates (training and fused form) and measured
   forward times of static, CondConv, DY-CNN and CoConv for one ResNet18-shaped layer, and
   why the time ratios are not the MAC ratios.

Read the code alongside the output: each printed line is produced by the code just above it.
The semantics follow docs/layers.md; tutorial 07 adds ODConv and DGC. Each section names
the engine files that implement it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import minicoconv as mc
from minicoconv import nn, summary
from minicoconv.bench.profile import op_profile
from minicoconv.bench.timing import measure_interleaved
from minicoconv.lesson import check, new_figure, save_figure, section
from minicoconv.nn import functional as F


def max_diff(a: mc.Tensor, b: mc.Tensor) -> float:
    return float(np.abs(a.numpy() - b.numpy()).max())


# ---------------------------------------------------------------------------------------
def static_vs_dynamic(channels: int, size: int, plots: Path | None = None) -> None:
    section(1, "Static vs dynamic convolution on one layer")
    # Engine: minicoconv/nn/layers/conv.py (Conv2d), minicoconv/nn/dynamic/condconv.py and dycnn.py
    # (the routing), minicoconv/nn/dynamic/base.py (MixtureConv2d.forward), and the batched
    # computation in minicoconv/ops/dynamic_conv.py -> minicoconv/backend/cpu/mixture_conv.py,
    # mixture_aggregate.py and per_sample_conv.py (plain NumPy twins in minicoconv/backend/reference/).
    mc.manual_seed(0)
    x = mc.randn(3, channels, size, size)  # 3 images

    # A static convolution has ONE kernel (C', C, k, k), shared by every image.
    static = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    print(f"static Conv2d weight:      {static.weight.shape}   (C', C, k, k)")

    # CondConv has n = 4 expert kernels (n, C', C, k, k) and a routing layer that looks at
    # the image (its global average pool) and outputs one weight per expert:
    #     r_b = sigmoid(Linear(GAP(x_b)))          (n,)    for image b
    #     y_b = conv(x_b, sum_i r_bi W_i)                   one mixed kernel per image
    cond = nn.CondConv2d(channels, channels, 3, padding=1, experts=4)
    print(f"CondConv2d expert bank:    {cond.weight.shape}   (n, C', C, k, k)")
    r = cond.routing_weights(x)
    print(f"routing weights r:         {r.shape}   (N, n), one row per image:")
    print(np.round(r.numpy(), 3))

    # The same thing by hand: build each image's kernel, run a plain convolution with it.
    y = cond(x)
    for b in range(3):
        kernel = (r[b].reshape(4, 1, 1, 1, 1) * cond.weight).sum(axis=0)  # (C', C, k, k)
        y_b = F.conv2d(x[b:b + 1], kernel, padding=1)
        check(max_diff(y_b, y[b:b + 1]) < 1e-5, f"image {b}: CondConv == conv(x_b, sum_i r_bi W_i)")
    kernels = np.einsum("bn,n...->b...", r.numpy(), cond.weight.numpy())
    print(f"the 3 per-image kernels differ: max |K_0 - K_1| = {np.abs(kernels[0] - kernels[1]).max():.4f}")
    if plots is not None:
        experts = cond.weight.numpy()[:, 0, 0]           # (n, k, k): output channel 0, input channel 0
        fig = new_figure(9, 4.2)
        axes = fig.subplots(2, 4)
        lo, hi = min(experts.min(), kernels[:, 0, 0].min()), max(experts.max(), kernels[:, 0, 0].max())
        for i, ax in enumerate(axes[0]):
            ax.imshow(experts[i], cmap="RdBu_r", vmin=lo, vmax=hi)
            ax.set_title(f"expert W_{i}", fontsize=9)
        for b, ax in enumerate(axes[1][:3]):
            ax.imshow(kernels[b, 0, 0], cmap="RdBu_r", vmin=lo, vmax=hi)
            ax.set_title(f"image {b}", fontsize=9)
            ax.set_xlabel(f"r = {np.round(r.numpy()[b], 2)}", fontsize=7)
        axes[1][3].axis("off")
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle("CondConv: 4 expert 3x3 kernels (top) and each image's mixed kernel sum_i r_bi W_i (bottom)")
        save_figure(fig, plots, "04_mixed_kernels.png")

    # Inside, minicoconv never loops over images: F.dynamic_conv2d aggregates all kernels with one
    # GEMM (N x n times n x |W|) and runs one batched GEMM over a shared im2col.
    check(max_diff(F.dynamic_conv2d(x, cond.weight, r, padding=1), y) < 1e-5,
          "F.dynamic_conv2d(x, bank, r) is the same computation, batched")

    # DY-CNN differs only in the routing: a 2-layer MLP and a softmax, so the weights sum to 1.
    dy = nn.DyConv2d(channels, channels, 3, padding=1, experts=4)
    r_dy = dy.routing_weights(x).numpy()
    print(f"DY-CNN routing (softmax), rows sum to {np.round(r_dy.sum(axis=1), 6)}:")
    print(np.round(r_dy, 3))


# ---------------------------------------------------------------------------------------
def coconv_routing_step_by_step(channels: int, size: int) -> None:
    section(2, "The CoConv routing branch, step by step")
    # Engine: minicoconv/nn/dynamic/coconv.py (CoConvRouting and CoConv2d), pooling in
    # minicoconv/ops/pool.py -> minicoconv/backend/cpu/adaptive_pool_kernels.py.
    mc.manual_seed(1)
    n, c_out = 4, channels
    layer = nn.CoConv2d(channels, c_out, 3, padding=1, experts=n)
    routing = layer.routing  # reduce (1x1), spatial (depthwise 3x3), expand (1x1): all bias-free
    x = mc.randn(2, channels, size, size)
    print(f"x:                          {x.shape}")

    # 1. Two scales of context: the global average (1x1) and a coarse 3x3 grid of averages.
    #    Adaptive pooling splits an axis of length L into o bins [floor(jL/o), ceil((j+1)L/o)),
    #    PyTorch's rule; for L = 5, o = 3 the bins are [0,2), [1,4), [3,5) -- they overlap.
    a1 = F.adaptive_avg_pool2d(x, 1)
    a3 = F.adaptive_avg_pool2d(x, 3)
    print(f"1. A1 = avg pool to 1x1:    {a1.shape}")
    print(f"   A3 = avg pool to 3x3:    {a3.shape}")
    bins = [(j * size // 3, -(-(j + 1) * size // 3)) for j in range(3)]
    print(f"   3x3 bins of a {size}x{size} map (rows and columns): {bins}")

    # 2. Expand A1 to 3x3 and stack it with A3 along the channels.
    feat = mc.cat([a1.expand(2, channels, 3, 3), a3], axis=1)
    print(f"2. concat [A1 expanded, A3]: {feat.shape}   (N, 2C, 3, 3)")

    # 3. A 1x1 conv squeezes 2C channels to s = max(C // 16, 16), then ReLU.
    h = routing.reduce(feat).relu()
    print(f"3. 1x1 conv 2C -> s, ReLU:  {h.shape}   (s = max({channels} // 16, 16) = {h.shape[1]})")

    # 4. A depthwise 3x3 conv without padding: each channel learns its own weighting of the 9
    #    positions -- the paper's "learnable linear combination of the spatial information".
    h = routing.spatial(h).relu()
    print(f"4. depthwise 3x3, ReLU:     {h.shape}   (the 3x3 grid collapses to 1x1)")

    # 5. A 1x1 conv to one value per expert AND per output channel.
    logits = routing.expand(h)
    print(f"5. 1x1 conv s -> n*C':      {logits.shape}   (n*C' = {n}*{c_out})")

    # 6. Sigmoid, reshaped so that expert i gets its own C' channel weights.
    r = logits.reshape(2, n, c_out).sigmoid()
    print(f"6. sigmoid, reshape:        {r.shape}   (N, n, C')")
    check(max_diff(r, layer.routing_weights(x)) < 1e-6, "the six steps reproduce layer.routing_weights(x)")

    # Training form: y = sum_i r_i * BN_i(conv(x, W_i)), r_i broadcast over H x W. minicoconv runs
    # the n experts as ONE convolution with n*C' output channels and ONE BatchNorm over them.
    y = layer(x)
    print(f"CoConv output:              {y.shape}")


# ---------------------------------------------------------------------------------------
def routing_per_sample(channels: int, size: int, plots: Path | None = None) -> None:
    section(3, "What the experts' weights look like per sample")
    # Engine: CoConv2d.routing_weights in minicoconv/nn/dynamic/coconv.py; `minicoconv inspect`
    # (minicoconv/diagnostics/routing.py) computes such statistics for a trained model.
    mc.manual_seed(2)
    layer = nn.CoConv2d(channels, channels, 3, padding=1, experts=4)
    # Three rather different inputs: noise, a smooth left-to-right ramp, a checkerboard.
    ramp = np.broadcast_to(np.linspace(-2, 2, size, dtype=np.float32), (channels, size, size))
    checker = np.indices((size, size)).sum(axis=0) % 2 * 4.0 - 2.0
    images = np.stack([np.random.default_rng(0).normal(size=(channels, size, size)), ramp,
                       np.broadcast_to(checker, (channels, size, size))]).astype(np.float32)
    names = ["noise", "ramp", "checkerboard"]
    r = layer.routing_weights(mc.tensor(images)).numpy()  # (3, n, C')
    print(f"CoConv routing weights r, shape {r.shape}; the first 4 output channels of each expert:")
    for b, name in enumerate(names):
        print(f"  {name:>12}: " + "  ".join(f"expert {i}: {np.round(r[b, i, :4], 3)}" for i in range(2)) + "  ...")
    # (An untrained routing branch stays close to sigmoid(0) = 0.5; training spreads the weights.)
    diffs = [np.abs(r[a] - r[b]).max() for a in range(3) for b in range(a + 1, 3)]
    print(f"max |r_a - r_b| between the images: {np.round(diffs, 4)}")
    check(min(diffs) > 1e-4, "every image gets its own mixture of experts")
    # Each expert gets a weight per OUTPUT CHANNEL (CondConv / DY-CNN: one scalar per expert).
    spread = r.std(axis=2).mean()
    print(f"spread of one expert's weights across its channels (mean std): {spread:.4f}")
    check(spread > 0, "CoConv's weights vary across the channels of one expert")
    if plots is not None:
        n = r.shape[1]
        fig = new_figure(6, 3)
        ax = fig.subplots()
        width = 0.8 / len(names)
        for b, name in enumerate(names):
            ax.bar(np.arange(n) + b * width, r[b].mean(axis=1), width, label=name)
        ax.set_xticks(np.arange(n) + 0.4 - width / 2, [f"expert {i}" for i in range(n)])
        ax.set_ylabel("mean gate over output channels")
        ax.set_title("CoConv routing weights per image (untrained layer)")
        ax.legend(fontsize=8)
        save_figure(fig, plots, "04_routing_per_image.png")

        fig = new_figure(9, 1.2 + 0.9 * len(names))
        axes = fig.subplots(len(names), 1, squeeze=False)[:, 0]
        for b, (ax, name) in enumerate(zip(axes, names)):
            image = ax.imshow(r[b], cmap="viridis", aspect="auto", vmin=r.min(), vmax=r.max())
            ax.set_ylabel(name, fontsize=8)
            ax.set_yticks(range(n), [f"e{i}" for i in range(n)], fontsize=7)
            if b < len(names) - 1:
                ax.set_xticks([])
        axes[-1].set_xlabel("output channel")
        fig.colorbar(image, ax=list(axes))
        fig.suptitle("CoConv's per-channel gates r[b, expert, channel]: one weight per expert AND channel")
        save_figure(fig, plots, "04_coconv_channel_gates.png")


# ---------------------------------------------------------------------------------------
def fusion_is_exact(channels: int, size: int) -> None:
    section(4, "Why fusion is exact (paper eq. 3)")
    # Engine: CoConv2d.expert_affine and fuse in minicoconv/nn/dynamic/coconv.py, FusedCoConv2d and
    # nn.fuse in minicoconv/nn/dynamic/fused.py, F.dynamic_conv2d in minicoconv/ops/dynamic_conv.py.
    # In eval mode each expert's BatchNorm is a fixed affine map per channel:
    #     BN_i(z) = gamma_i (z - mean_i) / sqrt(var_i + eps) + beta_i = a_i * z + c_i,
    #     a_i = gamma_i / sqrt(var_i + eps),   c_i = beta_i - a_i * mean_i.
    # A convolution is linear in its kernel, and a per-output-channel scale of its output is
    # the same scale of the kernel's rows:  a * conv(x, W) = conv(x, a * W). Hence, for image b,
    #     y_b = sum_i r_bi * BN_i(conv(x_b, W_i))
    #         = sum_i r_bi * (a_i * conv(x_b, W_i) + c_i)
    #         = sum_i conv(x_b, (r_bi * a_i) * W_i) + sum_i r_bi * c_i
    #         = conv(x_b, sum_i (r_bi * a_i) * W_i) + sum_i r_bi * c_i          (eq. 3, with BN)
    # ONE convolution per image with an aggregated kernel instead of n: inference does about the
    # multiply-adds of a static convolution (its TIME is another matter: section 5 measures it).
    # In training mode BN uses batch statistics, which depend on the whole batch, so this
    # rewrite only holds in eval mode.
    mc.manual_seed(3)
    layer = nn.CoConv2d(channels, channels, 3, padding=1, experts=4)
    with mc.no_grad():  # a few training forwards move the BN running statistics away from 0 / 1
        for _ in range(3):
            layer(mc.randn(4, channels, size, size) * 2 + 0.5)
    try:
        nn.fuse(layer)
    except RuntimeError as err:
        print(f"fuse() in training mode  -> {err}")
    layer.eval()
    fused = nn.fuse(layer)
    print(f"fused form: {fused!r}")

    x = mc.randn(3, channels, size, size)
    with mc.no_grad():
        y_eval, y_fused = layer(x), fused(x)
    err, scale = max_diff(y_eval, y_fused), float(np.abs(y_eval.numpy()).max())
    print(f"max |fused - eval| = {err:.2e}   (outputs up to {scale:.2f})")
    check(err < 1e-5 * scale, "the fused form equals the eval-mode training form to float32 rounding")

    # The same by hand: a_i, c_i from each expert's BN, one kernel per image.
    a, c = layer.expert_affine()                       # (n, C') each
    r = layer.routing_weights(x).numpy()               # (N, n, C')
    kernels = np.einsum("bnc,nc...->bc...", r * a, layer.weight.numpy())  # (N, C', C, k, k)
    bias = (r * c).sum(axis=1)                         # (N, C')
    y_hand = F.per_sample_conv2d(x, mc.tensor(kernels), padding=1) + mc.tensor(bias).reshape(3, channels, 1, 1)
    check(max_diff(y_hand, y_eval) < 1e-5 * scale, "conv(x_b, sum_i (r_bi a_i) W_i) + sum_i r_bi c_i by hand")

    # The fused module shares the parameters: train the CoConv2d, fuse again -- or not even that.
    layer.weight.data = layer.weight.data * 0.5
    with mc.no_grad():
        check(max_diff(fused(x), layer(x)) < 1e-5 * scale, "the fused form sees weight changes (shared parameters)")


# ---------------------------------------------------------------------------------------
def costs(channels: int, size: int, batch: int, repeats: int) -> None:
    section(5, "What it costs: one ResNet18-shaped layer")
    # Engine: minicoconv/summary.py (MACs, traced through the training and the fused form) and
    # minicoconv/bench/timing.py (the timer `minicoconv bench` uses).
    print(f"a 3x3 conv {channels} -> {channels} on {size}x{size} maps (ResNet18-CIFAR stage 3 is 256 "
          f"on 8x8), n = 4 experts, batch {batch}\n")
    mc.manual_seed(4)
    layers = {
        "static": nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        "CondConv": nn.CondConv2d(channels, channels, 3, padding=1, experts=4),
        "DY-CNN": nn.DyConv2d(channels, channels, 3, padding=1, experts=4),
        "CoConv": nn.CoConv2d(channels, channels, 3, padding=1, experts=4),
    }
    x = mc.randn(batch, channels, size, size)
    with mc.no_grad():
        layers["CoConv"](x)  # non-trivial BN statistics before fusing
    rows, calls = {}, {}
    for name, layer in layers.items():
        # summary.count traces one image through the training form and through nn.fuse(layer);
        # a layer counts its routing branch too (its convs / linears are rows of their own).
        counted = summary.count(layer, (channels, size, size))
        rows[name] = (sum(p.numel() for p in layer.parameters()), sum(r.macs_train for r in counted),
                      sum(r.macs_fused for r in counted))
        layer.eval()
        fused = nn.fuse(layer)
        calls[name] = (lambda layer=layer: layer(x))                 # eval-mode training form
        calls[name + " fused"] = (lambda fused=fused: fused(x))
    # Every call runs round-robin with the others, `repeats` times after one warm-up (Numba loads
    # its compiled kernels on first use), so a burst of load elsewhere hits all of them alike.
    with mc.no_grad():
        times = measure_interleaved(calls, repeats=repeats, warmup=1)
    print(f"forward times: median (min) of {repeats} interleaved repeats, in ms. The machine may be busy:")
    print("the minimum is the best estimate of a call's own cost; rerun to see how much the medians move.\n")
    print(f"{'layer':<9} {'params':>10} {'MACs/image train':>17} {'MACs/image fused':>17} "
          f"{'eval fwd ms':>15} {'fused fwd ms':>15}")
    for name, (params, macs_train, macs_fused) in rows.items():
        te, tf = times[name], times[name + " fused"]
        print(f"{name:<9} {params:>10,} {macs_train:>17,} {macs_fused:>17,} {te.median_ms:>7.2f} ({te.min_ms:5.2f}) "
              f"{tf.median_ms:>7.2f} ({tf.min_ms:5.2f})")
    static_macs = rows["static"][1]
    static_ms = times["static fused"].min_ms
    co_ms, co_train_ms = times["CoConv fused"].min_ms, times["CoConv"].min_ms
    print("\nReading the table:")
    print(f"- every dynamic layer stores ~n = 4 times the static kernels ({rows['CoConv'][0] / rows['static'][0]:.2f}x "
          "for CoConv, whose expert BNs and routing convs add a little);")
    print(f"- CoConv's training form runs n convolutions ({rows['CoConv'][1] / static_macs:.2f}x the static MACs), "
          "CondConv and DY-CNN one per image;")
    print(f"- fused, CoConv runs one aggregated kernel per image: {rows['CoConv'][2] / static_macs:.3f}x the static "
          "MACs (building the kernels costs n * |W| per image).")
    print(f"- measured, fused CoConv took {co_ms / static_ms:.1f}x the static time (minimum of the repeats) and the")
    print(f"  eval-mode training form {co_train_ms / static_ms:.1f}x: time ratios are not MAC ratios. Why:")
    why_time_is_not_macs(layers["static"], layers["CoConv"], x, repeats)
    check(rows["CoConv"][2] < 1.15 * static_macs, "fused CoConv does only slightly more MACs than the static conv")
    check(rows["CoConv"][1] > 3.5 * static_macs, "training-form CoConv does about n times the static MACs")


def why_time_is_not_macs(static: nn.Module, coconv: nn.Module, x: mc.Tensor, repeats: int) -> None:
    """Split fused CoConv's time into routing, kernel building and the per-image convolutions, measured."""
    # Engine: minicoconv/bench/profile.py times every op's forward for one call; the mixed-kernel
    # op is DynamicConv2d (minicoconv/ops/dynamic_conv.py -> minicoconv/backend/cpu/mixture_aggregate.py,
    # per_sample_conv.py and, for small maps, mixture_conv.py).
    fused = nn.fuse(coconv)
    with mc.no_grad():
        fused(x)  # warm-up
        profile = op_profile(lambda: fused(x))
        # The same per-image kernels, built beforehand with NumPy, so that only the convolution is timed.
        a, _ = coconv.expert_affine()
        r = coconv.routing_weights(x).numpy()
        kernels = mc.tensor(np.einsum("bnc,nc...->bc...", r * a, coconv.weight.numpy()).astype(np.float32))
        times = measure_interleaved({"static": lambda: static(x),
                                     "per-image": lambda: F.per_sample_conv2d(x, kernels, padding=1)},
                                    repeats=repeats, warmup=1)
    total = sum(p.seconds for p in profile)
    mixed = sum(p.seconds for p in profile if p.op == "DynamicConv2d")
    t_static, t_per_image = times["static"].min_ms / 1e3, times["per-image"].min_ms / 1e3
    print(f"  one fused CoConv forward, op by op ({total * 1e3:.1f} ms):")
    for p in profile[:4]:
        print(f"    {p.op:<20} {p.calls:>2} call(s) {p.seconds * 1e3:>8.2f} ms {100 * p.seconds / total:5.1f}%")
    print(f"  * routing branch (every op but DynamicConv2d): {100 * (1 - mixed / total):.0f}% of the time for under")
    print("    1% of the MACs: a dozen small ops (pooling, 1x1 and depthwise convs, sigmoid) cost per call.")
    print(f"  * the same convolution with per-image kernels given: {t_per_image * 1e3:.2f} ms against "
          f"{t_static * 1e3:.2f} ms for ONE shared kernel")
    print(f"    ({t_per_image / t_static:.1f}x for the same MACs). A shared kernel is one GEMM over the whole batch;")
    print("    per-image kernels are one GEMM per image, (C' x C k k) @ (C k k x H'W'), each kernel entry")
    skinny = ("BLAS runs such skinny products below peak" if t_per_image > 1.1 * t_static
              else "at these sizes that costs little")
    print(f"    reused over only H'W' = {x.shape[2] * x.shape[3]} pixels: {skinny}.")
    building = max(mixed - t_per_image, 0.0)
    print("  * building the kernels inside DynamicConv2d: n * |W| multiply-adds per image, but each reads")
    print("    an expert weight and writes a kernel entry, under one multiply-add per float moved, so memory")
    print(f"    bandwidth, not arithmetic, sets its pace: about {building * 1e3:.1f} ms of DynamicConv2d's "
          f"{mixed * 1e3:.1f} ms")
    print("    (its time minus the per-image convolution's; two different calls, so this split is rough).")
    parts = {"the routing branch": total - mixed, "building the kernels": building,
             "the per-image convolutions": min(t_per_image, mixed)}
    print(f"  Here the largest part is {max(parts, key=parts.get)}; on your machine it may differ.")
    print("  So the fused form is about as cheap as a static convolution in arithmetic, and a small multiple")
    print("  of it in time on a CPU. Whether it also beats the eval-mode training form (n convolutions in")
    print("  one GEMM, then BN and a weighted sum) in time depends on the sizes: compare the two CoConv")
    print("  columns above, and `minicoconv bench --model resnet18 --conv coconv` for a whole network.")


# ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few timing repeats (used by the tests)")
    parser.add_argument("--plots", metavar="DIR", type=Path, help="write the pictures (PNG) to DIR")
    args = parser.parse_args(argv)
    channels, size = (8, 5) if args.quick else (32, 7)
    static_vs_dynamic(channels, size, args.plots)
    coconv_routing_step_by_step(channels, size)
    routing_per_sample(channels, 8 if args.quick else 16, args.plots)
    fusion_is_exact(channels, size)
    if args.quick:
        costs(channels=32, size=8, batch=4, repeats=3)
    else:
        costs(channels=256, size=8, batch=32, repeats=7)
    print("\nDone. Next: tutorial 05 trains these layers on CIFAR-100; tutorial 07 adds ODConv and DGC.")


if __name__ == "__main__":
    main()
