"""`minicoconv bench` and `summary` for ODConv and DGC, at tiny sizes: rows, references, savings.

No timing assertions: speed is what the benchmarks report, not what tests check.
"""

from __future__ import annotations

import argparse
import json
import math
import re

import numpy as np
import pytest

from minicoconv import models, nn
from minicoconv.autograd import no_grad
from minicoconv.bench import Setup, bench_beyond, bench_model
from minicoconv.bench.beyond import ROW_KEYS
from minicoconv.bench.layers import conv
from minicoconv.cli import bench as bench_cli
from minicoconv.cli import summary as summary_cli
from minicoconv.nn import init
from minicoconv.tensor import Tensor

TINY_CONVS = (conv("conv 8->8", 8, 8, 6), conv("depthwise 8", 8, 8, 6, 2, 8))
TIMED = ("ms", "min_ms", "mmacs")


def run_cli(module, *argv: str) -> int:
    """Run `minicoconv COMMAND ARGV` through the command's own parser."""
    parser = argparse.ArgumentParser(prog="minicoconv")
    module.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.run(args)


@pytest.mark.parametrize("with_torch", [False, True])
def test_odconv_and_dgc_rows(with_torch, request):
    torch = request.getfixturevalue("torch") if with_torch else None
    rows = bench_beyond(Setup(torch=torch, repeats=1, warmup=0), batch=2, experts=2, cases=TINY_CONVS)
    forms = [(r["shape"], r["layer"], r["mode"], r["form"]) for r in rows]
    dense_shape, dw_shape = (c.name for c in TINY_CONVS)
    assert forms == [
        (dense_shape, "static", "train", "fwd+bwd"), (dense_shape, "odconv", "train", "fwd+bwd"),
        (dense_shape, "dgc", "train", "fwd+bwd (dense)"),
        (dense_shape, "static", "inference", "eval"), (dense_shape, "odconv", "inference", "fused"),
        (dense_shape, "dgc", "inference", "dense eval"), (dense_shape, "dgc", "inference", "sparse keep 0.5"),
        (dense_shape, "dgc", "inference", "sparse keep 0.25"),
        (dw_shape, "static", "train", "fwd+bwd"), (dw_shape, "odconv", "train", "fwd+bwd"),
        (dw_shape, "dgc", "train", "-"),
        (dw_shape, "static", "inference", "eval"), (dw_shape, "odconv", "inference", "fused"),
        (dw_shape, "dgc", "inference", "-")]
    skipped = [r for r in rows if r["form"] == "-"]
    assert all("depthwise" in r["note"] and r["min_ms"] is None for r in skipped)
    assert all(len(r) == len(ROW_KEYS) for r in rows)
    for r in rows:
        if r["form"] == "-":
            continue
        assert all(r[k] > 0 and math.isfinite(r[k]) for k in TIMED), r
        assert (r["vs_static"] is None) == (r["layer"] == "static")
        sparse = r["form"].startswith("sparse")
        assert (r["ratio"] is not None) == (with_torch and not sparse), r  # no PyTorch sparse DGC
        assert (r["vs_dense"] is not None) == (r["macs_vs_dense"] is not None) == sparse
    static_macs = 2 * 8 * 6 * 6 * 8 * 9 / 2   # per image: C' H' W' C k k
    by_form = {(r["shape"], r["form"]): r for r in rows if r["layer"] != "static"}
    assert by_form[dense_shape, "dense eval"]["mmacs"] * 1e6 == pytest.approx(static_macs)
    for keep in (0.5, 0.25):  # 8 channels: 4 and 2 kept, exactly keep times the dense MACs
        sparse = by_form[dense_shape, f"sparse keep {keep:g}"]
        assert sparse["keep"] == keep and sparse["macs_vs_dense"] == pytest.approx(keep)
        assert sparse["mmacs"] * 1e6 == pytest.approx(keep * static_macs)
    assert by_form[dense_shape, "fused"]["mmacs"] * 1e6 > static_macs  # + aggregation and attention


def test_torch_odconv_and_dgc_references_compute_what_ours_do(torch):
    """The PyTorch references load our state_dict and give our outputs (training and eval)."""
    from minicoconv.interop.torch_beyond import TorchDGConv2d, TorchODConv2d
    from minicoconv.interop.weights import torch_state

    rng = np.random.default_rng(0)
    cases = [(nn.ODConv2d(8, 6, 3, 1, 1, groups=2, experts=3), TorchODConv2d(8, 6, 3, 1, 1, 2, experts=3)),
             (nn.ODConv2d(8, 8, 3, 2, 1, groups=8, experts=2), TorchODConv2d(8, 8, 3, 2, 1, 8, experts=2)),
             (nn.DGConv2d(8, 12, 3, 1, 1, heads=4, keep=0.25), TorchDGConv2d(8, 12, 3, 1, 1, heads=4, keep=0.25))]
    for ours, theirs in cases:
        if isinstance(ours, nn.DGConv2d):  # distinct saliencies: no ties for the pruning to break differently
            ours.gate2_bias.data = rng.uniform(0.5, 1.5, ours.gate2_bias.shape).astype(np.float32)
        state = {k: torch.from_numpy(np.array(v)) for k, v in torch_state(ours).items()}  # settings are not weights
        missing, unexpected = theirs.load_state_dict(state, strict=False)
        assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
        x = rng.standard_normal((4, 8, 5, 5)).astype(np.float32)
        for mode in ("train", "eval"):
            if mode == "eval":
                ours.eval()
                theirs.eval()
            with no_grad(), torch.no_grad():
                mine = (ours if mode == "train" else nn.fuse(ours))(Tensor(x)).numpy()
                ref = theirs(torch.from_numpy(x)).numpy()
            np.testing.assert_allclose(mine, ref, atol=1e-4, err_msg=f"{type(ours).__name__} {mode}")


