"""core.evaluate: thresholds chosen on val, reported on test; medmnist Evaluator agreement."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core import metrics
from core.runs import record as runs
from core.metrics import thresholds
from core.data.chestmnist import CLASS_NAMES, OFFICIAL_COUNTS
from core.evaluate.scoring import evaluate_run, export_evaluator_csv


def test_thresholds_come_from_validation_and_metrics_from_test(finished_runs):
    run_dir = finished_runs[28]
    val_scores, val_labels = runs.load_scores(run_dir, "val")
    test_scores, test_labels = runs.load_scores(run_dir, "test")
    saved = thresholds.load_thresholds(run_dir / "thresholds.json", CLASS_NAMES)
    assert np.allclose(saved, thresholds.youden(val_labels, val_scores))
    report = json.loads((run_dir / "test_metrics.json").read_text())
    assert report["thresholds_from"] == "val" and report["split"] == "test"
    assert report["auc"] == pytest.approx(metrics.mean_auc(test_labels, test_scores))
    assert report["acc"] == pytest.approx(metrics.medmnist_acc(test_labels, test_scores))
    at = metrics.threshold_metrics(test_labels, test_scores, saved)
    assert report["macro_f1"] == pytest.approx(at["macro_f1"])
    assert report["exact_match_accuracy"] == pytest.approx(at["exact_match"])


def test_reevaluation_reproduces_the_files(finished_runs):
    run_dir = finished_runs[64]
    before = json.loads((run_dir / "test_metrics.json").read_text())
    after = evaluate_run(run_dir, device="cpu")
    assert after["auc"] == pytest.approx(before["auc"], abs=1e-6)


def test_export_matches_medmnist_evaluator_on_official_counts(tmp_path, monkeypatch):
    """Scores exported for a run at the official test size re-score identically in medmnist."""
    from medmnist.evaluator import Evaluator

    rng = np.random.default_rng(0)
    n = OFFICIAL_COUNTS["test"]
    labels = (rng.random((n, 14)) < 0.05).astype(np.uint8)
    scores = np.clip(labels * 0.3 + rng.random((n, 14)) * 0.7, 0, 1).astype(np.float32)
    root = tmp_path / "root"
    root.mkdir()
    empty = np.zeros((1, 64, 64), np.uint8)
    np.savez(root / "chestmnist_64.npz", test_labels=labels, test_images=empty, train_images=empty,
             train_labels=labels[:1], val_images=empty, val_labels=labels[:1])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    runs.write_json(run_dir / "config.json", {"format_version": 1, "train": {"size": 64}})
    runs.save_scores(run_dir, "test", scores, labels)
    path = export_evaluator_csv(run_dir, tmp_path / "out")
    auc, acc = Evaluator("chestmnist", "test", size=64, root=str(root)).evaluate(
        np.loadtxt(path, delimiter=",")[:, 1:])
    assert auc == pytest.approx(metrics.mean_auc(labels, scores), abs=1e-6)
    assert acc == pytest.approx(metrics.medmnist_acc(labels, scores), abs=1e-6)
    assert path.name.startswith("chestmnist_64_test_[AUC]") and f"[AUC]{auc:.3f}" in path.name
