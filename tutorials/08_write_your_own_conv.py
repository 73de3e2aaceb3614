"""Tutorial 08: write your own dynamic convolution, register it, check it, fuse it, train it.

How to run it, from the repository root:

    python tutorials/08_write_your_own_conv.py                       # the whole lesson (a few minutes)
    python tutorials/08_write_your_own_conv.py --quick --plots out   # small sizes, pictures in out/ (the tests)

Or from a notebook: `main(["--quick", "--plots", "out"])`, or call the section functions.

This file is at the same time the lesson and a *plugin*: everything a new conv type
needs is in it, and nothing in the engine changes. The new layer is CondConv with an
SE-style output gate ("GatedCondConv"). From the pooled input p = GAP(x) of each image:

    r = sigmoid(Linear_{C->n}(p))                          (N, n)   which experts: CondConv's routing
    g = sigmoid(Linear_{h->C'}(relu(Linear_{C->h}(p))))    (N, C')  how loud each output channel: SE's gate
    y_b[o] = g_bo * conv(x_b, sum_i r_bi W_i)[o]

What you will learn, one printed section each:

1. The layer: subclass `MixtureConv2d` (the expert bank, its init, the mixture convolution)
   and add the gate. Picture: the routing r and the gate g of a few images.
2. One registration makes it a conv type every model, the CLI and `minicoconv inspect` know.
3. Gradients checked against finite differences, parameters included, with the public
   `minicoconv.testing.gradcheck_module`; the same output on the `reference` backend.
4. An exact inference form: the gate folds into the kernel, g_bo * conv(x, K_b)[o] =
   conv(x, g_bo * K_b[o]), so one kernel per image with per-channel routing r_bi * g_bo.
5. Trained from the command line with `--plugin` and `--conv`, then inspected.

The engine files behind each section are named where the section starts; the steps are
written up in docs/extending.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import minicoconv as mc
from minicoconv import models, nn
from minicoconv.lesson import check, new_figure, save_figure, section
from minicoconv.nn import functional as F
from minicoconv.nn.dynamic.base import MixtureConv2d, global_avg_pool
from minicoconv.testing import gradcheck_module

CONV_NAME = "gatedcondconv"
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------
# The layer and its registration: all a new conv type needs.
class GatedCondConv2d(MixtureConv2d):
    """CondConv with an SE-style output gate.

    GatedCondConv2d(in, out, kernel_size, stride=1, padding=0, groups=1, experts=4, reduction=4)
    x (N, C, H, W) -> y (N, C', H', W');  weight (n, C', C/groups, k, k), no bias.
    """

    routing_activation = "sigmoid"  # how `minicoconv inspect` normalises the routing r

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, experts: int = 4, reduction: int = 4):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups, False, experts)
        if not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"GatedCondConv2d: reduction must be an int >= 1, got {reduction!r}")
        hidden = max(in_channels // reduction, 1)
        self.routing = nn.Linear(in_channels, experts)
        self.squeeze, self.excite = nn.Linear(in_channels, hidden), nn.Linear(hidden, out_channels)

    def routing_weights(self, x: mc.Tensor) -> mc.Tensor:
        """r (N, n): one sigmoid weight per expert (the hook inspect reads)."""
        return self.routing(global_avg_pool(x)).sigmoid()

    def output_gate(self, x: mc.Tensor) -> mc.Tensor:
        """g (N, C'): one sigmoid gate per output channel, from the same pooled input."""
        return self.excite(self.squeeze(global_avg_pool(x)).relu()).sigmoid()

    def forward(self, x: mc.Tensor) -> mc.Tensor:
        y = super().forward(x)  # MixtureConv2d: conv(x_b, sum_i r_bi W_i), one kernel per image
        g = self.output_gate(x)
        return y * g.reshape(*g.shape, 1, 1)

    def macs(self, inputs, out) -> int:
        """The mixture convolution, the gate's two linear layers, and the gating multiply."""
        n, c = out.shape[0], self.in_channels
        gate = n * (c * self.squeeze.out_features + self.squeeze.out_features * self.out_channels)
        return super().macs(inputs, out) + gate + int(np.prod(out.shape))

    def fuse(self) -> nn.Module:
        return FusedGatedCondConv2d(self)


class FusedGatedCondConv2d(nn.Module):
    """Inference form of GatedCondConv2d: the gate folded into per-channel routing.

    conv is linear in its kernel, so g_bo * conv(x_b, sum_i r_bi W_i)[o] = conv(x_b, sum_i (r_bi g_bo) W_i)[o]:
    one dynamic convolution with routing (N, n, C'), and no gating pass over the output.
    Shares every parameter with the layer it fuses.
    """

    def __init__(self, layer: GatedCondConv2d):
        super().__init__()
        self.layer = layer

    def forward(self, x: mc.Tensor) -> mc.Tensor:
        m = self.layer
        m.check_input(x)
        routing = m.routing_weights(x).unsqueeze(2) * m.output_gate(x).unsqueeze(1)   # (N, n, C')
        return F.dynamic_conv2d(x, m.weight, routing, m.stride, m.padding, m.groups)


# One registration, at import: `--plugin tutorials/08_write_your_own_conv.py --conv gatedcondconv`
# imports this file, and the models build their dynamic positions with GatedCondConv2d.
# (replace=True: re-running this file in a notebook registers the re-defined class again.)
nn.register_conv_type(CONV_NAME, GatedCondConv2d, options=("reduction",), replace=True,
                      description="CondConv with an SE-style output gate (tutorial 08)")


# ---------------------------------------------------------------------------------------
def the_layer(channels: int, size: int, batch: int, plots: Path | None) -> tuple[GatedCondConv2d, mc.Tensor]:
    section(1, "The layer: CondConv's mixture plus an SE-style output gate")
    # Engine: minicoconv/nn/dynamic/base.py (MixtureConv2d: the expert bank and the mixture
    # convolution), minicoconv/nn/functional.py (dynamic_conv2d), minicoconv/ops/dynamic_conv.py.
    mc.manual_seed(0)
    layer = GatedCondConv2d(channels, channels, 3, padding=1, experts=4)
    x = mc.randn(batch, channels, size, size) * 0.5 + mc.rand(batch, channels, 1, 1)  # images that differ
    with mc.no_grad():
        r, g, y = layer.routing_weights(x).numpy(), layer.output_gate(x).numpy(), layer(x)
    print(f"x {x.shape} -> y {y.shape}; routing r {r.shape}, gate g {g.shape}")
    print(f"image 0: r = {np.round(r[0], 3)}, first gates g = {np.round(g[0, :4], 3)}")
    print(f"image 1: r = {np.round(r[1], 3)}, first gates g = {np.round(g[1, :4], 3)}")
    check(r.shape == (batch, 4) and g.shape == (batch, channels), "r is (N, n) and g is (N, C')")
    check(bool(np.all((g > 0) & (g < 1))), "every gate is a sigmoid in (0, 1)")
    check(float(np.abs(r[0] - r[1]).max()) > 0, "two images get different routing")
    params = sum(p.numel() for p in layer.parameters())
    print(f"parameters: {params} (the expert bank {layer.weight.numel()}, routing and gate the rest)")

    if plots is not None:
        shown = min(8, batch)
        fig = new_figure(9, 3)
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 3]})
        im = left.imshow(r[:shown], cmap="viridis", vmin=0, vmax=1, aspect="auto")
        left.set(title="routing r (expert)", xlabel="expert i", ylabel="image b")
        right.imshow(g[:shown], cmap="viridis", vmin=0, vmax=1, aspect="auto")
        right.set(title="output gate g (channel)", xlabel="output channel o", yticks=[])
        fig.colorbar(im, ax=[left, right], shrink=0.8)
        save_figure(fig, plots, "08_routing_and_gate.png")
    return layer, x


