"""core.metrics.reliability (through core.metrics) on hand-made cases and against scikit-learn."""
import math

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from core import metrics


def calibrated_pairs():
    """Two bins, each perfectly calibrated: probability 0.25 with 1 of 4 positive, 0.75 with 3 of 4."""
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    scores = np.array([0.25] * 4 + [0.75] * 4)
    return labels, scores


def test_perfectly_calibrated_bins_have_zero_ece_and_the_hand_brier():
    labels, scores = calibrated_pairs()
    assert metrics.expected_calibration_error(labels, scores) == 0.0
    # each bin: one pair off by 0.75 and three by 0.25 -> (0.5625 + 3 * 0.0625) / 4 = 0.1875
    assert metrics.brier_score(labels, scores) == pytest.approx(0.1875, abs=1e-15)


def test_ece_by_hand():
    # gaps |.2 - .5| and |.8 - .5|, half the pairs each
    assert metrics.expected_calibration_error(np.array([0, 1, 1, 0]), np.array([.2, .2, .8, .8]), n_bins=2) == \
        pytest.approx(0.3, abs=1e-15)
    # one bin of 3 pairs with gap 0.5 and one of 1 pair with gap 0.1: (3 * 0.5 + 0.1) / 4
    assert metrics.expected_calibration_error(np.array([0, 0, 0, 1]), np.array([.5, .5, .5, .9]), n_bins=10) == \
        pytest.approx(0.4, abs=1e-15)


def test_reliability_bins_by_hand():
    labels = np.array([0, 1, 1, 0, 1])
    scores = np.array([0.0, 0.05, 0.55, 0.6, 1.0])  # 1.0 falls in the last (closed) bin
    r = metrics.reliability_bins(labels, scores, n_bins=4)
    np.testing.assert_allclose(r["edges"], [0, 0.25, 0.5, 0.75, 1])
    assert r["count"].tolist() == [2, 0, 2, 1]
    np.testing.assert_allclose(r["mean_score"], [0.025, np.nan, 0.575, 1.0])
    np.testing.assert_allclose(r["frac_pos"], [0.5, np.nan, 0.5, 1.0])


def test_per_class_and_pooled_leave_undefined_classes_out():
    rng = np.random.default_rng(0)
    labels = (rng.random((400, 4)) < 0.3).astype(int)
    scores = np.clip(0.3 + 0.3 * labels + rng.normal(0, 0.2, labels.shape), 0, 1)
    labels[:, 2] = 0  # no positives: undefined
    cal = metrics.calibration(labels, scores)
    used = [0, 1, 3]
    assert cal["defined"].tolist() == [True, True, False, True] and cal["n_pos"][2] == 0
    assert math.isnan(cal["ece"][2]) and math.isnan(cal["brier"][2]) and cal["count"][2].sum() == 0
    for c in used:
        assert cal["ece"][c] == pytest.approx(metrics.expected_calibration_error(labels[:, c], scores[:, c]))
        assert cal["brier"][c] == pytest.approx(brier_score_loss(labels[:, c], scores[:, c]))
        assert cal["count"][c].sum() == 400
    assert cal["ece_macro"] == pytest.approx(np.mean(cal["ece"][used]))
    assert cal["brier_macro"] == pytest.approx(np.mean(cal["brier"][used]))
    pooled = metrics.reliability_bins(labels[:, used], scores[:, used])
    assert cal["pooled"]["count"].tolist() == pooled["count"].tolist() and cal["pooled"]["count"].sum() == 1200
    np.testing.assert_allclose(cal["pooled"]["frac_pos"], pooled["frac_pos"])
    assert cal["pooled"]["ece"] == pytest.approx(metrics.expected_calibration_error(labels[:, used], scores[:, used]))
    # a miscalibrated copy (every probability halved) is worse on both counts
    worse = metrics.calibration(labels, scores / 2)
    assert worse["ece_macro"] > cal["ece_macro"] and worse["brier_macro"] > cal["brier_macro"]


def test_logits_are_refused():
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        metrics.calibration(np.array([[0], [1]]), np.array([[-2.0], [3.0]]))
