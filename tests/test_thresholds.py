"""core.metrics.thresholds on curves whose optimum is known, plus the JSON file round trip."""
import json

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve, roc_curve

from core.metrics import thresholds as th

# Worked example (one class), scores in decreasing order:
#   score  0.9 0.8 0.7 0.6 0.5 0.4 0.3 0.2
#   label   1   1   0   1   0   0   1   0        P = 4, N = 4
# Predicting score >= t:
#   t    0.9   0.8   0.7   0.6   0.5   0.4   0.3   0.2
#   TP    1     2     2     3     3     3     4     4
#   FP    0     0     1     1     2     3     3     4
#   J   .25   .50   .25   .50   .25    0    .25    0     (TPR - FPR)
#   F1  .40   .67   .57   .75   .67   .60   .73   .67   (2TP / (TP + FP + P))
HAND_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])[:, None]
HAND_LABELS = np.array([1, 1, 0, 1, 0, 0, 1, 0])[:, None]


def random_data(n=400, c=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, c)) < rng.uniform(0.1, 0.5, c)).astype(int)
    scores = (1 / (1 + np.exp(-(rng.normal(size=(n, c)) + 1.5 * labels - 1)))).round(2)
    return labels, scores


def test_hand_example_youden_ties_go_to_highest_threshold():
    # J = 0.5 at both 0.8 and 0.6; the higher threshold wins.
    assert th.youden(HAND_LABELS, HAND_SCORES)[0] == 0.8


def test_hand_example_f1():
    assert th.f1_optimal(HAND_LABELS, HAND_SCORES)[0] == 0.6


@pytest.mark.parametrize(
    "target, expected",
    [(0.5, 0.8), (0.75, 0.6), (0.8, 0.3), (1.0, 0.3), (0.0, 0.9), (0.25, 0.9)],
)
def test_hand_example_sensitivity(target, expected):
    assert th.sensitivity_at_least(HAND_LABELS, HAND_SCORES, target)[0] == expected


def test_separable_classes_threshold_lies_between_groups():
    rng = np.random.default_rng(1)
    neg = rng.uniform(0.05, 0.4, size=(50, 3))
    pos = rng.uniform(0.6, 0.95, size=(20, 3))
    scores = np.vstack([neg, pos])
    labels = np.vstack([np.zeros((50, 3), int), np.ones((20, 3), int)])
    for thresholds in (
        th.youden(labels, scores),
        th.f1_optimal(labels, scores),
        th.sensitivity_at_least(labels, scores, 1.0),
    ):
        assert (neg.max(axis=0) < thresholds).all() and (thresholds <= pos.min(axis=0)).all()
        assert ((scores >= thresholds) == labels).all()


def test_youden_matches_best_j_of_sklearn_roc_curve():
    labels, scores = random_data()
    thresholds = th.youden(labels, scores)
    for c in range(labels.shape[1]):
        fpr, tpr, _ = roc_curve(labels[:, c], scores[:, c])
        pred = scores[:, c] >= thresholds[c]
        y = labels[:, c] == 1
        j = pred[y].mean() - pred[~y].mean()
        assert j == pytest.approx((tpr - fpr).max())


def test_f1_matches_best_f1_of_sklearn_pr_curve():
    labels, scores = random_data(seed=2)
    thresholds = th.f1_optimal(labels, scores)
    for c in range(labels.shape[1]):
        precision, recall, _ = precision_recall_curve(labels[:, c], scores[:, c])
        with np.errstate(invalid="ignore"):
            best = np.nanmax(2 * precision * recall / (precision + recall))
        pred = scores[:, c] >= thresholds[c]
        y = labels[:, c] == 1
        f1 = 2 * (pred & y).sum() / (pred.sum() + y.sum())
        assert f1 == pytest.approx(best)


def test_sensitivity_threshold_is_the_highest_meeting_the_target():
    labels, scores = random_data(seed=3)
    thresholds = th.sensitivity_at_least(labels, scores, 0.8)
    for c in range(labels.shape[1]):
        y = labels[:, c] == 1
        assert (scores[y, c] >= thresholds[c]).mean() >= 0.8
        higher = np.unique(scores[:, c])
        higher = higher[higher > thresholds[c]]
        if higher.size:  # the next candidate up must already miss the target
            assert (scores[y, c] >= higher.min()).mean() < 0.8


