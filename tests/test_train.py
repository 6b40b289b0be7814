"""core.train: learning, resume == uninterrupted, run folder contents, stop, early stopping."""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data import chestmnist as D
from core.runs import checkpoints
from core.runs import record as runs
from core.train.recipe import ConfigError, TrainConfig
from core.train.cost import Estimate, estimate, format_seconds
from core.train.background import launch
from core.train.step import build_optimizer, epoch_lr
from core.train import prepare_run, train
from tests.synthetic import write_planted


def _config(root, runs_dir, **kw) -> TrainConfig:
    base = dict(size=28, epochs=3, batch_size=64, data_root=str(root), runs_dir=str(runs_dir), device="cpu")
    return TrainConfig(**{**base, **kw})


def test_planted_patterns_are_learned(tmp_path):
    root = tmp_path / "data"
    write_planted(root, 28, n=(768, 128, 128), seed=3)
    run_dir = prepare_run(_config(root, tmp_path / "runs", epochs=5, augment=True))
    assert train(run_dir) == "finished"
    rows = runs.read_metrics(run_dir)
    assert len(rows) == 5 and max(r["val_auc"] for r in rows) > 0.95
    test = json.loads((run_dir / "test_metrics.json").read_text())
    assert test["auc"] > 0.95 and test["auc_undefined_classes"] == []


def test_run_folder_is_complete_and_readable(finished_runs):
    run_dir = finished_runs[28]
    for name in ("config.json", "status.json", "metrics.jsonl", "best.pt", "last.pt", "thresholds.json",
                 "val_scores.npz", "test_scores.npz", "test_metrics.json"):
        assert (run_dir / name).is_file(), name
    config = runs.read_config(run_dir)
    assert config["train"]["size"] == 28 and config["data"]["md5"] and config["versions"]["torch"] == torch.__version__
    assert config["model"]["params"] > 0 and config["model"]["flops_per_image"] > 0
    assert runs.read_status(run_dir)["state"] == "finished"
    row = runs.read_metrics(run_dir)[0]
    for key in ("epoch", "train_loss", "val_loss", "train_auc", "val_auc", "val_acc", "val_macro_f1",
                "val_micro_f1", "val_auc_per_class", "seconds", "images_per_s"):
        assert key in row, key
    assert len(row["val_auc_per_class"]) == 14
    scores, labels = runs.load_scores(run_dir, "test")
    assert scores.shape == labels.shape == (96, 14) and 0 <= scores.min() and scores.max() <= 1
    model = checkpoints.load_model(run_dir)
    assert not model.training


def test_resume_equals_uninterrupted(tmp_path, data_root):
    # With a cosine schedule and AdamW: the rate is a function of the epoch and the decay lives in the
    # optimizer state, so a resume must pick both up exactly where the stop left them.
    recipe = dict(augment=True, schedule="cosine", weight_decay=0.1)
    straight = prepare_run(_config(data_root, tmp_path / "a", **recipe))
    train(straight)
    interrupted = prepare_run(_config(data_root, tmp_path / "b", **recipe))
    calls = []

    def stop_in_epoch_two() -> bool:
        calls.append(1)
        return len(runs.read_metrics(interrupted)) == 1 and len(calls) > 6
    assert train(interrupted, should_stop=stop_in_epoch_two) == "stopped"
    assert runs.read_status(interrupted)["state"] == "stopped" and len(runs.read_metrics(interrupted)) == 1
    assert train(interrupted) == "finished"
    a, b = runs.read_metrics(straight), runs.read_metrics(interrupted)
    assert [r["epoch"] for r in b] == [1, 2, 3]
    assert [r["lr"] for r in b] == pytest.approx([1e-3, 7.5e-4, 2.5e-4])  # 1e-3 * (1 + cos(pi * (e - 1) / 3)) / 2
    # The log says where training resumed (Compare marks it); an uninterrupted run says nothing.
    assert [r.get("resumed") for r in b] == [None, True, None] and not any("resumed" in r for r in a)
    for ra, rb in zip(a, b):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], abs=1e-6)
        assert ra["val_auc"] == pytest.approx(rb["val_auc"], abs=1e-6)
    wa = checkpoints.load_checkpoint(straight / "last.pt")["model"]
    wb = checkpoints.load_checkpoint(interrupted / "last.pt")["model"]
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-5) for k in wa)


