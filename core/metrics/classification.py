"""Multi-label classification metrics for ChestMNIST-style outputs.

Conventions shared by every function here:

* ``labels``: (N, C) array of 0/1 (int, bool or float), one column per finding.
* ``scores``: (N, C) float array of per-class probabilities (sigmoid outputs).
* ``thresholds``: a float or a (C,) array; a sample is predicted positive for
  class c when ``scores[:, c] >= thresholds[c]`` (see ``threshold_metrics``).

The names ``auc`` and ``acc`` are reserved for medmnist's definitions (mean
per-class ROC AUC, and per-label accuracy at ``scores > 0.5``) so numbers stay
comparable with the MedMNIST benchmark; everything computed at tuned
thresholds carries a different name.

Resampling (bootstrap intervals) lives in core.metrics.bootstrap, paired comparisons of two runs or two
seed groups in core.metrics.paired, calibration in core.metrics.reliability; ``core.metrics`` exports
them all, the one place to import a metric from. docs/metrics.md defines each.

Only numpy, scipy (a scikit-learn dependency) and scikit-learn: this module
must stay importable without torch.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from core.metrics.arrays import check_inputs, defined_mask, nanmean_or_nan, safe_ratio
from core.metrics.bootstrap import ResampledAuc, mean_ci, per_class_ci, resampled_aucs
from core.metrics.reliability import calibration
from core.files import to_jsonable



def auc_per_class(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each class.

    Args:
        labels: (N, C) 0/1 ground truth.
        scores: (N, C) predicted probabilities.

    Returns:
        (C,) float array; NaN for a class whose labels are all 0 or all 1 in
        this split (AUC is undefined there), without warnings or exceptions.
    """
    labels, scores = check_inputs(labels, scores)
    defined = defined_mask(labels)
    out = np.full(labels.shape[1], np.nan)
    for c in np.flatnonzero(defined):
        out[c] = roc_auc_score(labels[:, c], scores[:, c])
    return out


def mean_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """medmnist "AUC": mean of per-class ROC AUCs over the classes where AUC is defined.

    Equals ``medmnist.evaluator.getAUC(labels, scores, "multi-label, binary-class")``
    when every class has both positives and negatives. Otherwise, with the pinned
    scikit-learn, getAUC warns (UndefinedMetricWarning) and returns NaN, while this
    averages the defined classes. NaN when no class is defined.

    Args:
        labels: (N, C) 0/1 ground truth.
        scores: (N, C) predicted probabilities.
    """
    return nanmean_or_nan(auc_per_class(labels, scores))


def medmnist_acc(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    """medmnist "ACC": per-label accuracy with predictions ``scores > threshold``, averaged over classes.

    Strictly greater, as in ``medmnist.evaluator.getACC``; ``threshold_metrics``
    uses ``>=`` instead. Every class has N samples, so the mean of per-class
    accuracies is the mean over all N*C labels.

    Args:
        labels: (N, C) 0/1 ground truth.
        scores: (N, C) predicted probabilities.
        threshold: global decision threshold.
    """
    labels, scores = check_inputs(labels, scores)
    return float(((scores > threshold) == labels).mean())


def threshold_metrics(
    labels: np.ndarray, scores: np.ndarray, thresholds: float | np.ndarray
) -> dict[str, Any]:
    """Confusion counts and derived metrics at per-class thresholds.

    Predictions are ``scores >= thresholds`` (greater *or equal*, so a threshold
    taken from a score value, as ``core.metrics.thresholds`` does, classifies that
    sample as positive). ``medmnist_acc`` keeps medmnist's strict ``>``.

    Zero-denominator conventions follow scikit-learn's ``zero_division=0`` for
    precision, recall and F1 (e.g. precision of a class with no predicted
    positives is 0.0, F1 is 0.0 when tp + fp + fn == 0); specificity of a
    class with no negatives is NaN.

    Args:
        labels: (N, C) 0/1 ground truth.
        scores: (N, C) predicted probabilities.
        thresholds: float or (C,) array.

    Returns:
        dict with per-class (C,) arrays ``tp, fp, fn, tn, support`` (int;
        support = number of positives), ``precision, recall`` (= sensitivity),
        ``specificity, f1`` (float); and float summaries ``macro_f1,
        micro_f1, macro_precision, macro_recall, micro_precision,
        micro_recall`` (macro = unweighted mean over all C classes, matching
        sklearn's ``average="macro", zero_division=0``), ``label_accuracy``
        (per-label accuracy at these thresholds, mean over classes) and
        ``exact_match`` (fraction of samples with all C labels right, sklearn's
        multilabel ``accuracy_score``).
    """
    labels, scores = check_inputs(labels, scores)
    n, n_classes = labels.shape
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (n_classes,))
    pred = scores >= thr

    tp = (pred & labels).sum(axis=0)
    support = labels.sum(axis=0)
    n_pred = pred.sum(axis=0)
    fp = n_pred - tp
    fn = support - tp
    tn = n - tp - fp - fn

    precision = safe_ratio(tp, tp + fp, 0.0)
    recall = safe_ratio(tp, tp + fn, 0.0)
    # 2tp / (2tp + fp + fn) is sklearn's F1 formula and avoids the 0/0 of 2PR/(P+R).
    f1 = safe_ratio(2 * tp, 2 * tp + fp + fn, 0.0)
    specificity = safe_ratio(tn, tn + fp, np.nan)

    tp_all, fp_all, fn_all = tp.sum(), fp.sum(), fn.sum()
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "support": support,
        "precision": precision,
        "recall": recall,
        "specificity": specificity,
        "f1": f1,
        "macro_f1": float(f1.mean()),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "micro_precision": float(safe_ratio(tp_all, tp_all + fp_all, 0.0)),
        "micro_recall": float(safe_ratio(tp_all, tp_all + fn_all, 0.0)),
        "micro_f1": float(safe_ratio(2 * tp_all, 2 * tp_all + fp_all + fn_all, 0.0)),
        "label_accuracy": float(((tp + tn) / n).mean()),
        "exact_match": float((pred == labels).all(axis=1).mean()),
    }



