"""Routing diagnostics: the statistics by hand on known gates, the hooks on real layers, and `inspect`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import minicoconv as mc
from minicoconv import models
from minicoconv.cli.main import main
from minicoconv.diagnostics import routed_layers, routing_summary
from minicoconv.diagnostics.routing import LayerRouting
from minicoconv.train import read_metrics


def test_statistics_of_known_gates():
    # two images, 2 experts, 1 channel: a uniform sigmoid routing and a one-sided one
    rec = LayerRouting("l", "CondConv2d", "sigmoid", 2, gates=[np.array([[[0.5], [0.5]], [[0.995], [0.0]]])])
    s = rec.statistics(np.array([0, 1]), num_classes=3)
    # shares: image 0 (0.5, 0.5), image 1 (1, 0) -> usage (0.75, 0.25); entropy (1 + 0) / 2
    np.testing.assert_allclose(s["usage"], [0.75, 0.25])
    np.testing.assert_allclose(s["mean_gate"], [0.7475, 0.25])
    assert s["entropy"] == pytest.approx(0.5)
    assert s["saturated"] == pytest.approx(0.5)          # 0.995 and 0.0 of the four gates
    assert s["per_class"][0] == [0.5, 0.5] and s["per_class"][1] == [1.0, 0.0]
    assert all(math.isnan(v) for v in s["per_class"][2])  # a class with no image is NaN, not 0


def test_softmax_saturation_counts_one_sided_images():
    g = np.array([[[0.999], [0.001]], [[0.6], [0.4]]])
    s = LayerRouting("l", "DyConv2d", "softmax", 2, gates=[g]).statistics()
    assert s["saturated"] == pytest.approx(0.5)
    p = np.array([0.6, 0.4])
    expected = (-(0.999 * math.log(0.999) + 0.001 * math.log(0.001)) - (p * np.log(p)).sum()) / 2 / math.log(2)
    assert s["entropy"] == pytest.approx(expected)


@pytest.mark.parametrize("conv", ["coconv", "condconv", "dycnn", "odconv"])
def test_every_routed_layer_is_seen(conv):
    mc.manual_seed(0)
    model = models.build("alexnet", conv=conv, experts=3)
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    stats = routing_summary(model, [(x, np.array([0, 1, 1, 2]))], num_classes=3)
    assert [s["name"] for s in stats] == [name for name, _ in routed_layers(model)] and len(stats) == 5
    for s in stats:
        assert s["images"] == 4 and len(s["usage"]) == 3 and sum(s["usage"]) == pytest.approx(1)
        assert 0 <= s["entropy"] <= 1 + 1e-9 and 0 <= s["saturated"] <= 1
        assert np.asarray(s["per_class"]).shape == (3, 3)
    assert model.training, "the model's mode is restored"


def test_static_and_dgc_models_have_no_routed_layers():
    assert routed_layers(models.build("alexnet", conv="static")) == []
    assert routed_layers(models.build("alexnet", conv="dgc")) == []


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "dycnn"
    code = main(["train", "--model", "alexnet", "--conv", "dycnn", "--experts", "2", "--synthetic",
                 "--synthetic-train", "48", "--synthetic-test", "16", "--batch-size", "8", "--max-steps", "2",
                 "--eval-subset", "8", "--epochs", "2", "--out", str(out), "--no-progress"])
    assert code == 0
    return out


def test_training_logs_routing_each_epoch(tiny_run):
    records = read_metrics(tiny_run / "metrics.jsonl")
    assert [sorted(r["routing"]) for r in records] == [sorted(r["routing"]) for r in records[:1]] * 2
    layer = records[-1]["routing"]["features.0"]
    assert 0 <= layer["entropy"] <= 1 and layer["temperature"] == 1.0 and len(layer["usage"]) == 2


def test_inspect_writes_json_and_pictures(capsys, tiny_run, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional [plot] extra")
    assert main(["inspect", str(tiny_run), "--out", str(tmp_path), "--eval-subset", "16"]) == 0
    report = json.loads((tmp_path / "routing.json").read_text())
    assert report["conv"] == "dycnn" and len(report["layers"]) == 5 and len(report["epochs"]) == 2
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["class_routing.png", "expert_usage.png", "routing_entropy.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in tmp_path.glob("*.png"))
    assert "features.14" in capsys.readouterr().out


def test_inspect_refuses_what_it_cannot_read(capsys, tmp_path):
    assert main(["inspect", str(tmp_path)]) == 1
    assert "neither a checkpoint nor a run folder" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "missing.npz")]) == 1


def test_inspect_names_the_layers_when_one_is_unknown(capsys, tiny_run, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional [plot] extra")
    assert main(["inspect", str(tiny_run), "--out", str(tmp_path), "--layer", "nope", "--eval-subset", "8"]) == 1
    assert "features.0" in capsys.readouterr().err
