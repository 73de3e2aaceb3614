"""The train, eval, plot and download commands, run in-process through `main([...])` where possible."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import pickle
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from minicoconv.cli.main import main
from minicoconv.train import load_checkpoint, read_metrics
from minicoconv.train import trainer as trainer_module

#: a real model at its cheapest: MobileNetV2, batch 8, two steps per epoch, tiny synthetic data
QUICK = ["--model", "mobilenetv2", "--synthetic", "--synthetic-train", "48", "--synthetic-test", "16",
         "--batch-size", "8", "--max-steps", "2", "--eval-subset", "8"]


def train(capsys, *args):
    code = main(["train", *args, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def coconv_run(tmp_path_factory):
    """One tiny CoConv run (2 epochs, val split) shared by the eval and plot tests."""
    out = tmp_path_factory.mktemp("runs") / "coconv"
    code = main(["train", *QUICK, "--conv", "coconv", "--experts", "2", "--epochs", "2", "--val-split", "8",
                 "--max-steps", "1", "--out", str(out), "--no-progress"])
    assert code == 0
    return out


# ---- train ----------------------------------------------------------------------------------------

def test_train_writes_the_run_folder(coconv_run):
    assert {p.name for p in coconv_run.iterdir()} >= {"metrics.jsonl", "config.json", "best.npz", "last.npz"}
    records = read_metrics(coconv_run / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["synthetic"] is True and r["val_top1"] is not None and r["test_top5"] is not None
               for r in records)
    config = json.loads((coconv_run / "config.json").read_text())
    assert config["conv"] == "coconv" and config["experts"] == 2 and config["synthetic"] is True
    ckpt = load_checkpoint(coconv_run / "last.npz")
    assert ckpt.config == config and ckpt.trainer["synthetic"] is True and ckpt.global_step == 2


@pytest.mark.slow
def test_train_output_labels_synthetic_data_and_reports_best(capsys, tmp_path):
    code, out, err = train(capsys, *QUICK, "--epochs", "1", "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert "SYNTHETIC" in out and "[synthetic]" in out
    assert "final (epoch 1): test top-1" in out and "best = last" in out


def test_missing_data_says_how_to_get_it(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("MINICOCONV_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    code, out, err = train(capsys, "--model", "mobilenetv2", "--epochs", "1")
    assert code != 0
    assert "No CIFAR-100 copy found" in err and "minicoconv download cifar100" in err and "--synthetic" in err
    assert "Traceback" not in err


def _write_fake_cifar(folder, n_train=48, n_test=16):
    """A small CIFAR-100 folder in the official layout (Python 3 pickles, which the reader accepts)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        data = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                b"fine_labels": [int(v) for v in rng.integers(0, 100, n)]}
        (folder / split).write_bytes(pickle.dumps(data, protocol=2))
    meta = {b"fine_label_names": [f"class_{i}".encode() for i in range(100)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


@pytest.mark.slow
def test_train_on_a_cifar_folder(capsys, tmp_path):
    data = _write_fake_cifar(tmp_path / "cifar-100-python")
    code, out, err = train(capsys, "--model", "mobilenetv2", "--data", str(data), "--epochs", "1",
                           "--batch-size", "8", "--max-steps", "1", "--eval-subset", "8", "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert "CIFAR-100 from" in out and "SYNTHETIC" not in out and "warning: the train split has 48" in out
    assert read_metrics(tmp_path / "r" / "metrics.jsonl")[0]["synthetic"] is False


NONSENSE = [
    (["--model", "vgg16"], "invalid choice"),
    (["--conv", "magic"], "unknown conv type 'magic'"),
    (["--experts", "0"], "--experts must be"),
    (["--lr", "-0.1"], "--lr must be"),
    (["--lr", "nan"], "--lr must be"),
    (["--batch-size", "0"], "--batch-size must be"),
    (["--epochs", "0"], "--epochs must be"),
    (["--epochs", "two"], "invalid int value"),
    (["--max-steps", "-1"], "--max-steps must be"),
    (["--val-split", "64", "--synthetic-train", "64"], "--val-split 64 must be smaller"),
    (["--val-split", "-3"], "--val-split must be"),
    (["--activation", "softmax"], "--activation applies only to --conv coconv"),
    (["--conv", "condconv", "--no-expert-bn"], "--no-expert-bn applies only to --conv coconv"),
    (["--conv", "static", "--reduction", "8"], "--reduction applies only to --conv dycnn or coconv or odconv"),
    (["--conv", "coconv", "--dycnn-anneal"], "--anneal applies only to --conv dycnn or odconv"),
    (["--conv", "coconv", "--conv-arg", "heads=2"], "--conv-arg heads=... applies only to --conv dgc"),
    (["--plugin", "no_such_plugin_file.py"], "--plugin"),
    (["--conv", "coconv", "--reduction", "0"], "--reduction must be"),
    (["--data", "somewhere"], "--data and --synthetic exclude each other"),
    (["--synthetic-train", "64", "--train-subset", "100"], "--train-subset 100 is larger"),
]


@pytest.mark.parametrize("args,message", NONSENSE, ids=[" ".join(a) for a, _ in NONSENSE])
def test_nonsense_arguments_are_refused(capsys, tmp_path, args, message):
    with pytest.raises(SystemExit) as info:
        main(["train", "--synthetic", "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert message in err and "Traceback" not in err


def test_existing_run_needs_resume(capsys, coconv_run):
    with pytest.raises(SystemExit):
        main(["train", *QUICK, "--conv", "coconv", "--out", str(coconv_run)])
    assert "already holds a run" in capsys.readouterr().err


def test_resume_refuses_a_different_config(capsys, coconv_run, tmp_path):
    with pytest.raises(SystemExit):
        main(["train", "--out", str(coconv_run), "--resume", "--lr", "0.5"])
    err = capsys.readouterr().err
    assert "--lr 0.5" in err and "differ" in err
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "empty"), "--resume"])
    assert "to continue from" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_then_resume_from_the_command_line(capsys, tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    real_step, calls = trainer_module.train_step, []

    def step_then_ctrl_c(*args, **kwargs):
        result = real_step(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(trainer_module, "train_step", step_then_ctrl_c)
    code, text, err = train(capsys, *QUICK, "--epochs", "1", "--out", out)
    assert code == 130
    assert f"Resume with: minicoconv train --out {out} --resume" in text and "Traceback" not in err
    assert load_checkpoint(f"{out}/last.npz").global_step == 1
    monkeypatch.undo()
    code, text, err = train(capsys, "--out", out, "--resume")
    assert code == 0, err
    assert "resumed from" in text and "epoch 1, step 1" in text
    assert load_checkpoint(f"{out}/last.npz").global_step == 2


@pytest.mark.slow
def test_resume_in_another_process_is_bit_identical(tmp_path):
    """2 epochs straight == 1 epoch, then 1 more in a new process with --resume (DY-CNN, annealed)."""
    args = [*QUICK, "--conv", "dycnn", "--experts", "2", "--dycnn-anneal", "--max-steps", "1", "--no-progress"]
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    assert main(["train", *args, "--epochs", "2", "--out", straight]) == 0
    command = [sys.executable, "-m", "minicoconv.cli.main", "train", *args, "--out", split]
    for extra in (["--epochs", "1"], ["--epochs", "2", "--resume"]):
        result = subprocess.run(command + extra, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    a, b = load_checkpoint(f"{straight}/last.npz"), load_checkpoint(f"{split}/last.npz")
    assert a.model.keys() == b.model.keys()
    for k in a.model:
        assert np.array_equal(a.model[k], b.model[k]), k
    assert [r["train_loss"] for r in read_metrics(f"{straight}/metrics.jsonl")] == \
        [r["train_loss"] for r in read_metrics(f"{split}/metrics.jsonl")]


# ---- eval ------------------------------------------------------------------------------------------

def _eval(capsys, *args):
    code = main(["eval", *args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1]), out


def test_eval_and_fused_eval_agree(capsys, coconv_run):
    plain, text = _eval(capsys, str(coconv_run / "best.npz"), "--eval-subset", "8")
    fused, _ = _eval(capsys, str(coconv_run / "best.npz"), "--eval-subset", "8", "--fused")
    assert plain["n"] == fused["n"] == 8 and plain["synthetic"] is True
    assert "SYNTHETIC" in text and "top-1" in text
    assert plain["top1"] == fused["top1"] and plain["top5"] == fused["top5"]
    assert plain["loss"] == pytest.approx(fused["loss"], rel=1e-4, abs=1e-4)


def test_eval_matches_the_test_accuracy_of_training(capsys, coconv_run):
    last, _ = _eval(capsys, str(coconv_run / "last.npz"), "--eval-subset", "8")
    record = read_metrics(coconv_run / "metrics.jsonl")[-1]
    assert last["top1"] == pytest.approx(record["test_top1"]) and last["top5"] == pytest.approx(record["test_top5"])


def test_eval_of_a_bad_file_is_a_clear_error(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert main(["eval", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err


# ---- plot ------------------------------------------------------------------------------------------

def test_plot_writes_a_png(capsys, coconv_run, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional [plot] extra")
    target = tmp_path / "curves.png"
    assert main(["plot", str(coconv_run), "--out", str(target)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_so(capsys, coconv_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main(["plot", str(coconv_run), "--out", str(tmp_path / "x.png")]) == 1
    assert "pip install 'minicoconv[plot]'" in capsys.readouterr().err


def test_plot_of_a_folder_without_metrics(capsys, tmp_path):
    assert main(["plot", str(tmp_path)]) == 1
    assert "metrics.jsonl" in capsys.readouterr().err


# ---- download (from a server on 127.0.0.1) ----------------------------------------------------------

@pytest.fixture
def archive_server():
    payload = b"not really cifar, but bytes with a checksum" * 100

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/cifar-100-python.tar.gz", payload
    finally:
        httpd.shutdown()
        thread.join()


def test_download_verifies_the_checksum(capsys, tmp_path, archive_server):
    url, payload = archive_server
    md5 = hashlib.md5(payload).hexdigest()
    assert main(["download", "cifar100", "--dir", str(tmp_path), "--url", url, "--md5", md5, "--no-progress"]) == 0
    assert (tmp_path / "cifar-100-python.tar.gz").read_bytes() == payload
    assert "MD5 verified" in capsys.readouterr().out

    other = tmp_path / "other"
    assert main(["download", "cifar100", "--dir", str(other), "--url", url, "--md5", "0" * 32, "--no-progress"]) == 1
    assert "checksum mismatch" in capsys.readouterr().err
    assert not (other / "cifar-100-python.tar.gz").exists()
