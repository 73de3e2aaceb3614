"""`--device reference` through the command line: train, eval (the checkpoint's device) and bench."""

from __future__ import annotations

import pytest

from minicoconv.cli.main import main
from minicoconv.train import load_checkpoint

QUICK = ["--model", "alexnet", "--conv", "coconv", "--experts", "2", "--synthetic", "--synthetic-train", "8",
         "--synthetic-test", "4", "--batch-size", "4", "--epochs", "1", "--max-steps", "2", "--no-progress"]


def test_train_and_eval_on_the_reference_device(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", *QUICK, "--device", "reference", "--out", str(out)]) == 0
    assert "epoch 1/1" in capsys.readouterr().out
    assert load_checkpoint(out / "best.npz").config["device"] == "reference"
    assert main(["eval", str(out / "best.npz"), "--synthetic", "--batch-size", "4"]) == 0
    assert "test top-1" in capsys.readouterr().out


def test_bench_on_the_reference_device(capsys):
    assert main(["bench", "--model", "alexnet", "--batch-size", "2", "--repeats", "1", "--warmup", "0",
                 "--no-torch", "--no-memory", "--device", "reference"]) in (0, None)
    assert "alexnet" in capsys.readouterr().out


def test_an_unknown_device_is_refused(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["train", *QUICK, "--device", "tpu", "--out", str(tmp_path / "run")])
    assert "reference" in capsys.readouterr().err