@pytest.mark.parametrize("name, conv_type", [("alexnet", "odconv"), ("resnet18", "odconv"),
                                             ("mobilenetv2", "odconv"), ("alexnet", "dgc"), ("resnet18", "dgc")])
def test_torch_reference_has_our_parameter_count(name, conv_type, torch, monkeypatch):
    from minicoconv.interop import torch_models as ref

    for fn in ("kaiming_uniform_", "kaiming_normal_", "uniform_", "normal_"):  # counts depend on shapes only
        monkeypatch.setattr(init, fn, lambda t, *args, **kwargs: t)
    ours = sum(p.numel() for p in models.build(name, conv=conv_type).parameters())
    with torch.device("meta"):  # no memory, no initialisation
        ref.check_same_params(ours, ref.build(name, conv_type), f"{name} {conv_type}")


def test_dgc_model_row_with_torch_reference(torch):
    """Lasso in the training step, sparse inference, finite times (the BN statistics are calibrated first)."""
    with np.errstate(over="raise", invalid="raise"):
        row = bench_model(Setup(torch=torch, repeats=1, warmup=0), "resnet18", "dgc", batch=2, memory=False)
    assert row["conv"] == "dgc" and row["params"] > 0
    for key in ("train_min_ms", "infer_min_ms", "torch_train_min_ms", "torch_infer_min_ms", "train_ratio"):
        assert row[key] > 0 and math.isfinite(row[key]), key
    with pytest.raises(ValueError, match="depthwise"):
        bench_model(Setup(repeats=1, warmup=0), "mobilenetv2", "dgc", batch=2)


def test_cli_dynamic_prints_the_odconv_dgc_table(capsys, tmp_path, monkeypatch):
    from minicoconv.bench import layers

    monkeypatch.setattr(layers, "DYNAMIC_CASES", TINY_CONVS)
    out_file = tmp_path / "rows.json"
    assert run_cli(bench_cli, "bench", "--dynamic", "--batch-size", "2", "--repeats", "1", "--warmup", "0",
                   "--experts", "2", "--threads", "1", "--no-torch", "--json", str(out_file)) == 0
    out = capsys.readouterr().out
    table = out[out.index("ODConv (2 kernels) and DGC"):]
    assert "MMAC/img" in table and "/dense" in table and "sparse keep 0.25" in table and "DGC skipped" in table
    saved = json.loads(out_file.read_text())
    assert len(saved["dynamic"]) == 2 * 2 * 4 and len(saved["dynamic_beyond"]) == 14


def test_cli_all_conv_types_skip_what_cannot_be_built(capsys, monkeypatch):
    monkeypatch.setattr(bench_cli, "MODELS", {"mobilenetv2": None})
    assert run_cli(bench_cli, "bench", "--all", "--conv-types", "dgc", "--repeats", "1", "--no-torch") == 0
    assert "skipped mobilenetv2 dgc" in capsys.readouterr().out
    assert run_cli(bench_cli, "bench", "--model", "mobilenetv2", "--conv", "dgc", "--no-torch") == 1
    assert "depthwise" in capsys.readouterr().err
    assert run_cli(bench_cli, "bench", "--model", "mobilenetv2", "--conv-types", "dgc") == 1
    assert "--conv-types goes with --all" in capsys.readouterr().err


def test_summary_shows_the_sparse_dgc_saving(capsys):
    assert run_cli(summary_cli, "summary", "--model", "resnet18", "--conv", "dgc", "--keep", "0.25",
                   "--totals-only") == 0
    line = capsys.readouterr().out.strip()
    train, fused = (float(v) for v in re.findall(r"([\d.]+)M MACs", line))
    percent = float(re.search(r"([\d.]+)% of the training form", line).group(1))
    assert fused / train == pytest.approx(0.25, abs=0.01)  # the 3x3 stem and the classifier stay dense
    assert percent == pytest.approx(100 * fused / train, abs=0.1)
    with pytest.raises(SystemExit, match="dgc"):
        run_cli(summary_cli, "summary", "--conv", "odconv", "--keep", "0.5")