# The fixed operating points reported beside AUC: sensitivity at these specificities and
# specificity at these sensitivities.
OPERATING_LEVELS = (0.90, 0.95)
# Rates are ratios of counts; this absorbs float rounding in "at least 90%".
_RATE_TOL = 1e-9


def _roc_points(labels: np.ndarray, scores: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{class: (specificity, sensitivity, threshold)} of every achievable operating point, defined classes only.

    The points are sklearn's ROC curve without dropping any: predictions ``scores >= threshold``
    at each distinct score, plus threshold +inf (nothing predicted positive).
    """
    out = {}
    for c in np.flatnonzero(defined_mask(labels)):
        fpr, tpr, thr = roc_curve(labels[:, c], scores[:, c], drop_intermediate=False)
        out[int(c)] = (1.0 - fpr, tpr, thr)
    return out


def _check_level(at: str, level: float) -> None:
    if not 0 <= level <= 1:
        raise ValueError(f"a {at} level must be in [0, 1], got {level}")


def _operating_point(points: dict, labels: np.ndarray, at: str, level: float) -> dict[str, np.ndarray]:
    """The best operating point of each class at a fixed `at` rate, from `_roc_points`."""
    n_classes = labels.shape[1]
    out = {k: np.full(n_classes, np.nan) for k in ("sensitivity", "specificity", "threshold")}
    for c, (spec, sens, thr) in points.items():
        fixed, free = (spec, sens) if at == "specificity" else (sens, spec)
        ok = np.flatnonzero(fixed >= level - _RATE_TOL)  # never empty: both ends of the curve reach 1
        # Along the curve sensitivity rises and specificity falls, so the best free rate among
        # the admissible points is the first one attaining the maximum.
        i = ok[np.argmax(free[ok])]
        out["sensitivity"][c], out["specificity"][c], out["threshold"][c] = sens[i], spec[i], thr[i]
    out["n_pos"] = labels.sum(axis=0)
    return out


def sensitivity_at_specificity(labels: np.ndarray, scores: np.ndarray, specificity: float) -> dict[str, np.ndarray]:
    """Highest sensitivity of each class among the operating points whose specificity is at least `specificity`.

    Read off the ROC curve of these very labels (as AUC is): the threshold is fitted to this split,
    so on test it describes the curve, not a threshold chosen in advance (choose those on
    validation with core.metrics.thresholds).

    Args:
        labels: (N, C) 0/1 ground truth.
        scores: (N, C) predicted probabilities.
        specificity: required specificity in [0, 1], e.g. 0.90.

    Returns:
        dict of (C,) arrays: ``sensitivity``, ``specificity`` (achieved, >= the level),
        ``threshold`` (predictions ``scores >= threshold``; +inf = none positive), all NaN for
        a class without positives or negatives, and ``n_pos`` (positives per class).

    Example:
        >>> y = np.array([[0], [0], [0], [0], [1], [1]])
        >>> s = np.array([[.1], [.2], [.3], [.6], [.5], [.9]])
        >>> sensitivity_at_specificity(y, s, 0.75)["sensitivity"]
        array([1.])
    """
    _check_level("specificity", specificity)
    labels, scores = check_inputs(labels, scores)
    return _operating_point(_roc_points(labels, scores), labels, "specificity", specificity)


def specificity_at_sensitivity(labels: np.ndarray, scores: np.ndarray, sensitivity: float) -> dict[str, np.ndarray]:
    """Highest specificity of each class among the operating points whose sensitivity is at least `sensitivity`.

    The mirror of ``sensitivity_at_specificity``, same conventions and return keys.
    """
    _check_level("sensitivity", sensitivity)
    labels, scores = check_inputs(labels, scores)
    return _operating_point(_roc_points(labels, scores), labels, "sensitivity", sensitivity)


def _clinical(labels: np.ndarray, scores: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """summarize's operating points and calibration: (C,) arrays per name, and the overall figures."""
    roc = _roc_points(labels, scores)  # one ROC curve per class serves every operating point
    per_class = {f"sens_at_spec{round(100 * q)}": _operating_point(roc, labels, "specificity", q)["sensitivity"]
                 for q in OPERATING_LEVELS}
    per_class |= {f"spec_at_sens{round(100 * q)}": _operating_point(roc, labels, "sensitivity", q)["specificity"]
                  for q in OPERATING_LEVELS}
    cal = calibration(labels, scores)
    per_class |= {"ece": cal["ece"], "brier": cal["brier"]}
    return per_class, {"ece": cal["pooled"]["ece"], "ece_macro": cal["ece_macro"], "brier": cal["brier_macro"]}


# threshold_metrics' entries reported per class, and its overall figures under their report names
# (the accuracies named for what they are: at the tuned thresholds, and exact match of all 14 labels).
_PER_CLASS_AT_THRESHOLD = ("precision", "recall", "specificity", "f1", "support", "tp", "fp", "fn", "tn")
_OVERALL_AT_THRESHOLD = {"macro_f1": "macro_f1", "micro_f1": "micro_f1", "macro_precision": "macro_precision",
                         "macro_recall": "macro_recall", "micro_precision": "micro_precision",
                         "micro_recall": "micro_recall", "label_accuracy_tuned": "label_accuracy",
                         "exact_match_accuracy": "exact_match"}


def summarize(
    labels: np.ndarray,
    scores: np.ndarray,
    thresholds: float | np.ndarray,
    class_names: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """All test-set metrics of a run as a JSON-ready dict (plain Python types, None for NaN).

    Args:
        labels: (N, C) 0/1 ground truth.
        scores: (N, C) predicted probabilities.
        thresholds: float or (C,) per-class thresholds (predictions ``>=``).
        class_names: C names, in column order.
        n_boot: bootstrap resamples for the 95% AUC intervals.
        seed: bootstrap RNG seed.

    Returns:
        dict with keys:
        ``n_samples``; ``auc`` (medmnist AUC, ``mean_auc``) and ``auc_ci``
        [low, high]; ``acc`` (medmnist ACC at 0.5, strict ``>``);
        ``auc_defined_classes`` (names); ``auc_undefined_classes`` (list of
        ``{"name", "reason"}`` with reason "no positives" or "no negatives");
        ``per_class`` = {name: {auc, auc_ci_low, auc_ci_high, threshold,
        precision, recall, specificity, f1, support, tp, fp, fn, tn,
        sens_at_spec90, sens_at_spec95, spec_at_sens90, spec_at_sens95, ece,
        brier}} (support = positives; the operating points are read off this
        split's ROC curve, calibration is core.metrics.reliability's, None for an
        undefined class); ``ece`` (pooled over defined classes), ``ece_macro``
        and ``brier`` (means over defined classes); and at
        the given thresholds ``macro_f1, micro_f1, macro_precision,
        macro_recall, micro_precision, micro_recall, label_accuracy_tuned,
        exact_match_accuracy``; plus ``n_boot`` and ``ci_level`` (0.95).
    """
    labels, scores = check_inputs(labels, scores)
    n, n_classes = labels.shape
    if len(class_names) != n_classes:
        raise ValueError(f"got {len(class_names)} class names for {n_classes} score columns")
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (n_classes,))
    alpha = 0.05

    aucs = auc_per_class(labels, scores)
    defined = defined_mask(labels)
    # One set of resamples serves both the per-class and the mean intervals.
    boot = resampled_aucs([ResampledAuc(labels, scores)], n_boot, seed)[0]
    class_ci = per_class_ci(boot, alpha)
    tm = threshold_metrics(labels, scores, thr)
    clinical, overall = _clinical(labels, scores)

    n_pos = labels.sum(axis=0)
    undefined = [
        {"name": name, "reason": "no positives" if n_pos[c] == 0 else "no negatives"}
        for c, name in enumerate(class_names)
        if not defined[c]
    ]
    per_class = {
        name: {"auc": aucs[c], "auc_ci_low": class_ci[c, 0], "auc_ci_high": class_ci[c, 1], "threshold": thr[c],
               **{k: tm[k][c] for k in _PER_CLASS_AT_THRESHOLD}, **{k: v[c] for k, v in clinical.items()}}
        for c, name in enumerate(class_names)
    }
    return to_jsonable({
        "n_samples": n,
        "auc": nanmean_or_nan(aucs),
        "auc_ci": mean_ci(boot, defined, alpha),
        "acc": medmnist_acc(labels, scores, 0.5),
        "n_boot": n_boot,
        "ci_level": 1 - alpha,
        "auc_defined_classes": [name for c, name in enumerate(class_names) if defined[c]],
        "auc_undefined_classes": undefined,
        "per_class": per_class,
        **{key: tm[k] for key, k in _OVERALL_AT_THRESHOLD.items()},
        **overall,
    })