def test_ties_between_positives_and_negatives():
    # All four samples share one score, so the only candidate predicts everything positive.
    labels = np.array([[1], [0], [1], [0]])
    scores = np.full((4, 1), 0.4)
    for method in (th.youden, th.f1_optimal):
        assert method(labels, scores)[0] == 0.4


def test_never_inf_even_for_an_inverted_classifier():
    # Positives score lowest: the best J (0) is "predict all"; sklearn's curve would offer inf.
    labels = np.array([[1], [1], [0], [0]])
    scores = np.array([[0.1], [0.2], [0.8], [0.9]])
    thresholds = th.youden(labels, scores)
    assert np.isfinite(thresholds).all() and 0 <= thresholds[0] <= 1


def test_thresholds_are_clipped_to_unit_interval():
    labels = np.array([[1, 0], [0, 1]])
    scores = np.array([[3.0, -2.0], [-1.0, -0.5]])  # logits by mistake
    thresholds = th.youden(labels, scores)
    np.testing.assert_array_equal(thresholds, [1.0, 0.0])


def test_fallback_for_classes_without_both_labels():
    labels, scores = random_data(c=4, seed=4)
    labels[:, 1] = 0
    labels[:, 3] = 1
    for fn in (th.youden, th.f1_optimal, lambda y, s: th.sensitivity_at_least(y, s, 0.9)):
        thresholds = fn(labels, scores)
        assert not np.isnan(thresholds).any()
        assert thresholds[1] == th.FALLBACK_THRESHOLD and thresholds[3] == th.FALLBACK_THRESHOLD
    assert th.fallback_classes(labels) == [1, 3]
    choice = th.choose("youden", labels, scores)
    assert choice.fallback == [1, 3]


def test_choose_names_methods_and_validates_arguments():
    labels, scores = random_data(seed=5)
    assert th.choose("youden", labels, scores).method == "youden"
    assert th.choose("f1", labels, scores).method == "f1"
    sens = th.choose("sensitivity", labels, scores, target=0.8)
    assert sens.method == "sensitivity>=0.80"
    np.testing.assert_array_equal(sens.thresholds, th.sensitivity_at_least(labels, scores, 0.8))
    fixed = th.choose("fixed", labels, scores, value=0.3)
    assert fixed.method == "fixed-0.3" and fixed.fallback == []
    np.testing.assert_array_equal(fixed.thresholds, np.full(5, 0.3))
    assert th.choose("fixed", labels, scores).method == "fixed-0.5"
    assert set(th.METHODS) == {"youden", "f1", "sensitivity", "fixed"}
    with pytest.raises(ValueError, match="unknown threshold method"):
        th.choose("otsu", labels, scores)
    with pytest.raises(ValueError, match="needs target"):
        th.choose("sensitivity", labels, scores)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        th.choose("sensitivity", labels, scores, target=80)


NAMES = ["atelectasis", "cardiomegaly", "effusion"]


def test_save_load_round_trip(tmp_path):
    labels, scores = random_data(c=3, seed=6)
    labels[:, 2] = 0
    choice = th.choose("youden", labels, scores)
    path = tmp_path / "run" / "thresholds.json"
    th.save_thresholds(path, choice, NAMES)

    np.testing.assert_array_equal(th.load_thresholds(path, NAMES), choice.thresholds)
    loaded = th.load_choice(path, NAMES)  # the whole choice comes back: method and fallback classes too
    assert (loaded.method, loaded.fallback) == ("youden", [2]) == (choice.method, choice.fallback)
    np.testing.assert_array_equal(loaded.thresholds, choice.thresholds)
    data = json.loads(path.read_text())
    assert data["split"] == "val" and data["method"] == "youden"
    assert data["classes"]["atelectasis"]["method"] == "youden"
    assert data["classes"]["effusion"] == {"threshold": 0.5, "method": "fallback-0.5"}
    assert data["fallback_classes"] == ["effusion"]
    assert [p.name for p in path.parent.iterdir()] == ["thresholds.json"]  # no temp file left


