"""A conv type from the user's own file: registered, trained with --conv NAME, evaluated, inspected
and resumed in fresh processes (the run's config records the plugin, so they import it again)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from minicoconv import models, nn
from minicoconv.cli.main import main
from minicoconv.nn.dynamic import registry
from minicoconv.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = textwrap.dedent('''
    """A CondConv with softmax routing sharpened by a factor: one class and one registration."""
    from minicoconv import nn
    from minicoconv.nn.dynamic.base import MixtureConv2d, global_avg_pool


    class SoftCondConv2d(MixtureConv2d):
        routing_activation = "softmax"

        def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, experts=4,
                     sharpness=1.0):
            super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups, False, experts)
            self.fc = nn.Linear(in_channels, experts)
            self.sharpness = float(sharpness)

        def routing_weights(self, x):
            return (self.fc(global_avg_pool(x)) * self.sharpness).softmax(axis=1)


    nn.register_conv_type("softcond", SoftCondConv2d, options=("sharpness",))
''')
QUICK = ["--model", "alexnet", "--synthetic", "--synthetic-train", "32", "--synthetic-test", "16",
         "--batch-size", "8", "--max-steps", "2", "--eval-subset", "8", "--no-progress"]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`minicoconv ARGS` in a new process (nothing registered in it beforehand)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "minicoconv.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_plugin_conv_trains_evaluates_inspects_and_resumes(tmp_path):
    plugin = tmp_path / "softcond.py"
    plugin.write_text(PLUGIN)
    out = tmp_path / "run"
    assert main(["train", *QUICK, "--plugin", str(plugin), "--conv", "softcond", "--experts", "2",
                 "--conv-arg", "sharpness=2.5", "--epochs", "1", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["plugins"] == [str(plugin.resolve())] and config["conv_args"] == {"sharpness": 2.5}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _run("eval", str(out), "--synthetic", "--eval-subset", "8", "--json", cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["n"] == 8
    result = _run("inspect", str(out), "--synthetic", "--eval-subset", "8", "--no-pictures", "--out",
                  str(tmp_path / "inspect"), cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "inspect" / "routing.json").read_text())
    assert {layer["kind"] for layer in report["layers"]} == {"SoftCondConv2d"}
    assert all(layer["activation"] == "softmax" for layer in report["layers"])
    result = _run("train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress", cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-2000:]
    assert load_checkpoint(out / "last.npz").epoch == 2


def test_register_and_build_from_python(tmp_path):
    plugin = tmp_path / "softcond_py.py"
    plugin.write_text(PLUGIN.replace('"softcond"', '"softcond_py"'))
    nn.load_plugin(str(plugin))
    nn.load_plugin(str(plugin))  # a second import is a no-op (else the registration would clash)
    assert nn.conv_types()[:6] == ("static", "condconv", "dycnn", "coconv", "odconv", "dgc")
    assert "softcond_py" in nn.conv_types()
    model = models.build("resnet18", conv="softcond_py", experts=3, sharpness=4.0)
    layers = [m for m in model.modules() if type(m).__name__ == "SoftCondConv2d"]
    assert layers and all(m.experts == 3 and m.sharpness == 4.0 for m in layers)
    with pytest.raises(ValueError, match="does not take option.*reduction.*it takes: sharpness"):
        models.build("resnet18", conv="softcond_py", reduction=4)


def test_registry_refuses_mistakes():
    with pytest.raises(ValueError, match="already registered"):
        nn.register_conv_type("coconv", lambda *a, **k: None)
    with pytest.raises(ValueError, match="lower-case identifier"):
        nn.register_conv_type("My Conv", lambda *a, **k: None)
    with pytest.raises(ValueError, match="options must be identifiers other than 'experts'"):
        nn.register_conv_type("withexperts", lambda *a, **k: None, options=("experts",))
    with pytest.raises(TypeError, match="builder must be callable"):
        nn.register_conv_type("notcallable", 3)
    with pytest.raises(ValueError, match="unknown conv type 'nope'.*--plugin"):
        nn.get_conv_type("nope")
    with pytest.raises(ValueError, match="no such file"):
        nn.load_plugin("does/not/exist.py")
    with pytest.raises(ValueError, match="cannot import"):
        nn.load_plugin("no_such_module_anywhere")
    assert "notcallable" not in registry.conv_types() and "withexperts" not in registry.conv_types()


def test_a_broken_plugin_is_a_usage_error(capsys, tmp_path):
    plugin = tmp_path / "broken.py"
    plugin.write_text("raise RuntimeError('half-written plugin')\n")
    with pytest.raises(SystemExit) as info:
        main(["train", *QUICK, "--plugin", str(plugin), "--out", str(tmp_path / "run")])
    assert info.value.code == 2
    assert "half-written plugin" in capsys.readouterr().err


def test_layer_schedules_are_buffers_and_follow_progress():
    """The training hooks: DY-CNN/ODConv temperatures and DGC's pruning, kept in state_dict."""
    dy = nn.DyConv2d(4, 4, 3, 1, 1, experts=2, anneal=True)
    od = nn.ODConv2d(4, 4, 3, 1, 1, experts=2, anneal=True)
    dg = nn.DGConv2d(8, 8, 3, 1, 1, heads=2, keep=0.5)
    model = nn.Sequential(dy, od, dg)
    nn.training_progress(model, nn.TrainingProgress(epoch=2, step_in_epoch=5, global_step=25, steps_per_epoch=10,
                                                    epochs=12))
    assert dy.temperature == nn.dynamic.dycnn.dycnn_temperature(2.5)
    assert od.temperature == nn.dynamic.odconv_temperature(26, 10)
    assert dg.pruned == nn.dynamic.dgc_pruned_channels(8, 0.5, 25 / 120)
    state = model.state_dict()
    assert state["0.temperature"] == dy.temperature and state["2.pruned"] == dg.pruned
    fresh = nn.Sequential(nn.DyConv2d(4, 4, 3, 1, 1, experts=2), nn.ODConv2d(4, 4, 3, 1, 1, experts=2),
                          nn.DGConv2d(8, 8, 3, 1, 1, heads=2, keep=0.5))
    fresh.load_state_dict(state)
    assert fresh[0].temperature == dy.temperature and fresh[2].pruned == dg.pruned
    still = nn.DyConv2d(4, 4, 3, 1, 1, experts=2)  # anneal=False: the hook leaves the temperature alone
    nn.training_progress(still, nn.TrainingProgress(0, 0, 0, 10, 12))
    assert still.temperature == 1.0 and np.isfinite(dy.temperature)
