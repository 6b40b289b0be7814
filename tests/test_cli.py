"""The command line: python -m core.train / core.evaluate / core.data, as a user runs them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.runs import record as runs

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # One intra-op thread, as in the other subprocess tests: where the second core is busy (or the suite
    # is pinned to one), each parallel op of a second thread waits for a time slice, and a run crawls.
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_train_evaluate_export_end_to_end(tmp_path, data_root):
    p = cli("core.train", "--size", "28", "--epochs", "2", "--batch-size", "64", "--data-root", str(data_root),
            "--runs-dir", str(tmp_path / "runs"), "--name", "cli")
    assert p.returncode == 0, p.stderr
    run_dir = Path(p.stdout.strip().splitlines()[-1])
    assert run_dir.parent == (tmp_path / "runs").resolve() and "cli" in run_dir.name
    assert runs.read_status(run_dir)["state"] == "finished" and len(runs.read_metrics(run_dir)) == 2
    e = cli("core.evaluate", str(run_dir))
    assert e.returncode == 0, e.stderr
    assert "test AUC (medmnist)" in e.stdout
    x = cli("core.evaluate", str(run_dir), "--export-csv", str(tmp_path / "csv"))
    assert x.returncode == 0, x.stderr
    assert len(list((tmp_path / "csv").glob("chestmnist_test_*.csv"))) == 1


def test_resume_cli_continues_a_stopped_run(tmp_path, data_root):
    from core.train import TrainConfig, prepare_run, train

    run_dir = prepare_run(TrainConfig(size=28, epochs=2, batch_size=64, data_root=str(data_root),
                                      runs_dir=str(tmp_path), device="cpu"))
    train(run_dir, on_epoch=lambda row: runs.request_stop(run_dir))
    assert runs.read_status(run_dir)["state"] == "stopped"
    p = cli("core.train", "--resume", str(run_dir))
    assert p.returncode == 0, p.stderr
    assert [r["epoch"] for r in runs.read_metrics(run_dir)] == [1, 2]
    assert runs.read_status(run_dir)["state"] == "finished"


@pytest.mark.parametrize("args, words", [
    (["--size", "100"], "--size 100"),
    (["--epochs", "-3"], "--epochs -3"),
    (["--lr", "0"], "--lr 0"),
    (["--subset", "100000"], "larger than the training split"),
    (["--size", "224"], "chestmnist_224.npz"),
    (["--data-root", "/nonexistent/place"], "does not exist"),
    (["--device", "cuda"], "not available"),
])
def test_bad_input_exits_2_with_a_message_not_a_traceback(tmp_path, data_root, args, words):
    if "cuda" in args:
        import torch
        if torch.cuda.is_available():
            pytest.skip("CUDA is present here")
    base = ["--data-root", str(data_root), "--runs-dir", str(tmp_path / "runs"), "--epochs", "1"]
    p = cli("core.train", *base, *args)
    assert p.returncode == 2
    assert words in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_resume_of_a_non_run_and_evaluate_of_a_missing_run(tmp_path):
    p = cli("core.train", "--resume", str(tmp_path))
    assert p.returncode == 2 and "not a run folder" in p.stderr and "Traceback" not in p.stderr
    e = cli("core.evaluate", str(tmp_path / "nope"))
    assert e.returncode == 2 and "missing" in e.stderr and "Traceback" not in e.stderr


def test_data_info_and_device_check(data_root):
    p = cli("core.data", "info", "--data-root", str(data_root))
    assert p.returncode == 0 and "train 256" in p.stdout and "224 px  missing" in p.stdout
    d = cli("core.train", "--device", "check")
    assert d.returncode == 0 and "--device auto would use:" in d.stdout


def test_estimate_flag_prints_time_per_epoch(data_root, tmp_path):
    p = cli("core.train", "--size", "28", "--epochs", "3", "--estimate", "--data-root", str(data_root))
    assert p.returncode == 0 and "per epoch" in p.stdout
    assert "256 train, 96 val and 96 test images" in p.stdout and "chestmnist.npz" in p.stdout  # the file's splits
    p = cli("core.train", "--size", "28", "--epochs", "1", "--subset", "500", "--estimate", "--data-root", str(tmp_path))
    assert p.returncode == 0 and "500 train, 11,219 val and 22,433 test images: official ChestMNIST" in p.stdout
    # A subset the file cannot give, or a file that cannot be read, is an error, not an estimate for other data.
    p = cli("core.train", "--size", "28", "--subset", "1000", "--estimate", "--data-root", str(data_root))
    assert p.returncode == 2 and "--subset 1000 is larger than the training split (256 images" in p.stderr
    (tmp_path / "chestmnist.npz").write_bytes(b"not a zip")
    p = cli("core.train", "--size", "28", "--estimate", "--data-root", str(tmp_path))
    assert p.returncode == 2 and "could not be read" in p.stderr and "per epoch" not in p.stdout