def test_save_plain_array_and_load_reorders_by_class_names(tmp_path):
    path = tmp_path / "t.json"
    th.save_thresholds(path, np.array([0.1, 0.2, 0.3]), NAMES, method="fixed-0.3", split="val")
    assert json.loads(path.read_text())["classes"]["effusion"]["method"] == "fixed-0.3"
    reordered = list(reversed(NAMES))
    np.testing.assert_array_equal(th.load_thresholds(path, reordered), [0.3, 0.2, 0.1])


def test_save_rejects_invalid_thresholds(tmp_path):
    with pytest.raises(ValueError, match="3 class names"):
        th.save_thresholds(tmp_path / "t.json", np.array([0.1, 0.2]), NAMES)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        th.save_thresholds(tmp_path / "t.json", np.array([0.1, np.nan, 0.3]), NAMES)
    assert list(tmp_path.iterdir()) == []


def test_load_accepts_plain_mapping(tmp_path):
    path = tmp_path / "edited.json"
    path.write_text(json.dumps({"effusion": 0.25, "atelectasis": 0, "cardiomegaly": 1}))
    np.testing.assert_array_equal(th.load_thresholds(path, NAMES), [0.0, 1.0, 0.25])
    assert (th.load_choice(path, NAMES).method, th.load_choice(path, NAMES).fallback) == ("file", [])


def test_load_rejects_wrong_class_names(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"atelectasis": 0.2, "cardiomegally": 0.3, "hernia": 0.4}))
    with pytest.raises(th.ThresholdFileError) as err:
        th.load_thresholds(path, NAMES)
    message = str(err.value)
    assert str(path) in message
    assert "'cardiomegally'" in message and "'hernia'" in message  # unknown
    assert "'cardiomegaly'" in message and "'effusion'" in message  # missing
    assert "regenerate" in message


@pytest.mark.parametrize("bad", [1.5, -0.1, "0.3", True, None, {"threshold": 2}])
def test_load_rejects_values_outside_unit_interval(tmp_path, bad):
    path = tmp_path / "t.json"
    entries = {"atelectasis": {"threshold": 0.2}, "cardiomegaly": {"threshold": 0.3}, "effusion": bad}
    path.write_text(json.dumps({"split": "val", "classes": entries}))
    with pytest.raises(th.ThresholdFileError, match=r"'effusion', which is not a number in \[0, 1\]"):
        th.load_thresholds(path, NAMES)


def test_load_rejects_nan(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"atelectasis": NaN, "cardiomegaly": 0.1, "effusion": 0.1}')
    with pytest.raises(th.ThresholdFileError, match="atelectasis"):
        th.load_thresholds(path, NAMES)


def test_load_reports_missing_and_malformed_files(tmp_path):
    with pytest.raises(th.ThresholdFileError, match="does not exist"):
        th.load_thresholds(tmp_path / "nope.json", NAMES)
    broken = tmp_path / "broken.json"
    broken.write_text('{"atelectasis": 0.2,')
    with pytest.raises(th.ThresholdFileError, match="not valid JSON"):
        th.load_thresholds(broken, NAMES)
    listing = tmp_path / "list.json"
    listing.write_text("[0.1, 0.2, 0.3]")
    with pytest.raises(th.ThresholdFileError, match="not an object"):
        th.load_thresholds(listing, NAMES)
    assert issubclass(th.ThresholdFileError, ValueError)


def test_operating_points_count_true_and_false_positives_as_brute_force_does():
    labels, scores = random_data(n=120, c=2, seed=3)  # rounded scores: many ties
    for c in range(2):
        y, s = labels[:, c].astype(bool), scores[:, c]
        thr, tp, fp = th._operating_points(y, s)
        assert list(thr) == sorted(set(s), reverse=True)
        assert list(tp) == [int((y & (s >= t)).sum()) for t in thr]
        assert list(fp) == [int((~y & (s >= t)).sum()) for t in thr]
