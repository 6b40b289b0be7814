"""core.evaluate.ensemble on planted scores whose answer is known: sizes that see different findings add
something an ensemble of one size cannot; sizes that see the same findings with independent noise do not."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from core.data.chestmnist import N_CLASSES
from core.evaluate import ensemble as EN
from core.metrics import mean_auc
from core.runs import record as runs

N = 400


def _runs(runs_copy, tmp_path, scores_by_size: dict[int, list[np.ndarray]], labels: np.ndarray) -> dict[int, list]:
    """Copies of the fixture runs (one folder per seed), each given planted test scores and its test AUC."""
    out = {}
    for size, all_scores in scores_by_size.items():
        out[size] = []
        for i, scores in enumerate(all_scores):
            d = tmp_path / f"{size}-{i}"
            shutil.copytree(runs_copy[size], d)
            runs.save_scores(d, "test", scores, labels)
            runs.write_test_metrics(d, {"auc": mean_auc(labels, scores)})
            out[size].append(d)
    return out


def _labels() -> np.ndarray:
    return (np.random.default_rng(0).random((N, N_CLASSES)) < 0.3).astype(np.uint8)


def _scores(labels, seen: np.ndarray, rng) -> np.ndarray:
    """Signal (strength 1) on the `seen` findings, independent noise everywhere."""
    return (labels * seen[None, :] + rng.normal(0, 1, labels.shape)).astype(np.float32)


def test_sizes_that_see_different_findings_beat_the_same_size_control(runs_copy, tmp_path):
    labels, rng = _labels(), np.random.default_rng(1)
    first, second = np.arange(N_CLASSES) < 7, np.arange(N_CLASSES) >= 7
    by_size = _runs(runs_copy, tmp_path, {28: [_scores(labels, first * 1.0, rng) for _ in range(4)],
                                          64: [_scores(labels, second * 1.2, rng) for _ in range(8)]}, labels)
    out = EN.multiscale_study(by_size, n_boot=300)
    assert out["best_size"] == 64 and out["members"] == 2 and out["ensembles"] == 4 and not out["control_overlap"]
    assert out["vs_control"]["delta"] > 0 and out["vs_control"]["ci"][0] > 0
    assert out["vs_best_size"]["ci"][0] > 0
    assert out["cost"]["ensemble"]["gflops"] == pytest.approx(
        out["cost"]["best_size"]["gflops"] + runs.read_config(by_size[28][0])["model"]["flops_per_image"] / 1e9)


def test_sizes_that_see_the_same_findings_add_nothing_beyond_more_members(runs_copy, tmp_path):
    labels, rng = _labels(), np.random.default_rng(2)
    everything = np.ones(N_CLASSES)
    by_size = _runs(runs_copy, tmp_path, {28: [_scores(labels, everything, rng) for _ in range(4)],
                                          64: [_scores(labels, everything, rng) for _ in range(8)]}, labels)
    out = EN.multiscale_study(by_size, n_boot=300)
    lo, hi = out["vs_control"]["ci"]
    assert lo < 0 < hi  # averaging two sizes is averaging two models, no more
    assert out["vs_best_size"]["delta"] > 0  # yet an ensemble beats a single model: why the control is needed


def test_an_ensemble_averages_its_members_and_refuses_other_images(runs_copy, tmp_path):
    labels = _labels()
    rng = np.random.default_rng(3)
    by_size = _runs(runs_copy, tmp_path, {28: [_scores(labels, np.ones(N_CLASSES), rng)],
                                          64: [_scores(labels, np.ones(N_CLASSES), rng)]}, labels)
    members = [by_size[28][0], by_size[64][0]]
    mean, got = EN.ensemble_scores(members)
    np.testing.assert_allclose(mean, (runs.load_scores(members[0], "test")[0] + runs.load_scores(members[1], "test")[0]) / 2)
    np.testing.assert_array_equal(got, labels)
    runs.save_scores(members[1], "test", runs.load_scores(members[1], "test")[0], 1 - labels)
    with pytest.raises(EN.metrics.PairingError):
        EN.ensemble_scores(members)
