"""`minicoconv bench` runs end to end at tiny sizes and prints its tables.

No timing assertions: speed is what the benchmarks report, not what tests check.
"""

from __future__ import annotations

import argparse
import json
import time

import pytest

from minicoconv.bench import Setup, bench_dynamic, bench_layers, bench_model, measure, measure_interleaved
from minicoconv.bench.layers import LayerCase, conv
from minicoconv.bench.profile import op_profile
from minicoconv.bench.table import Column, format_table
from minicoconv.bench.timing import numpy_peak_bytes
from minicoconv.cli import bench as bench_cli

TINY_CONVS = (conv("conv 8->8", 8, 8, 6), conv("depthwise 8", 8, 8, 6, 2, 8))
TINY_LAYERS = (*TINY_CONVS, LayerCase("bn", "batchnorm", 8, 6), LayerCase("maxpool", "maxpool", 8, 6, kernel=2),
               LayerCase("adaptive", "adaptive_avgpool", 8, 6, kernel=3))


def run_bench(*argv: str) -> int:
    """Run `minicoconv bench ARGV` through the command's own parser."""
    parser = argparse.ArgumentParser(prog="minicoconv")
    bench_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", *argv])
    return args.run(args)


def test_timer_excludes_warmup_and_reports_median_and_min():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.001)
    t = measure(fn, repeats=3, warmup=2)
    assert len(calls) == 5 and len(t.times) == 3
    assert 0 < t.min_ms <= t.median_ms
    both = measure_interleaved({"a": fn, "b": fn}, repeats=2, warmup=0)
    assert sorted(both) == ["a", "b"] and all(len(v.times) == 2 for v in both.values())
    with pytest.raises(ValueError, match="repeats"):
        measure(fn, repeats=0)


def test_numpy_peak_counts_arrays_allocated_during_the_call():
    import numpy as np

    assert numpy_peak_bytes(lambda: np.ones(1 << 20)) >= 8 << 20


def test_table_aligns_and_marks_missing_values():
    rows = [{"a": "x", "b": 1.5}, {"a": "longer", "b": None}]
    text = format_table(rows, [Column("a", "A"), Column("b", "B", "{:.1f}")])
    lines = text.splitlines()
    assert lines[0].startswith("A") and lines[2].endswith("1.5") and lines[3].endswith("-")
    assert len({len(line) for line in lines[:2]}) == 1


def test_op_profile_splits_a_step_and_restores_the_ops():
    import minicoconv as mc
    from minicoconv.ops.elementwise import Mul

    original = Mul.__dict__["forward"]
    x = mc.randn(3, 4, requires_grad=True)
    rows = op_profile(lambda: (x * x).sum().backward())
    assert Mul.__dict__["forward"] is original
    assert {("Mul", "forward"), ("Mul", "backward")} <= {(r.op, r.phase) for r in rows}
    assert rows[-1].op == "(outside ops)" and sum(r.share for r in rows) == pytest.approx(1.0)


@pytest.mark.parametrize("with_torch", [False, True])
def test_layer_and_dynamic_rows(with_torch, request):
    torch = request.getfixturevalue("torch") if with_torch else None
    setup = Setup(torch=torch, repeats=1, warmup=0)
    rows = bench_layers(setup, batch=2, cases=TINY_LAYERS)
    assert [r["layer"] for r in rows] == [c.name for c in TINY_LAYERS]
    assert all(r["min_ms"] > 0 for r in rows)
    assert rows[0]["gflops"] > 0 and rows[2]["gflops"] is None
    assert (rows[0]["ratio"] is not None) == with_torch
    rows = bench_dynamic(setup, batch=2, experts=2, cases=TINY_CONVS)
    assert len(rows) == 2 * 2 * 4  # shapes x (train, inference) x (static + 3 dynamic)
    coconv_infer = [r for r in rows if r["layer"] == "coconv" and r["mode"] == "inference"]
    assert all(r["target"] == 1.35 and isinstance(r["meets"], bool) for r in coconv_infer)


def test_model_row_with_torch_reference_and_profile(torch):
    setup = Setup(torch=torch, repeats=1, warmup=0)
    row = bench_model(setup, "mobilenetv2", "coconv", batch=2, experts=2, profile=True)
    assert row["params"] > 0 and row["train_min_ms"] > 0 and row["infer_min_ms"] > 0
    assert row["torch_train_ms"] > 0 and row["train_ratio"] > 0 and row["target"] == 1.1
    assert row["peak_mb"] > 0
    ops = {r["op"] for r in row["profile"]}
    assert {"Conv2d", "BatchNorm2d", "(outside ops)"} <= ops
    assert sum(r["share"] for r in row["profile"]) == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["alexnet", "resnet18", "mobilenetv2"])
