"""core.metrics.paired (through core.metrics): paired AUC differences against hand-made and brute-force cases."""
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.files import to_jsonable
from core import metrics
from core.metrics.bootstrap import resample_blocks


def correlated(n=300, c=3, seed=0):
    """Labels with every class defined and scores that separate them imperfectly."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, c)) < 0.3).astype(int)
    labels[0], labels[1] = 1, 0
    scores = 1 / (1 + np.exp(-(rng.normal(size=(n, c)) + 1.0 * labels)))
    return labels, scores


def sk_mean_auc(labels, scores, classes):
    return np.mean([roc_auc_score(labels[:, c], scores[:, c]) for c in classes])


def test_a_perfect_scorer_beats_a_random_one():
    labels, _ = correlated(seed=1)
    rng = np.random.default_rng(2)
    perfect = labels * 0.5 + rng.uniform(0, 0.4, labels.shape)  # every positive above every negative
    random = rng.uniform(0, 1, labels.shape)
    r = metrics.paired_auc_difference(labels, perfect, random, n_boot=500, seed=0)
    assert r["auc_a"] == 1.0
    assert r["delta"] == pytest.approx(1.0 - sk_mean_auc(labels, random, range(3)), abs=1e-12)
    assert 0 < r["ci"][0] <= r["delta"] <= r["ci"][1]
    # a wins on every resample, so the p-value is the smallest the test can give
    assert r["p_value"] == pytest.approx(2 / 501)
    assert metrics.verdict(r, "perfect", "random").startswith(f"perfect better than random by {r['delta']:.3f} [")
    swapped = metrics.paired_auc_difference(labels, random, perfect, n_boot=500, seed=0)
    assert swapped["delta"] == -r["delta"] and swapped["ci"] == pytest.approx((-r["ci"][1], -r["ci"][0]))
    assert metrics.verdict(swapped, "random", "perfect").startswith("perfect better than random by")


def test_identical_runs_differ_by_exactly_nothing():
    labels, scores = correlated(seed=3)
    r = metrics.paired_auc_difference(labels, scores, scores.copy(), n_boot=300)
    assert r["delta"] == 0.0 and r["ci"] == (0.0, 0.0) and r["p_value"] == 1.0
    assert all(pc["delta"] == 0.0 and pc["ci_low"] == pc["ci_high"] == 0.0 for pc in r["per_class"])
    assert metrics.verdict(r, "64 px", "28 px") == "not distinguishable (delta 0.000 [0.000, 0.000])"


def test_resamples_are_shared_by_both_runs_as_brute_force_says():
    labels, a = correlated(n=120, c=2, seed=4)
    b = np.clip(a + np.random.default_rng(5).normal(0, 0.15, a.shape), 0, 1)
    r = metrics.paired_auc_difference(labels, a, b, n_boot=60, seed=9, class_names=["x", "y"])
    deltas = []
    for block in resample_blocks(len(labels), 60, 9):
        for row in block:
            y = labels[row]
            if (y.sum(axis=0) == 0).any() or (y.sum(axis=0) == len(row)).any():
                continue
            deltas.append(sk_mean_auc(y, a[row], range(2)) - sk_mean_auc(y, b[row], range(2)))
    assert r["n_boot_used"] == len(deltas)
    np.testing.assert_allclose(r["ci"], np.percentile(deltas, [2.5, 97.5]), atol=1e-12)
    tail = min(sum(d <= 0 for d in deltas), sum(d >= 0 for d in deltas))
    assert r["p_value"] == pytest.approx(min(1, 2 * (tail + 1) / (len(deltas) + 1)))
    assert [pc["class"] for pc in r["per_class"]] == ["x", "y"] and r["classes_used"] == ["x", "y"]
    # Pairing is the point: the difference's interval is far narrower than one run's own interval.
    own = metrics.mean_auc_ci(labels, a, n_boot=60, seed=9)
    assert r["ci"][1] - r["ci"][0] < 0.7 * (own[1] - own[0])


def test_hand_computed_single_class():
    labels = np.array([[1], [0], [1], [0]])
    a = np.array([[0.9], [0.1], [0.8], [0.2]])  # AUC 1
    b = np.array([[0.1], [0.9], [0.8], [0.2]])  # 1 of the 4 positive-negative pairs right: 0.25
    r = metrics.paired_auc_difference(labels, a, b, n_boot=200)
    assert (r["auc_a"], r["auc_b"], r["delta"]) == (1.0, 0.25, 0.75)
    assert r["per_class"][0] | {"ci_low": 0, "ci_high": 0, "p_value": 0} == {
        "class": "0", "n_pos": 2, "auc_a": 1.0, "auc_b": 0.25, "delta": 0.75, "ci_low": 0, "ci_high": 0, "p_value": 0}
    assert r["n_images"] == 4 and r["method"] == "single runs"


def test_a_class_without_positives_is_left_out():
    labels, a = correlated(seed=6)
    b = np.random.default_rng(7).uniform(0, 1, a.shape)
    labels[:, 1] = 0
    r = metrics.paired_auc_difference(labels, a, b, n_boot=200, class_names=["p", "q", "r"])
    assert r["classes_used"] == ["p", "r"] and r["classes_excluded"] == ["q"]
    assert r["delta"] == pytest.approx(sk_mean_auc(labels, a, [0, 2]) - sk_mean_auc(labels, b, [0, 2]), abs=1e-12)
    q = r["per_class"][1]
    assert q["n_pos"] == 0 and all(math.isnan(q[k]) for k in ("delta", "ci_low", "ci_high", "p_value", "auc_a"))
    assert to_jsonable(r)["per_class"][1]["delta"] is None


def test_nothing_to_compare_says_so():
    labels = np.zeros((5, 2), dtype=int)
    r = metrics.paired_auc_difference(labels, np.full((5, 2), 0.3), np.full((5, 2), 0.4), n_boot=20)
    assert math.isnan(r["delta"]) and r["classes_used"] == []
    assert "cannot be compared" in metrics.verdict(r, "a", "b")


def test_mismatched_shapes_are_refused():
    labels, a = correlated(n=50)
    with pytest.raises(metrics.PairingError, match="same test images"):
        metrics.paired_auc_difference(labels, a, a[:-1])
    with pytest.raises(ValueError, match="shape"):
        metrics.paired_auc_difference(labels[:, :2], a, a)
    with pytest.raises(metrics.PairingError, match="run 2"):
        metrics.seed_group_difference(labels, [a, a[:, :2]], [a])


def test_check_same_images():
    labels, _ = correlated(n=40)
    metrics.check_same_images(labels, labels.copy(), "/data/nih667", "/data/nih667")
    other = labels.copy()
    other[[3, 7]] = 1 - other[[3, 7]]
    with pytest.raises(metrics.PairingError, match="different test labels on 2 of 40 images"):
        metrics.check_same_images(labels, other, names=("res-cnn 28 px", "res-cnn 64 px"))
    with pytest.raises(metrics.PairingError, match="40 test images .* and B on 39"):
        metrics.check_same_images(labels, labels[:39])
    with pytest.raises(metrics.PairingError, match="nih1000 and B on test images from .*nih667"):
        metrics.check_same_images(labels, labels, "/data/nih1000", "/data/nih667")


def test_seed_groups_average_aucs_or_scores_and_say_which():
    labels, a1 = correlated(n=200, seed=10)
    rng = np.random.default_rng(11)
    a2 = np.clip(a1 + rng.normal(0, 0.1, a1.shape), 0, 1)
    b1, b2 = rng.uniform(0, 1, a1.shape), np.clip(a1 + rng.normal(0, 0.4, a1.shape), 0, 1)
    r = metrics.seed_group_difference(labels, [a1, a2], [b1, b2], n_boot=200)
    want = np.mean([sk_mean_auc(labels, s, range(3)) for s in (a1, a2)]) - \
        np.mean([sk_mean_auc(labels, s, range(3)) for s in (b1, b2)])
    assert r["delta"] == pytest.approx(want, abs=1e-12)
    assert (r["method"], r["n_runs_a"], r["n_runs_b"]) == ("mean-auc", 2, 2) and "mean of its runs' AUCs" in r["method_text"]
    # with equally many runs: the mean of the seed-by-seed paired differences
    pairs = [metrics.paired_auc_difference(labels, x, y, n_boot=200) for x, y in ((a1, b1), (a2, b2))]
    assert r["delta"] == pytest.approx(np.mean([p["delta"] for p in pairs]), abs=1e-12)
    ens = metrics.seed_group_difference(labels, [a1, a2], [b1, b2], n_boot=200, method="mean-scores")
    assert ens["delta"] == pytest.approx(sk_mean_auc(labels, (a1 + a2) / 2, range(3))
                                         - sk_mean_auc(labels, (b1 + b2) / 2, range(3)), abs=1e-12)
    assert "averaged per image" in ens["method_text"]
    one = metrics.seed_group_difference(labels, [a1], [b1], n_boot=200)
    assert one["delta"] == pairs[0]["delta"] and one["ci"] == pairs[0]["ci"]
    with pytest.raises(ValueError, match="mean-auc"):
        metrics.seed_group_difference(labels, [a1], [b1], method="vote")


@pytest.mark.parametrize("result, text", [
    ({"delta": 0.021, "ci": (0.004, 0.038)}, "64 px better than 28 px by 0.021 [0.004, 0.038]"),
    ({"delta": -0.021, "ci": (-0.038, -0.004)}, "28 px better than 64 px by 0.021 [0.004, 0.038]"),
    ({"delta": 0.003, "ci": (-0.010, 0.016)}, "not distinguishable (delta 0.003 [-0.010, 0.016])"),
    ({"delta": None, "ci": (None, None)}, "64 px and 28 px cannot be compared: no class has both positives and negatives"),
])
def test_verdict_wording(result, text):
    assert metrics.verdict(result, "64 px", "28 px") == text
