"""grid (dry-run commands, run states) and table (mean ± std, paper figure, incomplete runs), hand-made runs."""

from __future__ import annotations

import json

import pytest

from minicoconv.cli.main import main
from minicoconv.experiments import cells, runner
from minicoconv.experiments.runs import RunError, read_run
from minicoconv.train.config import TrainConfig


def test_dry_run_prints_one_train_command_per_run(capsys, tmp_path):
    rc = main(["grid", "--models", "resnet18", "--convs", "static", "coconv", "--seeds", "0", "1", "--root",
               str(tmp_path), "--dry-run", "--", "--synthetic", "--epochs", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0 and len(lines) == 4
    assert all(line.startswith("minicoconv train --model resnet18") and "--synthetic" in line for line in lines)
    assert f"--seed 1 --out {tmp_path}/resnet18-coconv-n4/seed1" in lines[3]


def test_grid_refuses_options_it_sets(capsys):
    with pytest.raises(SystemExit):
        main(["grid", "--dry-run", "--", "--seed", "3"])
    assert "sets --seed itself" in capsys.readouterr().err


def write_run(folder, conv, seed, tops, epochs=2, val=True):
    folder.mkdir(parents=True)
    cfg = TrainConfig(model="resnet18", conv=conv, seed=seed, epochs=epochs, out=str(folder))
    (folder / "config.json").write_text(cfg.to_json())
    with open(folder / "metrics.jsonl", "w") as f:
        for e, (v, t) in enumerate(tops, 1):
            f.write(json.dumps({"epoch": e, "val_top1": v if val else None, "test_top1": t}) + "\n")


def test_table_mean_std_paper_and_validation_epoch(capsys, tmp_path):
    write_run(tmp_path / "a", "static", 0, [(50.0, 60.0), (40.0, 99.0)])   # validation picks epoch 1: 60
    write_run(tmp_path / "b", "static", 1, [(10.0, 20.0), (30.0, 62.0)])   # epoch 2: 62
    write_run(tmp_path / "c", "static", 2, [(10.0, 20.0)])                  # incomplete: not averaged
    assert main(["table", str(tmp_path), "--no-counts"]) == 0
    out = capsys.readouterr().out
    assert "| static | 61.00 ± 1.41 (n=2) +1 incomplete | 71.87 |" in out
    assert "1/2 epochs" in out


def test_run_states_for_resuming(tmp_path):
    run = cells.plan([cells.Cell("resnet18", "static")], [0], tmp_path, {"epochs": 2})[0]
    assert runner.run_state(run) == "new"
    write_run(run.out, "static", 0, [(1.0, 1.0)])
    (run.out / "last.npz").write_bytes(b"")
    assert runner.run_state(run) == "partial" and runner.train_argv(run, "partial")[-1] == "--resume"
    with open(run.out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 2, "val_top1": 1.0, "test_top1": 1.0}) + "\n")
    assert runner.run_state(run) == "done"


def test_bad_run_files_are_refused_clearly(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(RunError, match="not a minicoconv training config"):
        read_run(tmp_path)
    write_run(tmp_path / "r", "static", 0, [(1.0, 1.0)])
    (tmp_path / "r" / "metrics.jsonl").write_text('{"epoch": "x"}\n{"epoch": 1}\n')
    with pytest.raises(RunError, match="no epoch number"):
        read_run(tmp_path / "r")
