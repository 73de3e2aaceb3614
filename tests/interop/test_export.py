"""minicoconv export: a checkpoint's weights as a safetensors PyTorch state_dict that loads strictly."""

from __future__ import annotations

import numpy as np
import pytest

import minicoconv as mc
from minicoconv import models
from minicoconv.cli.main import main
from minicoconv.train.checkpoint import save_checkpoint
from minicoconv.train.config import TrainConfig

safetensors = pytest.importorskip("safetensors", reason="safetensors is not installed (the 'export' extra)")


def test_export_loads_into_the_torch_model(tmp_path, capsys):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from safetensors.torch import load_file

    from minicoconv.interop.torch_models import build

    mc.manual_seed(0)
    cfg = TrainConfig(model="mobilenetv2", conv="coconv", num_classes=10)
    model = models.build("mobilenetv2", conv="coconv", num_classes=10)
    ckpt = save_checkpoint(tmp_path / "last.npz", model, epoch=3, config=cfg.to_dict())
    out = tmp_path / "m.safetensors"
    assert main(["export", str(ckpt), str(out), "--format", "torch"]) == 0
    module = build("mobilenetv2", "coconv", num_classes=10)
    module.load_state_dict(load_file(out), strict=True)
    np.testing.assert_array_equal(module.fc.weight.detach().numpy(), model.fc.weight.numpy())
    assert torch.equal(module.layers[0].depthwise.convs[1].weight,
                       torch.from_numpy(model.layers[0].depthwise.weight.numpy()[1]))
    with pytest.raises(SystemExit):  # OUT exists: refused without --force
        main(["export", str(ckpt), str(out)])
    assert "pass --force" in capsys.readouterr().err


def test_export_refuses_a_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    assert main(["export", str(bad), str(tmp_path / "o.safetensors")]) == 1
    assert "minicoconv export:" in capsys.readouterr().err