@pytest.mark.parametrize("conv_type", ["static", "condconv", "dycnn", "coconv"])
def test_torch_reference_has_our_parameter_count(name, conv_type, torch):
    from minicoconv import models
    from minicoconv.interop import torch_models as ref

    ours = sum(p.numel() for p in models.build(name, conv=conv_type).parameters())
    ref.check_same_params(ours, ref.build(name, conv_type), f"{name} {conv_type}")


def test_torch_coconv_fused_equals_its_training_form_in_eval(torch):
    from minicoconv.interop.torch_layers import TorchCoConv2d

    layer = TorchCoConv2d(8, 6, 3, padding=1, experts=3)
    x = torch.randn(4, 8, 5, 5)
    layer(x)  # one training step moves the running statistics
    layer.eval()
    with torch.no_grad():
        fused = layer(x)
        layer.fused = False
        unfused = layer(x)
    assert torch.allclose(fused, unfused, atol=1e-5)


def test_cli_layers_and_dynamic_print_tables(capsys, tmp_path, monkeypatch):
    from minicoconv.bench import layers

    monkeypatch.setattr(layers, "LAYER_CASES", TINY_LAYERS)
    monkeypatch.setattr(layers, "DYNAMIC_CASES", TINY_CONVS)
    out_file = tmp_path / "rows.json"
    assert run_bench("--layers", "--dynamic", "--batch-size", "2", "--repeats", "1", "--threads", "1",
                     "--json", str(out_file)) == 0
    out = capsys.readouterr().out
    assert out.startswith("machine") and "numba" in out and "BLAS" in out
    assert "GFLOP/s" in out and "conv 8->8" in out and "/static" in out
    saved = json.loads(out_file.read_text())
    assert len(saved["layers"]) == len(TINY_LAYERS) and saved["machine"]["cpu"]


def test_cli_model_prints_one_row(capsys):
    assert run_bench("--model", "resnet18", "--conv", "static", "--batch-size", "2", "--repeats", "1",
                     "--warmup", "0", "--no-torch") == 0
    out = capsys.readouterr().out
    table = out[out.index("models:"):]
    assert "resnet18" in table and "static" in table and "img/s" in table


def test_cli_refuses_unusable_requests(capsys):
    assert run_bench("--batch-size", "2") == 1
    assert "--layers" in capsys.readouterr().err
    assert run_bench("--model", "resnet18", "--all") == 1
    assert run_bench("--layers", "--repeats", "0") == 1


def test_cli_unavailable_cuda_fails_with_the_backends_message(capsys):
    from minicoconv.backend import get_backend

    try:
        get_backend("cuda")
    except Exception as e:  # the usual case on a CPU-only machine
        message = str(e)
    else:
        pytest.skip("a CUDA backend is available here")
    assert run_bench("--model", "resnet18", "--device", "cuda", "--repeats", "1", "--no-torch") == 1
    assert message in capsys.readouterr().err


CUDA_SIM_SCRIPT = """
from minicoconv.backend import get_backend
from minicoconv.bench import Setup, bench_beyond, bench_dynamic, bench_layers
from minicoconv.bench.layers import LayerCase, conv
backend = get_backend("cuda")
setup = Setup(device="cuda", repeats=1, warmup=0, sync=getattr(backend, "synchronize", None))
rows = bench_layers(setup, batch=2, cases=(conv("c", 4, 4, 4), LayerCase("bn", "batchnorm", 4, 4)))
rows += bench_dynamic(setup, batch=2, experts=2, cases=(conv("d", 4, 4, 4),))
rows += bench_beyond(setup, batch=2, experts=2, cases=(conv("d", 4, 4, 4),))
print("ROWS", len(rows), all(r["min_ms"] > 0 for r in rows))
"""


def test_bench_runs_on_the_cuda_device_under_the_simulator():
    """--device cuda reaches the models and tensors (run under numba's CUDA simulator, tiny shapes)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    done = subprocess.run([sys.executable, "-c", CUDA_SIM_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=600)
    if "ROWS" not in done.stdout and "not available" in done.stderr:
        pytest.skip(f"the CUDA backend cannot run under the simulator here: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ROWS 18 True" in done.stdout  # 2 layers + 1 shape x 2 modes x 4 conv types + 3 train + 5 inference