def registration() -> None:
    section(2, "One registration makes it a conv type")
    # Engine: minicoconv/nn/dynamic/registry.py (the registry), minicoconv/models/factory.py
    # (models build their dynamic positions from it), minicoconv/cli/plugins.py (--plugin).
    names = nn.conv_types()
    print(f"registered conv types: {', '.join(names)}")
    check(CONV_NAME in names, f"{CONV_NAME!r} is registered next to the built-in types")
    model = models.build("smallcnn", conv=CONV_NAME, experts=2, reduction=8)
    kinds = sorted({type(m).__name__ for m in model.modules() if isinstance(m, GatedCondConv2d)})
    count = sum(isinstance(m, GatedCondConv2d) for m in model.modules())
    print(f"models.build('smallcnn', conv={CONV_NAME!r}, reduction=8): {count} layers of {kinds}")
    check(count == 3, "SmallCNN's three dynamic positions use the new layer")


def gradients() -> None:
    section(3, "Gradients against finite differences, and the reference backend")
    # Engine: minicoconv/testing.py (gradcheck, gradcheck_module), minicoconv/backend/reference/
    # (plain NumPy: the textbook form of every primitive).
    mc.manual_seed(2)
    layer = GatedCondConv2d(4, 4, 3, padding=1, experts=2, reduction=2).double()  # small: each element costs
    x = mc.randn(2, 4, 5, 5, dtype="float64", requires_grad=True)                 # two forwards
    start = time.perf_counter()
    check(gradcheck_module(layer, x),
          "dL/dx and every parameter's gradient (bank, routing, squeeze, excite) match central differences")
    elements = x.numel() + sum(p.numel() for p in layer.parameters())
    print(f"  ({elements} elements, two forwards each: {time.perf_counter() - start:.1f} s)")
    with mc.no_grad():
        on_cpu = layer(x).numpy()
        on_reference = layer.to("reference")(x.to("reference")).numpy()
    diff = float(np.abs(on_cpu - on_reference).max())
    print(f"float64 output, Numba CPU backend vs plain-NumPy reference backend: max difference {diff:.1e}")
    check(diff < 1e-12, "the CPU kernels compute what the readable reference computes")


