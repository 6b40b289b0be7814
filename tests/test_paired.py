"""core.metrics.paired (through core.metrics): paired AUC differences against hand-made cases, brute-force
references written here, and small seeded simulations of recipes, seeds and rare classes."""
import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from core.files import to_jsonable
from core import metrics
from core.metrics.bootstrap import resample_blocks
from tests import seed_sim


def correlated(n=300, c=3, seed=0):
    """Labels with every class defined and scores that separate them imperfectly."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, c)) < 0.3).astype(int)
    labels[0], labels[1] = 1, 0
    scores = 1 / (1 + np.exp(-(rng.normal(size=(n, c)) + 1.0 * labels)))
    return labels, scores


def sk_mean_auc(labels, scores, classes):
    return np.mean([roc_auc_score(labels[:, c], scores[:, c]) for c in classes])


def brute_force(labels, group_a, group_b, n_boot, seed, alpha, used):
    """The two-level interval from its definition: sklearn AUCs of every run on every explicit resample;
    per class and for the mean over `used`, image variance over the resamples where the class (all used
    classes) kept positives and negatives, seed variance over runs, Welch-Satterthwaite t."""
    runs = list(group_a) + list(group_b)
    k_a, k_b = len(group_a), len(group_b)

    def aucs(rows):
        y = labels[rows]
        return np.array([[roc_auc_score(y[:, c], s[rows, c]) if 0 < y[:, c].sum() < len(rows) else np.nan
                          for c in range(labels.shape[1])] for s in runs])

    boot = np.array([aucs(row) for block in resample_blocks(len(labels), n_boot, seed) for row in block])
    full = aucs(np.arange(len(labels)))  # (runs, C)
    boot_delta = boot[:, :k_a].mean(axis=1) - boot[:, k_a:].mean(axis=1)  # (n_boot, C)

    def interval(delta, image_deltas, per_run):
        image_var = np.var(image_deltas[np.isfinite(image_deltas)], ddof=1)
        va = np.var(per_run[:k_a], ddof=1) if k_a > 1 else np.nan
        vb = np.var(per_run[k_a:], ddof=1) if k_b > 1 else np.nan
        if k_a > 1 and k_b > 1:
            var = image_var + va / k_a + vb / k_b
            df = var ** 2 / ((va / k_a) ** 2 / (k_a - 1) + (vb / k_b) ** 2 / (k_b - 1))
        elif k_a > 1 or k_b > 1:
            v, k = (va, k_a) if k_a > 1 else (vb, k_b)
            var = image_var + v * (1 / k_a + 1 / k_b)
            df = var ** 2 / (v * (1 / k_a + 1 / k_b)) ** 2 * (k - 1)
        else:
            var, df = image_var, np.inf
        se = math.sqrt(var)
        q = stats.t.ppf(1 - alpha / 2, df)
        return (delta - q * se, delta + q * se), 2 * stats.t.sf(abs(delta) / se, df)

    per_class = {c: interval(full[:k_a, c].mean() - full[k_a:, c].mean(), boot_delta[:, c], full[:, c])
                 for c in np.flatnonzero(used)}
    mean_deltas = boot_delta[:, used].mean(axis=1)
    run_means = full[:, used].mean(axis=1)
    overall = interval(run_means[:k_a].mean() - run_means[k_a:].mean(), mean_deltas, run_means)
    return per_class, overall, int(np.isfinite(mean_deltas).sum())


def check_against_brute_force(r, ref):
    per_class, (ci, p), used_boot = ref
    assert r["n_boot_used"] == used_boot
    np.testing.assert_allclose(r["ci"], ci, rtol=0, atol=1e-12)
    assert r["p_value"] == pytest.approx(p, rel=1e-9, abs=1e-15)
    for c, pc in enumerate(r["per_class"]):
        if c in per_class:
            (lo, hi), pp = per_class[c]
            assert pc["status"] == "compared"
            np.testing.assert_allclose((pc["ci_low"], pc["ci_high"]), (lo, hi), rtol=0, atol=1e-12)
            assert pc["p_value"] == pytest.approx(pp, rel=1e-9, abs=1e-15)
        else:
            assert pc["status"] == "too few positives" and math.isnan(pc["ci_low"]) and math.isnan(pc["p_value"])


def rare_labels(n=90, seed=4):
    """Three classes: plenty of positives, exactly 5 (some resamples lose them all), and 2 (left out)."""
    labels, a = correlated(n=n, c=3, seed=seed)
    labels[:, 1] = 0
    labels[[5, 17, 33, 60, 71], 1] = 1
    labels[:, 2] = 0
    labels[[8, 40], 2] = 1
    return labels, a


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_single_runs_match_the_brute_force_reference(alpha):
    labels, a = rare_labels()
    b = np.clip(a + np.random.default_rng(5).normal(0, 0.15, a.shape), 0, 1)
    r = metrics.paired_auc_difference(labels, a, b, n_boot=300, seed=9, alpha=alpha, class_names=["x", "y", "z"])
    ref = brute_force(labels, [a], [b], 300, 9, alpha, np.array([True, True, False]))
    check_against_brute_force(r, ref)
    assert r["n_boot_used"] < 300  # the 5-positive class is lost in some resamples, which are skipped
    assert r["ci_level"] == 1 - alpha and r["scope"] == "runs" and r["df"] == math.inf
    assert r["classes_used"] == ["x", "y"] and r["classes_excluded"] == ["z"]
    assert r["excluded"] == [{"class": "z", "n_pos": 2, "n_neg": 88, "reason": "too few positives: 2 < 5"}]
    # Pairing is the point: the difference's interval is far narrower than one run's own interval.
    own = metrics.mean_auc_ci(labels, a, n_boot=300, seed=9, alpha=alpha)
    assert r["ci"][1] - r["ci"][0] < 0.7 * (own[1] - own[0])


@pytest.mark.parametrize("k_a, k_b", [(3, 4), (1, 3)])
def test_seed_groups_match_the_brute_force_reference(k_a, k_b):
    labels, a = rare_labels(n=80, seed=6)
    rng = np.random.default_rng(7)
    group_a = [np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1) for _ in range(k_a)]
    # uneven seeds: the mean over seeds differs from their median
    group_b = [np.clip(a + rng.normal(0, s, a.shape), 0, 1) for s in (0.05, 0.3, 0.6, 0.1)[:k_b]]
    r = metrics.seed_group_difference(labels, group_a, group_b, n_boot=120, seed=3)
    check_against_brute_force(r, brute_force(labels, group_a, group_b, 120, 3, 0.05, np.array([True, True, False])))
    assert r["scope"] == "recipes" and math.isfinite(r["df"]) and (r["n_runs_a"], r["n_runs_b"]) == (k_a, k_b)
    for key, group in (("auc_a", group_a), ("auc_b", group_b)):  # each group's AUC is its seeds' mean
        assert r[key] == pytest.approx(np.mean([sk_mean_auc(labels, s, [0, 1]) for s in group]), abs=1e-12)


def test_a_perfect_scorer_beats_a_random_one_with_a_p_below_any_resampling_floor():
    labels, _ = correlated(seed=1)
    rng = np.random.default_rng(2)
    perfect = labels * 0.5 + rng.uniform(0, 0.4, labels.shape)  # every positive above every negative
    random = rng.uniform(0, 1, labels.shape)
    r = metrics.paired_auc_difference(labels, perfect, random, n_boot=500, seed=0)
    assert r["auc_a"] == 1.0
    assert r["delta"] == pytest.approx(1.0 - sk_mean_auc(labels, random, range(3)), abs=1e-12)
    assert 0 < r["ci"][0] <= r["delta"] <= r["ci"][1]
    assert 0 < r["p_value"] < 1e-6  # 500 resamples could not say below 2 / 501
    assert metrics.verdict(r, "perfect", "random").startswith(f"perfect better than random by {r['delta']:.3f} [")
    swapped = metrics.paired_auc_difference(labels, random, perfect, n_boot=500, seed=0)
    assert swapped["delta"] == -r["delta"] and swapped["ci"] == pytest.approx((-r["ci"][1], -r["ci"][0]))
    assert metrics.verdict(swapped, "random", "perfect").startswith("perfect better than random by")


def test_identical_runs_differ_by_exactly_nothing():
    labels, scores = correlated(seed=3)
    r = metrics.paired_auc_difference(labels, scores, scores.copy(), n_boot=300)
    assert r["delta"] == 0.0 and r["ci"] == (0.0, 0.0) and r["p_value"] == 1.0
    assert all(pc["delta"] == 0.0 and pc["ci_low"] == pc["ci_high"] == 0.0 for pc in r["per_class"])
    assert metrics.verdict(r, "64 px", "28 px") == \
        "not distinguishable (delta 0.000 [0.000, 0.000]) (these two runs, not their recipes)"


def test_hand_computed_single_class():
    labels = np.array([[1], [0], [1], [0]])
    a = np.array([[0.9], [0.1], [0.8], [0.2]])  # AUC 1
    b = np.array([[0.1], [0.9], [0.8], [0.2]])  # 1 of the 4 positive-negative pairs right: 0.25
    r = metrics.paired_auc_difference(labels, a, b, n_boot=200, min_positives=2)
    assert (r["auc_a"], r["auc_b"], r["delta"]) == (1.0, 0.25, 0.75)
    assert {k: r["per_class"][0][k] for k in ("class", "n_pos", "auc_a", "auc_b", "delta", "status")} == {
        "class": "0", "n_pos": 2, "auc_a": 1.0, "auc_b": 0.25, "delta": 0.75, "status": "compared"}
    assert r["n_images"] == 4 and r["method"] == "single runs"
    rare = metrics.paired_auc_difference(labels, a, b, n_boot=200)  # 2 positives < the default 5
    assert rare["classes_used"] == [] and rare["per_class"][0]["status"] == "too few positives"
    assert "no class has 5 or more test positives" in metrics.verdict(rare, "a", "b")


def test_a_class_without_positives_is_left_out_and_says_why():
    labels, a = correlated(seed=6)
    b = np.random.default_rng(7).uniform(0, 1, a.shape)
    labels[:, 1] = 0
    r = metrics.paired_auc_difference(labels, a, b, n_boot=200, class_names=["p", "q", "r"])
    assert r["classes_used"] == ["p", "r"] and r["classes_excluded"] == ["q"]
    assert r["excluded"][0]["reason"] == "too few positives: 0 < 5"
    assert r["delta"] == pytest.approx(sk_mean_auc(labels, a, [0, 2]) - sk_mean_auc(labels, b, [0, 2]), abs=1e-12)
    q = r["per_class"][1]
    assert q["n_pos"] == 0 and all(math.isnan(q[k]) for k in ("delta", "ci_low", "ci_high", "p_value", "auc_a"))
    assert to_jsonable(r)["per_class"][1]["delta"] is None
    with pytest.raises(ValueError, match="min_positives"):
        metrics.paired_auc_difference(labels, a, b, min_positives=0)


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
    assert "other seeds" in r["method_text"] and r["scope"] == "recipes"
    # with equally many runs: the mean of the seed-by-seed paired differences
    pairs = [metrics.paired_auc_difference(labels, x, y, n_boot=200) for x, y in ((a1, b1), (a2, b2))]
    assert r["delta"] == pytest.approx(np.mean([p["delta"] for p in pairs]), abs=1e-12)
    ens = metrics.seed_group_difference(labels, [a1, a2], [b1, b2], n_boot=200, method="mean-scores")
    assert ens["delta"] == pytest.approx(sk_mean_auc(labels, (a1 + a2) / 2, range(3))
                                         - sk_mean_auc(labels, (b1 + b2) / 2, range(3)), abs=1e-12)
    assert "averaged per image" in ens["method_text"] and ens["scope"] == "runs"
    one = metrics.seed_group_difference(labels, [a1], [b1], n_boot=200)
    assert one["delta"] == pairs[0]["delta"] and one["ci"] == pairs[0]["ci"] and one["scope"] == "runs"
    assert "these runs only" in one["method_text"]
    with pytest.raises(ValueError, match="mean-auc"):
        metrics.seed_group_difference(labels, [a1], [b1], method="vote")


@pytest.mark.parametrize("result, kwargs, text", [
    ({"delta": 0.021, "ci": (0.004, 0.038), "p_value": 0.01}, {}, "64 px better than 28 px by 0.021 [0.004, 0.038]"),
    ({"delta": -0.021, "ci": (-0.038, -0.004), "p_value": 0.01}, {}, "28 px better than 64 px by 0.021 [0.004, 0.038]"),
    ({"delta": 0.003, "ci": (-0.010, 0.016), "p_value": 0.6}, {}, "not distinguishable (delta 0.003 [-0.010, 0.016])"),
    # the family's adjusted p decides, not the raw one
    ({"delta": 0.021, "ci": (0.004, 0.038), "p_value": 0.01}, {"p_adjusted": 0.06},
     "not distinguishable (delta 0.021 [0.004, 0.038])"),
    ({"delta": 0.021, "ci": (0.004, 0.038), "p_value": 0.01, "scope": "runs"}, {},
     "64 px better than 28 px by 0.021 [0.004, 0.038] (these two runs, not their recipes)"),
    ({"delta": None, "ci": (None, None)}, {},
     "64 px and 28 px cannot be compared: no class has 1 or more test positives and negatives"),
])
def test_verdict_wording(result, kwargs, text):
    assert metrics.verdict(result, "64 px", "28 px", **kwargs) == text


def _per_seed_means(labels, group):
    """Each run's mean AUC from the rank-sum (Mann-Whitney) formula: quicker than sklearn in a loop."""
    n_pos = labels.sum(axis=0)
    n_neg = len(labels) - n_pos
    return [np.mean(((stats.rankdata(s, axis=0) * labels).sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
            for s in group]


def seed_simulation(shift, reps=100, k=5, n=381, seed_sd=0.07):
    """Share of pairs of recipes called different by seed_group_difference, by Welch's t on the per-seed
    mean AUCs, and by the image-only interval (seeds taken as fixed), on simulated test sets."""
    rng = np.random.default_rng(12)
    prevalence = (0.1, 0.2, 0.15, 0.25)
    calls = np.zeros(3)
    for rep in range(reps):
        labels, difficulty = seed_sim.test_set(rng, n, prevalence)
        a = seed_sim.runs(rng, labels, difficulty, k, 0.6 + shift, seed_sd)
        b = seed_sim.runs(rng, labels, difficulty, k, 0.6, seed_sd)
        r = metrics.seed_group_difference(labels, a, b, n_boot=100, seed=rep)
        welch = stats.ttest_ind(_per_seed_means(labels, a), _per_seed_means(labels, b), equal_var=False)
        calls += (r["p_value"] < 0.05, welch.pvalue < 0.05, abs(r["delta"]) > 1.96 * math.sqrt(r["image_var"]))
    return calls / reps


def test_equal_recipes_are_rarely_called_different_and_unequal_ones_found_about_as_often_as_welch():
    fp, fp_welch, fp_fixed_seeds = seed_simulation(0.0, reps=200)
    assert fp <= 0.06 and fp_welch <= 0.08
    assert fp_fixed_seeds >= 0.12  # the seed spread is realistic: ignoring it calls many equal pairs different
    power, power_welch, _ = seed_simulation(0.25, reps=100)
    assert power >= 0.6 and power >= power_welch - 0.15


def test_rare_classes_left_out_keep_false_calls_near_five_percent():
    rng = np.random.default_rng(13)
    calls = np.zeros(2)
    reps = 150
    for rep in range(reps):
        labels, difficulty = seed_sim.test_set(rng, 170, np.linspace(0.01, 0.10, 14))
        a, b = (seed_sim.runs(rng, labels, difficulty, 1, 0.6, 0.0)[0] for _ in range(2))
        calls += [metrics.paired_auc_difference(labels, a, b, n_boot=100, seed=rep, min_positives=m)["p_value"] < 0.05
                  for m in (5, 1)]
    kept, all_classes = calls / reps
    assert kept <= 0.07 and all_classes > kept