def test_stop_file_stops_after_current_batch(tmp_path, data_root):
    run_dir = prepare_run(_config(data_root, tmp_path))
    runs.request_stop(run_dir)  # a stale STOP from before the start is cleared...
    seen = []

    def on_epoch(row):
        seen.append(row["epoch"])
        runs.request_stop(run_dir)  # ...but one set during training stops it
    assert train(run_dir, on_epoch=on_epoch) == "stopped"
    assert seen == [1] and (run_dir / "last.pt").is_file()


def test_early_stopping_by_patience(tmp_path, data_root):
    run_dir = prepare_run(_config(data_root, tmp_path, epochs=6, patience=1, select_by="val_loss", lr=0.5))
    train(run_dir)
    rows = runs.read_metrics(run_dir)
    best = min(r["val_loss"] for r in rows)
    assert len(rows) < 6 and rows[-1]["best_epoch"] == next(r["epoch"] for r in rows if r["val_loss"] == best)


def test_best_checkpoint_is_the_selected_epoch(finished_runs):
    run_dir = finished_runs[64]
    rows = runs.read_metrics(run_dir)
    best_epoch = max(rows, key=lambda r: r["val_auc"])["epoch"]
    assert checkpoints.load_checkpoint(run_dir / "best.pt")["epoch"] == best_epoch


def test_subset_uses_that_many_training_images(tmp_path, data_root):
    run_dir = prepare_run(_config(data_root, tmp_path, epochs=1, subset=100))
    train(run_dir)
    assert runs.read_metrics(run_dir)[0]["images"] == 100


@pytest.mark.parametrize("kw, flag", [(dict(size=100), "--size"), (dict(epochs=-1), "--epochs"), (dict(lr=0), "--lr"),
                                      (dict(batch_size=0), "--batch-size"), (dict(model="x"), "--model"),
                                      (dict(select_by="f1"), "--select-by"), (dict(pos_weight_clip=-1), "--pos-weight-clip"),
                                      (dict(schedule="step"), "--schedule"), (dict(weight_decay=-0.1), "--weight-decay")])
def test_bad_settings_are_rejected_before_a_run_exists(tmp_path, data_root, kw, flag):
    with pytest.raises(ConfigError, match=flag):
        prepare_run(_config(data_root, tmp_path, **kw))
    assert not any(tmp_path.iterdir())  # runs_dir is tmp_path itself: no run folder was made


def test_subset_larger_than_split_is_rejected(tmp_path, data_root):
    with pytest.raises(ConfigError, match="larger than the training split"):
        prepare_run(_config(data_root, tmp_path / "runs", subset=10_000))
    assert not (tmp_path / "runs").exists()


def test_estimate_measures_a_positive_speed():
    e = estimate(TrainConfig(size=28, epochs=4, device="cpu"), {"train": 1000, "val": 100, "test": 300}, n_batches=1)
    assert e.images_per_s > 0 and e.seconds_per_epoch == pytest.approx((1000 + 0.5 * 100) / e.images_per_s)
    # then val and test scored once with the best checkpoint
    assert e.final_seconds == pytest.approx(0.5 * (100 + 300) / e.images_per_s)
    assert e.start_seconds > 0  # a trainer process's start is part of the cost
    assert e.total_seconds == pytest.approx(e.start_seconds + 4 * e.seconds_per_epoch + e.final_seconds)


def test_estimate_reads_the_split_sizes_of_the_data_file(data_root, tmp_path):
    e = estimate(TrainConfig(size=28, epochs=1, subset=100, device="cpu", data_root=str(data_root)), n_batches=1)
    assert (e.n_train, e.n_val, e.n_test) == (100, 96, 96)
    e = estimate(TrainConfig(size=28, epochs=1, device="cpu", data_root=str(tmp_path)), n_batches=1)  # no file there
    assert (e.n_train, e.n_val, e.n_test) == tuple(D.OFFICIAL_COUNTS[s] for s in D.SPLITS)
    with pytest.raises(ConfigError, match="larger than the training split"):
        estimate(TrainConfig(size=28, subset=1000, device="cpu", data_root=str(data_root)), n_batches=1)