def exact_fusion(layer: GatedCondConv2d, x: mc.Tensor) -> None:
    section(4, "An exact inference form: the gate folded into the kernel")
    # Engine: minicoconv/nn/dynamic/fused.py (nn.fuse walks the model and calls each layer's fuse()).
    layer.double().eval()
    x64 = x.double()
    with mc.no_grad():
        y = layer(x64).numpy()
        y_fused = nn.fuse(layer)(x64).numpy()
    diff = float(np.abs(y - y_fused).max() / np.abs(y).max())
    print(f"eval output vs fused output (float64): max difference {diff:.1e} of the largest output")
    print("  Not true by construction: the eval form convolves, then multiplies channel o by g_bo;")
    print("  the fused form never multiplies the output, it scales the mixed kernel's rows instead.")
    print("  They agree because convolution is linear in its kernel, to float64 rounding.")
    check(diff < 1e-12, "fused == eval to rounding (float64)")
    with mc.no_grad():
        r = layer.routing_weights(x64)
        unfused = F.dynamic_conv2d(x64, layer.weight, r, layer.stride, layer.padding).numpy()
    gap = float(np.abs(unfused - y).max() / np.abs(y).max())
    print(f"without the gate the output differs by {gap:.2f} of its largest value: the gate is doing something")
    check(gap > 1e-3, "the gate changes the output, so the equality above is not vacuous")
    layer.train()


def train_and_inspect(out: Path, quick: bool, plots: Path | None) -> None:
    section(5, "Trained from the command line, then inspected")
    # Engine: minicoconv/cli/train.py -> minicoconv/train/trainer.py (knows no conv type: it calls the
    # layers' hooks, minicoconv/nn/dynamic/hooks.py), minicoconv/diagnostics/routing.py (inspect).
    images, epochs = (256, 2) if quick else (4000, 3)
    here = str(Path(__file__).resolve())
    command = [sys.executable, "-m", "minicoconv.cli.main", "train", "--plugin", here, "--conv", CONV_NAME,
               "--conv-arg", "reduction=8", "--model", "smallcnn", "--experts", "2", "--synthetic",
               "--synthetic-train", str(images), "--synthetic-test", str(images // 4), "--epochs", str(epochs),
               "--batch-size", "64", "--lr", "0.05", "--no-progress", "--out", str(out)]
    if (out / "last.npz").exists():
        print(f"{out} already holds a run: inspecting it (delete the folder to train again)")
    else:
        print("$ " + " ".join(["minicoconv", *command[3:]]).replace(here, "tutorials/08_write_your_own_conv.py"))
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT)
        print(f"  ({time.perf_counter() - start:.0f} s for {epochs} epochs of {images} images, compilation included)")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    check(len(records) == epochs, f"{epochs} epochs recorded in {out / 'metrics.jsonl'}")
    config = json.loads((out / "config.json").read_text())
    check(here in config.get("plugins", []), "the run recorded this file, so eval, inspect and --resume import it")
    report = out / "inspect"
    command = [sys.executable, "-m", "minicoconv.cli.main", "inspect", str(out), "--out", str(report)]
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    routing = json.loads((report / "routing.json").read_text())
    layers = [layer for layer in routing["layers"] if layer["kind"] == "GatedCondConv2d"]
    for layer in layers:
        print(f"  {layer['name']}: expert usage {np.round(layer['usage'], 3)}, "
              f"routing entropy {layer['entropy']:.3f}")
    check(len(layers) == 3, "inspect found the three GatedCondConv2d layers through their routing_weights hook")
    pictures = sorted(p.name for p in report.glob("*.png"))
    print(f"  inspect drew {', '.join(pictures)} in {report}")
    check(len(pictures) >= 3, "inspect drew its pictures")
    if plots is not None:
        epochs_seen = [rec["epoch"] for rec in records]
        fig = new_figure(5, 3)
        ax = fig.subplots()
        ax.plot(epochs_seen, [rec["train_loss"] for rec in records], "o-", label="train loss")
        ax.set(xlabel="epoch", ylabel="loss", title="SmallCNN-GatedCondConv on synthetic data")
        ax.legend()
        save_figure(fig, plots, "08_training_loss.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and a short run (used by the tests)")
    parser.add_argument("--plots", metavar="DIR", type=Path, help="write the pictures (PNG) to DIR")
    parser.add_argument("--out", type=Path, default=Path("runs/tutorial08"), help="the training run's folder")
    args = parser.parse_args(argv)
    channels, size, batch = (8, 6, 4) if args.quick else (16, 8, 8)
    layer, x = the_layer(channels, size, batch, args.plots)
    registration()
    gradients()
    exact_fusion(layer, x)
    train_and_inspect(args.out, args.quick, args.plots)
    print("\nDone: one file, one registration; checked, fused, trained and inspected.")


if __name__ == "__main__":
    main()
