"""core.metrics against scikit-learn and medmnist's own evaluator."""
import json
import warnings

import numpy as np
import pytest
from medmnist.evaluator import getACC, getAUC
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
)

from core.files import to_jsonable
from core.metrics import bootstrap
from core import metrics

TASK = "multi-label, binary-class"


def make_data(n=500, c=14, seed=0, round_to=None):
    """Correlated labels/scores with varied prevalence; optional rounding creates ties."""
    rng = np.random.default_rng(seed)
    prevalence = rng.uniform(0.05, 0.5, c)
    labels = (rng.random((n, c)) < prevalence).astype(int)
    scores = 1 / (1 + np.exp(-(rng.normal(size=(n, c)) + 1.2 * labels - 0.8)))
    if round_to is not None:
        scores = scores.round(round_to)
    return labels, scores


def with_undefined_classes(labels):
    """Class 2 gets no positives, class 5 no negatives."""
    labels = labels.copy()
    labels[:, 2] = 0
    labels[:, 5] = 1
    return labels


def test_auc_per_class_matches_sklearn():
    labels, scores = make_data(round_to=2)
    expected = [roc_auc_score(labels[:, c], scores[:, c]) for c in range(labels.shape[1])]
    np.testing.assert_allclose(metrics.auc_per_class(labels, scores), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_auc_and_acc_match_medmnist(seed):
    labels, scores = make_data(seed=seed)
    assert metrics.mean_auc(labels, scores) == pytest.approx(getAUC(labels, scores, TASK), abs=1e-12)
    assert metrics.medmnist_acc(labels, scores) == pytest.approx(getACC(labels, scores, TASK), abs=1e-12)
    assert metrics.medmnist_acc(labels, scores, 0.3) == pytest.approx(
        getACC(labels, scores, TASK, threshold=0.3), abs=1e-12
    )


def test_medmnist_acc_is_strictly_greater():
    labels = np.array([[1, 0], [0, 0]])
    scores = np.array([[0.5, 0.5], [0.5, 0.5]])
    # A score equal to the threshold is a negative prediction in medmnist.
    assert metrics.medmnist_acc(labels, scores, 0.5) == 0.75
    assert getACC(labels, scores, TASK) == 0.75


def test_undefined_class_is_nan_and_excluded_without_warning():
    labels, scores = make_data()
    labels = with_undefined_classes(labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        per_class = metrics.auc_per_class(labels, scores)
        mean = metrics.mean_auc(labels, scores)
    assert np.isnan(per_class[[2, 5]]).all()
    assert np.isfinite(np.delete(per_class, [2, 5])).all()
    assert mean == pytest.approx(np.delete(per_class, [2, 5]).mean())


def test_mean_auc_is_nan_when_no_class_defined():
    labels = np.zeros((10, 3), dtype=int)
    scores = np.random.default_rng(0).random((10, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(metrics.mean_auc(labels, scores))


@pytest.mark.parametrize("thresholds", [0.5, "per-class"])
def test_threshold_metrics_match_sklearn(thresholds):
    labels, scores = make_data(n=400, c=6, seed=3, round_to=1)
    labels[:, 4] = 0  # no positives: exercises the zero_division conventions
    if thresholds == "per-class":
        thresholds = np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.95])
    pred = (scores >= thresholds).astype(int)
    out = metrics.threshold_metrics(labels, scores, thresholds)

    p, r, f, support = precision_recall_fscore_support(labels, pred, average=None, zero_division=0)
    np.testing.assert_allclose(out["precision"], p)
    np.testing.assert_allclose(out["recall"], r)
    np.testing.assert_allclose(out["f1"], f)
    np.testing.assert_array_equal(out["support"], support)
    for avg in ("macro", "micro"):
        assert out[f"{avg}_f1"] == pytest.approx(f1_score(labels, pred, average=avg, zero_division=0))
        assert out[f"{avg}_precision"] == pytest.approx(
            precision_score(labels, pred, average=avg, zero_division=0)
        )
        assert out[f"{avg}_recall"] == pytest.approx(recall_score(labels, pred, average=avg, zero_division=0))
    assert out["exact_match"] == pytest.approx(accuracy_score(labels, pred))
    assert out["label_accuracy"] == pytest.approx((pred == labels).mean())

    np.testing.assert_array_equal(out["tp"], ((pred == 1) & (labels == 1)).sum(0))
    np.testing.assert_array_equal(out["fp"], ((pred == 1) & (labels == 0)).sum(0))
    np.testing.assert_array_equal(out["fn"], ((pred == 0) & (labels == 1)).sum(0))
    np.testing.assert_array_equal(out["tn"], ((pred == 0) & (labels == 0)).sum(0))
    negatives = (labels == 0).sum(0)
    np.testing.assert_allclose(out["specificity"], out["tn"] / negatives)


def test_threshold_metrics_uses_greater_or_equal_and_zero_division():
    labels = np.array([[1, 1, 1], [0, 1, 1]])
    scores = np.array([[0.5, 0.1, 0.9], [0.2, 0.2, 0.9]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = metrics.threshold_metrics(labels, scores, 0.5)
    assert out["tp"][0] == 1  # score == threshold is a positive prediction
    # Class 1: no predicted positives -> precision 0 (sklearn zero_division=0); no negatives -> NaN specificity.
    assert out["precision"][1] == 0.0 and out["f1"][1] == 0.0
    assert np.isnan(out["specificity"][1]) and np.isnan(out["specificity"][2])
    assert out["specificity"][0] == 1.0


def test_threshold_metrics_full_chestmnist_test_shape():
    n, c = 22_433, 14
    labels, scores = make_data(n=n, c=c, seed=7)
    thresholds = np.linspace(0.2, 0.6, c)
    out = metrics.threshold_metrics(labels, scores, thresholds)
    pred = (scores >= thresholds).astype(int)
    assert out["macro_f1"] == pytest.approx(f1_score(labels, pred, average="macro", zero_division=0))
    assert out["micro_f1"] == pytest.approx(f1_score(labels, pred, average="micro", zero_division=0))
    assert out["exact_match"] == pytest.approx(accuracy_score(labels, pred))
    assert (out["tp"] + out["fp"] + out["fn"] + out["tn"] == n).all()


def test_resampled_auc_matches_sklearn_on_resamples():
    labels, scores = make_data(n=300, c=5, seed=4, round_to=2)  # rounding creates ties
    rng = np.random.default_rng(11)
    idx = rng.integers(0, 300, size=(4, 300))
    counts = np.stack([np.bincount(row, minlength=300) for row in idx], axis=1)
    auc = bootstrap.ResampledAuc(labels.astype(bool), scores)
    for dtype in (np.int64, np.int16):  # int16: the fast path resample_counts feeds it
        got = auc(counts.astype(dtype))
        for b, row in enumerate(idx):
            expected = [roc_auc_score(labels[row, c], scores[row, c]) for c in range(5)]
            np.testing.assert_allclose(got[b], expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(auc.full(), metrics.auc_per_class(labels, scores), rtol=0, atol=1e-12)


def test_resample_counts_are_the_resample_blocks():
    blocks = list(bootstrap.resample_blocks(50, 300, seed=3))
    counts = list(bootstrap.resample_counts(50, 300, seed=3))
    assert [c.shape for c in counts] == [(50, 256), (50, 44)] and counts[0].dtype == np.int16
    for idx, c in zip(blocks, counts):
        np.testing.assert_array_equal(c, np.stack([np.bincount(row, minlength=50) for row in idx], axis=1))


def test_resampled_auc_is_nan_when_a_resample_loses_a_class():
    labels = np.array([[1], [0], [0]], dtype=bool)
    scores = np.array([[0.9], [0.1], [0.2]])
    counts = np.array([[0, 1], [2, 1], [1, 1]])  # first resample has no positive
    got = bootstrap.ResampledAuc(labels, scores)(counts)
    assert np.isnan(got[0, 0]) and got[1, 0] == 1.0


def test_bootstrap_ci_contains_point_auc_and_narrows_with_n():
    small_labels, small_scores = make_data(n=300, c=4, seed=5)
    big_labels, big_scores = make_data(n=6000, c=4, seed=5)
    small = metrics.bootstrap_auc_ci(small_labels, small_scores, n_boot=300)
    big = metrics.bootstrap_auc_ci(big_labels, big_scores, n_boot=300)
    for ci, (labels, scores) in ((small, (small_labels, small_scores)), (big, (big_labels, big_scores))):
        point = metrics.auc_per_class(labels, scores)
        assert ((ci[:, 0] <= point) & (point <= ci[:, 1])).all()
    assert ((big[:, 1] - big[:, 0]) < (small[:, 1] - small[:, 0])).all()

    mean_ci = metrics.mean_auc_ci(big_labels, big_scores, n_boot=300)
    assert mean_ci[0] <= metrics.mean_auc(big_labels, big_scores) <= mean_ci[1]
    # Averaging over classes makes the mean's interval narrower than any single class's.
    assert mean_ci[1] - mean_ci[0] < (big[:, 1] - big[:, 0]).min()


def test_bootstrap_is_seeded_and_handles_undefined_classes():
    labels, scores = make_data(n=200, c=6, seed=6)
    labels = with_undefined_classes(labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = metrics.bootstrap_auc_ci(labels, scores, n_boot=100, seed=3)
        mean_ci = metrics.mean_auc_ci(labels, scores, n_boot=100, seed=3)
    b = metrics.bootstrap_auc_ci(labels, scores, n_boot=100, seed=3)
    c = metrics.bootstrap_auc_ci(labels, scores, n_boot=100, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c, equal_nan=True)
    assert np.isnan(a[[2, 5]]).all()
    assert np.isfinite(np.delete(a, [2, 5], axis=0)).all()
    assert np.isfinite(mean_ci).all()


def test_bootstrap_skips_resamples_where_a_rare_class_vanishes():
    # One positive among 40: ~36% of resamples miss it and must be skipped, not crash or poison the CI.
    rng = np.random.default_rng(8)
    labels = (rng.random((40, 2)) < 0.5).astype(int)
    labels[:, 0] = 0
    labels[0, 0] = 1
    scores = rng.random((40, 2))
    scores[0, 0] = 0.99
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ci = metrics.bootstrap_auc_ci(labels, scores, n_boot=200)
        mean_ci = metrics.mean_auc_ci(labels, scores, n_boot=200)
    assert np.isfinite(ci).all() and ci[0, 1] == 1.0
    assert np.isfinite(mean_ci).all() and mean_ci[0] <= metrics.mean_auc(labels, scores) <= mean_ci[1]


def test_summarize_is_json_ready_and_reports_undefined_classes():
    labels, scores = make_data(n=300, c=6, seed=9)
    labels = with_undefined_classes(labels)
    names = [f"finding_{i}" for i in range(6)]
    thresholds = np.full(6, 0.4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = metrics.summarize(labels, scores, thresholds, names, n_boot=50)
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text) == summary

    assert summary["n_samples"] == 300
    assert summary["auc_undefined_classes"] == [
        {"name": "finding_2", "reason": "no positives"},
        {"name": "finding_5", "reason": "no negatives"},
    ]
    assert summary["auc_defined_classes"] == ["finding_0", "finding_1", "finding_3", "finding_4"]
    assert summary["auc"] == pytest.approx(metrics.mean_auc(labels, scores))
    assert summary["acc"] == pytest.approx(metrics.medmnist_acc(labels, scores))
    assert summary["per_class"]["finding_2"]["auc"] is None
    assert summary["per_class"]["finding_2"]["auc_ci_low"] is None
    assert summary["per_class"]["finding_5"]["specificity"] is None
    assert summary["auc_ci"][0] <= summary["auc"] <= summary["auc_ci"][1]

    tm = metrics.threshold_metrics(labels, scores, thresholds)
    assert summary["macro_f1"] == pytest.approx(tm["macro_f1"])
    assert summary["label_accuracy_tuned"] == pytest.approx(tm["label_accuracy"])
    assert summary["exact_match_accuracy"] == pytest.approx(tm["exact_match"])
    row = summary["per_class"]["finding_0"]
    assert set(row) == {
        "auc", "auc_ci_low", "auc_ci_high", "threshold", "precision", "recall",
        "specificity", "f1", "support", "tp", "fp", "fn", "tn",
        "sens_at_spec90", "sens_at_spec95", "spec_at_sens90", "spec_at_sens95", "ece", "brier",
    }
    assert row["sens_at_spec95"] == pytest.approx(metrics.sensitivity_at_specificity(labels, scores, 0.95)["sensitivity"][0])
    assert row["spec_at_sens90"] == pytest.approx(metrics.specificity_at_sensitivity(labels, scores, 0.9)["specificity"][0])
    cal = metrics.calibration(labels, scores)
    assert row["ece"] == pytest.approx(cal["ece"][0]) and row["brier"] == pytest.approx(cal["brier"][0])
    assert (summary["ece"], summary["ece_macro"], summary["brier"]) == pytest.approx(
        (cal["pooled"]["ece"], cal["ece_macro"], cal["brier_macro"]))
    for undefined in ("finding_2", "finding_5"):
        assert summary["per_class"][undefined]["sens_at_spec90"] is None and summary["per_class"][undefined]["ece"] is None
    assert isinstance(row["tp"], int) and row["threshold"] == 0.4
    assert row["tp"] == int(tm["tp"][0])


def test_summarize_rejects_wrong_number_of_names():
    labels, scores = make_data(n=50, c=3)
    with pytest.raises(ValueError, match="3 score columns"):
        metrics.summarize(labels, scores, 0.5, ["a", "b"], n_boot=10)


def test_to_jsonable_converts_numpy_and_nan():
    obj = {"a": np.float32(np.nan), "b": np.arange(3), "c": (np.bool_(True), np.inf), 4: [np.int64(2)]}
    assert to_jsonable(obj) == {"a": None, "b": [0, 1, 2], "c": [True, None], "4": [2]}


def test_input_validation():
    with pytest.raises(ValueError, match="shape"):
        metrics.mean_auc(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        metrics.mean_auc(np.full((5, 2), 2), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="NaN"):
        metrics.threshold_metrics(np.zeros((2, 1)), np.array([[np.nan], [0.1]]), 0.5)


def test_metrics_module_does_not_import_torch():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, core.metrics; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_acc_ci_brackets_medmnist_acc_and_is_seeded():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 14)) < 0.2).astype(np.uint8)
    scores = np.clip(labels * 0.4 + rng.random((300, 14)) * 0.5, 0, 1)
    lo, hi = metrics.medmnist_acc_ci(labels, scores)
    assert lo < metrics.medmnist_acc(labels, scores) < hi and hi - lo < 0.05
    assert np.array_equal(metrics.medmnist_acc_ci(labels, scores), [lo, hi])
    assert not np.array_equal(metrics.medmnist_acc_ci(labels, scores, seed=1), [lo, hi])
    with pytest.raises(ValueError, match="n_boot"):
        metrics.medmnist_acc_ci(labels, scores, n_boot=0)


def test_operating_points_by_hand():
    neg = [.1, .2, .3, .4, .5, .6, .7, .8, .9, .95]
    pos = [.35, .65, .85, .97]
    labels = np.array([0] * 10 + [1] * 4)[:, None]
    scores = np.array(neg + pos)[:, None]
    at = metrics.sensitivity_at_specificity(labels, scores, 0.9)
    # at most 1 false positive of 10: only .97 can be caught (.95 costs the one allowed FP and adds nothing)
    assert (at["sensitivity"][0], at["specificity"][0], at["threshold"][0]) == (0.25, 1.0, 0.97)
    at = metrics.sensitivity_at_specificity(labels, scores, 0.8)  # 2 FPs (.9, .95) buy .85 as well
    assert (at["sensitivity"][0], at["specificity"][0], at["threshold"][0]) == (0.5, 0.8, 0.85)
    for sens, spec in ((0.5, 0.8), (0.75, 0.6), (1.0, 0.3)):
        got = metrics.specificity_at_sensitivity(labels, scores, sens)
        assert got["specificity"][0] == pytest.approx(spec) and got["n_pos"][0] == 4
    with pytest.raises(ValueError, match="specificity level"):
        metrics.sensitivity_at_specificity(labels, scores, 90)


def test_operating_points_match_a_brute_force_search_and_skip_undefined_classes():
    labels, scores = make_data(n=200, c=6, seed=8, round_to=2)  # rounding creates ties
    labels = with_undefined_classes(labels)
    for level in (0.9, 0.95):
        got_sens = metrics.sensitivity_at_specificity(labels, scores, level)
        got_spec = metrics.specificity_at_sensitivity(labels, scores, level)
        for c in range(6):
            if c in (2, 5):
                assert all(np.isnan(got_sens[k][c]) for k in ("sensitivity", "specificity", "threshold"))
                continue
            ops = [metrics.threshold_metrics(labels[:, [c]], scores[:, [c]], t)
                   for t in [*np.unique(scores[:, c]), np.inf]]
            sens = [(o["recall"][0], o["specificity"][0]) for o in ops]
            assert got_sens["sensitivity"][c] == pytest.approx(max(s for s, p in sens if p >= level - 1e-9))
            assert got_spec["specificity"][c] == pytest.approx(max(p for s, p in sens if s >= level - 1e-9))


def test_summarize_intervals_are_95_percent_percentiles_of_explicit_resamples():
    labels, scores = make_data(n=150, c=3, seed=21)
    summary = metrics.summarize(labels, scores, 0.5, ["a", "b", "c"], n_boot=80, seed=4)
    boot = np.array([[roc_auc_score(labels[row, c], scores[row, c]) for c in range(3)]
                     for block in bootstrap.resample_blocks(150, 80, 4) for row in block])
    assert summary["ci_level"] == 0.95 and summary["n_boot"] == 80
    np.testing.assert_allclose(summary["auc_ci"], np.percentile(boot.mean(axis=1), [2.5, 97.5]), atol=1e-12)
    for c, name in enumerate("abc"):
        row = summary["per_class"][name]
        np.testing.assert_allclose((row["auc_ci_low"], row["auc_ci_high"]), np.percentile(boot[:, c], [2.5, 97.5]),
                                   atol=1e-12)
        pred = scores[:, c] >= 0.5
        assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (
            int((pred & (labels[:, c] == 1)).sum()), int((pred & (labels[:, c] == 0)).sum()),
            int((~pred & (labels[:, c] == 1)).sum()), int((~pred & (labels[:, c] == 0)).sum()))



def test_medmnist_getauc_returns_nan_with_a_warning_where_a_class_is_undefined():
    # What mean_auc's docstring says of medmnist with the pinned scikit-learn: NaN, not a crash.
    labels, scores = make_data(n=60, c=3, seed=2)
    labels[:, 1] = 0
    with pytest.warns(Warning):
        assert np.isnan(getAUC(labels, scores, TASK))
    assert np.isfinite(metrics.mean_auc(labels, scores))


def test_mean_auc_ci_skips_resamples_that_lose_a_class_as_brute_force_does():
    # Two positives of class 0 among 60: many resamples lose them; those are skipped, not averaged
    # over the classes left.
    labels, scores = make_data(n=60, c=3, seed=23)
    labels[:, 0] = 0
    labels[[4, 30], 0] = 1
    means = []
    for block in bootstrap.resample_blocks(60, 200, 5):
        for row in block:
            y = labels[row]
            if ((y.sum(axis=0) == 0) | (y.sum(axis=0) == 60)).any():
                continue
            means.append(np.mean([roc_auc_score(y[:, c], scores[row, c]) for c in range(3)]))
    assert len(means) < 200
    np.testing.assert_allclose(metrics.mean_auc_ci(labels, scores, n_boot=200, seed=5),
                               np.percentile(means, [2.5, 97.5]), atol=1e-12)


def test_resamples_are_uniform_draws_of_every_image():
    # The documented resamples: rows of numpy's default_rng(seed).integers(0, n), blocks of 256.
    rng = np.random.default_rng(7)
    want = [rng.integers(0, 5, size=(b, 5)) for b in (256, 44)]
    blocks = list(bootstrap.resample_blocks(5, 300, seed=7))
    for got, w in zip(blocks, want):
        np.testing.assert_array_equal(got, w)
    assert set(np.concatenate(blocks).ravel()) == set(range(5))


def test_acc_ci_is_the_percentile_of_strict_medmnist_acc_over_resamples():
    rng = np.random.default_rng(3)
    labels = (rng.random((80, 4)) < 0.3).astype(int)
    scores = rng.choice([0.25, 0.5, 0.75], size=(80, 4))  # many scores exactly 0.5: predicted negative
    accs = [metrics.medmnist_acc(labels[row], scores[row]) for block in bootstrap.resample_blocks(80, 150, 2)
            for row in block]
    np.testing.assert_allclose(metrics.medmnist_acc_ci(labels, scores, n_boot=150, seed=2),
                               np.percentile(accs, [2.5, 97.5]), atol=1e-12)