def test_demo_smoke_one_epoch(tmp_path, demo_root):
    run_dir = prepare_run(_config(demo_root, tmp_path, epochs=1))
    assert train(run_dir) == "finished"
    test = json.loads((run_dir / "test_metrics.json").read_text())
    assert np.isfinite(test["auc"]) and test["n_samples"] == len(D.load(demo_root, 28).test)
    # Hernia has no positives in the demo's val split: its per-class val AUC is undefined, and the
    # epoch's mean val AUC is still a number (undefined classes are left out, not averaged in as NaN).
    (row,) = runs.read_metrics(run_dir)
    assert row["val_auc_per_class"]["hernia"] is None or np.isnan(row["val_auc_per_class"]["hernia"])
    assert np.isfinite(row["val_auc"])


def test_launch_trains_in_the_background_with_sleeping_openmp_threads(tmp_path, data_root, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    run_dir = prepare_run(_config(data_root, tmp_path / "runs", epochs=1))
    pid = launch([run_dir])
    environ = Path(f"/proc/{pid}/environ")
    if environ.exists():  # Linux: read the child's environment while it imports torch
        # It reads empty until the forked child has exec'd python (a race the test must wait out).
        deadline = time.time() + 10
        while not environ.read_bytes() and time.time() < deadline:
            time.sleep(0.01)
        assert b"OMP_WAIT_POLICY=PASSIVE" in environ.read_bytes().split(b"\0")
    deadline = time.time() + 120
    while runs.read_status(run_dir)["state"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.2)
    assert runs.read_status(run_dir)["state"] == "finished", (run_dir / "train.log").read_text()[-2000:]
    assert (run_dir / "test_metrics.json").is_file()
    os.waitpid(pid, 0)  # reap the child


@pytest.mark.parametrize("seconds, text", [(0.2, "<1s"), (0.6, "1s"), (59.4, "59s"), (185, "3m 05s"),
                                           (3599.6, "1h 00m"), (7620, "2h 07m")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_estimate_within_a_budget_inverts_the_cost_model():
    e = Estimate(10.0, "cpu", n_train=256, n_val=96, n_test=500, epochs=200)
    assert e.total_seconds == pytest.approx(200 * (256 + 0.5 * 96) / 10.0 + 0.5 * (96 + 500) / 10.0)
    subset, epochs = e.within(3600)
    assert dataclasses.replace(e, n_train=subset).total_seconds == pytest.approx(3600, abs=200 / 10)
    assert dataclasses.replace(e, epochs=epochs).total_seconds <= 3600
    assert dataclasses.replace(e, epochs=epochs + 1).total_seconds > 3600


def test_weight_decay_switches_adam_to_decoupled_adamw():
    w = torch.nn.Parameter(torch.ones(3))
    plain, decayed = build_optimizer([w], 1e-3), build_optimizer([w], 1e-3, weight_decay=0.5)
    assert type(plain) is torch.optim.Adam and type(decayed) is torch.optim.AdamW
    # Decoupled: with a zero gradient, Adam leaves the weight alone while AdamW shrinks it by lr * wd.
    for opt in (plain, decayed):
        w.data.fill_(1.0)
        w.grad = torch.zeros(3)
        opt.step()
        shrink = 1 - w.data[0].item()
        assert shrink == pytest.approx(0 if opt is plain else 1e-3 * 0.5, abs=1e-7)  # float32 weights


def test_cosine_schedule_falls_from_lr_towards_zero():
    rates = [epoch_lr(1e-3, "cosine", e, 4) for e in range(1, 5)]
    assert rates == pytest.approx([1e-3, 1e-3 * (1 + 2 ** -0.5) / 2, 5e-4, 1e-3 * (1 - 2 ** -0.5) / 2])
    assert epoch_lr(1e-3, "constant", 4, 4) == 1e-3
