"""Training beyond one process: `torchrun -m core.train` with DistributedDataParallel (gloo, 2 CPU ranks).

Launches the real command line as a subprocess on generated planted-pattern data and compares it
with a single-process run of the same config. Also covers `--device check` and the AMP choice.

Why the tolerances below (0.025 on losses and AUCs) and not equality: DDP takes exactly the same
images per global batch as one process (rank r takes rows r, r+2, ...), and gradients are
averaged, so the only systematic difference is BatchNorm, whose batch statistics are computed per
rank over 16 images instead of 32 (plus float summation order). Measured here (planted 28 px,
256 train images, 2 epochs, batch 32): |DDP - single| <= 0.009 on train/val loss, <= 0.007 on val
AUC and test AUC. The bugs this test is meant to catch move the epoch-2 numbers by 0.05 or more on
the same data: gradients summed instead of averaged (= lr x2: train loss -0.08, val AUC +0.05),
each rank training on only its own half without gradient sync (val AUC -0.06, test AUC -0.06),
each rank taking the whole batch of 32 rather than half (like batch 16 in one process: train loss
-0.08, val AUC +0.06). 0.025 sits between the two with margin on both sides.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.runs import record as runs
from core.train.recipe import TrainConfig
from core.train.device import amp_dtype
from core.train import prepare_run, train
from core.train.__main__ import main as train_main
from tests.synthetic import write_planted

ROOT = Path(__file__).resolve().parents[1]
TOL = 0.025
RUN_FILES = ("config.json", "status.json", "metrics.jsonl", "last.pt", "best.pt", "val_scores.npz",
             "test_scores.npz", "thresholds.json", "test_metrics.json")
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available in this torch build")


def _env() -> dict:
    # One thread per rank: the two ranks share this machine's cores. CHESTMNIST_PROGRESS=1 asks for
    # the printing path even without a terminal: rank 0 prints and reads test_metrics.json, which
    # the other ranks must not (it is written by rank 0 after they are done).
    return {**os.environ, "OMP_NUM_THREADS": "1", "CHESTMNIST_PROGRESS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(*args: str) -> list[str]:
    # --standalone: torchrun binds a free port itself (a port picked here and released could be taken
    # by another test's server before torchrun binds it).
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "core.train", *args]


def _config(data_root: Path, runs_dir: Path, **kw) -> TrainConfig:
    # The command line's defaults with the test's size/epochs/batch: what torchrun below trains.
    return TrainConfig(size=28, epochs=2, batch_size=32, device="cpu", data_root=str(data_root),
                       runs_dir=str(runs_dir), **kw)


@pytest.fixture(scope="module")
def ddp_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp-data")
    write_planted(root, 28)  # 256 / 96 / 96 images with a planted square per class
    return root


@pytest.fixture(scope="module")
def single_run(ddp_data, tmp_path_factory) -> Path:
    run_dir = prepare_run(_config(ddp_data, tmp_path_factory.mktemp("single")))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like the ranks, so only DDP itself differs
    try:
        assert train(run_dir) == "finished"
    finally:
        # What it was: more threads than the process may run on (os.cpu_count() under taskset) leave each
        # parallel op waiting for a time slice per thread, and every later test in this process crawls.
        torch.set_num_threads(threads)
    return run_dir


@pytest.fixture(scope="module")
def ddp_run(ddp_data, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    runs_dir = tmp_path_factory.mktemp("ddp-runs")
    proc = subprocess.run(_torchrun("--size", "28", "--epochs", "2", "--data-root", str(ddp_data), "--runs-dir",
                                    str(runs_dir), "--batch-size", "32", "--device", "cpu"),
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    folders = [d for d in runs_dir.iterdir() if d.is_dir()]
    assert len(folders) == 1, f"expected one run folder from 2 ranks, got {folders}"
    return folders[0], proc


def test_torchrun_writes_one_complete_run(ddp_run, ddp_data):
    run_dir, proc = ddp_run
    missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
    assert not missing, missing
    status = runs.read_status(run_dir)
    assert status["state"] == "finished"
    # Only rank 0 reports: the run folder is printed once on stdout.
    assert proc.stdout.split() == [str(run_dir.resolve())]
    rows = runs.read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2]  # one line per epoch, not one per rank
    assert all(r["images"] == 256 for r in rows)  # the whole train split went through per epoch
    scores, labels = runs.load_scores(run_dir, "val")
    assert scores.shape == (96, 14)  # the whole validation set was scored
    assert runs.read_config(run_dir)["train"]["device"] == "cpu"


def test_torchrun_matches_single_process(ddp_run, single_run):
    run_dir, _ = ddp_run
    ddp, one = runs.read_metrics(run_dir), runs.read_metrics(single_run)
    for a, b in zip(ddp, one):
        for key in ("train_loss", "val_loss", "val_auc", "train_auc"):
            assert abs(a[key] - b[key]) < TOL, (a["epoch"], key, a[key], b[key])
    test_ddp = json.loads((run_dir / "test_metrics.json").read_text())
    test_one = json.loads((single_run / "test_metrics.json").read_text())
    assert abs(test_ddp["auc"] - test_one["auc"]) < TOL, (test_ddp["auc"], test_one["auc"])
    assert test_ddp["n_samples"] == test_one["n_samples"] == 96


def _stop_after_first_epoch(run_dir: Path, done: threading.Event) -> None:
    while not done.is_set():
        if runs.read_metrics(run_dir):
            runs.request_stop(run_dir)
            return
        time.sleep(0.02)


def test_torchrun_stop_and_resume(ddp_data, ddp_run, tmp_path):
    run_dir = prepare_run(_config(ddp_data, tmp_path))
    done = threading.Event()
    watcher = threading.Thread(target=_stop_after_first_epoch, args=(run_dir, done), daemon=True)
    watcher.start()
    try:
        first = subprocess.run(_torchrun("--resume", str(run_dir)), cwd=ROOT, env=_env(), capture_output=True,
                               text=True, timeout=120)
    finally:
        done.set()
        watcher.join()
    assert runs.read_status(run_dir)["state"] == "stopped", first.stderr[-3000:]
    assert first.returncode != 0  # core.train exits 1 on a stop; torchrun passes that on
    assert [r["epoch"] for r in runs.read_metrics(run_dir)] == [1]
    assert not (run_dir / "test_metrics.json").exists()

    second = subprocess.run(_torchrun("--resume", str(run_dir)), cwd=ROOT, env=_env(), capture_output=True,
                            text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-4000:]
    assert runs.read_status(run_dir)["state"] == "finished"
    assert not (run_dir / "STOP").exists()
    rows = runs.read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all((run_dir / f).is_file() for f in RUN_FILES)
    # Epochs are seeded and the checkpoint holds model + optimizer state, so the stopped-and-resumed
    # run replays the uninterrupted torchrun run (up to float noise).
    reference = runs.read_metrics(ddp_run[0])
    for a, b in zip(rows, reference):
        for key in ("train_loss", "val_loss", "val_auc"):
            assert abs(a[key] - b[key]) < 1e-4, (a["epoch"], key, a[key], b[key])


def test_device_check_prints_what_was_found(capsys):
    # In-process: `python -m core.train --device check` is this same main() (a subprocess would
    # only add a torch import's worth of seconds).
    assert train_main(["--device", "check"]) == 0
    out = capsys.readouterr().out
    assert f"torch {torch.__version__}" in out
    assert ("CUDA: not available" in out) != torch.cuda.is_available()
    assert "MPS:" in out
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert f"--device auto would use: {expected}" in out


@pytest.mark.parametrize("native", [False, True])
def test_amp_auto_on_cpu_follows_native_bf16(monkeypatch, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    cpu = torch.device("cpu")
    assert amp_dtype(TrainConfig(amp="auto"), cpu) is (torch.bfloat16 if native else None)
    assert amp_dtype(TrainConfig(amp="off"), cpu) is None
    assert amp_dtype(TrainConfig(amp="bf16"), cpu) is torch.bfloat16
    assert amp_dtype(TrainConfig(amp="fp16"), cpu) is torch.float16
    assert amp_dtype(TrainConfig(amp="auto"), torch.device("mps")) is None


def test_run_config_records_the_precision_used(tmp_path, ddp_data):
    run_dir = prepare_run(TrainConfig(size=28, epochs=1, data_root=str(ddp_data), runs_dir=str(tmp_path), device="cpu"))
    expected = "bfloat16" if amp_dtype(TrainConfig(), torch.device("cpu")) else "fp32"
    assert runs.read_config(run_dir)["machine"]["amp"] == expected
    off = prepare_run(TrainConfig(size=28, epochs=1, amp="off", data_root=str(ddp_data), runs_dir=str(tmp_path),
                                  device="cpu"))
    assert runs.read_config(off)["machine"]["amp"] == "fp32"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_amp_and_channels_last_train(ddp_data, tmp_path):
    run_dir = prepare_run(TrainConfig(size=28, epochs=1, batch_size=32, device="cuda", data_root=str(ddp_data),
                                      runs_dir=str(tmp_path)))
    assert amp_dtype(TrainConfig(), torch.device("cuda")) in (torch.bfloat16, torch.float16)
    assert train(run_dir) == "finished"
    row = runs.read_metrics(run_dir)[0]
    assert np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"])
