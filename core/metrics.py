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

Only numpy, scipy (a scikit-learn dependency) and scikit-learn: this module
must stay importable without torch.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Iterator

import numpy as np
from scipy import sparse
from sklearn.metrics import roc_auc_score

__all__ = [
    "auc_per_class",
    "mean_auc",
    "medmnist_acc",
    "threshold_metrics",
    "bootstrap_auc_ci",
    "mean_auc_ci",
    "medmnist_acc_ci",
    "summarize",
    "to_jsonable",
    "check_inputs",
]

# Bootstrap resamples are drawn in blocks so memory stays bounded
# (block * N count matrix) whatever n_boot is.
_BOOT_BLOCK = 256


def check_inputs(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to (bool labels (N, C), float64 scores (N, C))."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 2 or scores.ndim != 2:
        raise ValueError(
            f"labels and scores must be 2-D (N, C) arrays, got shapes {labels.shape} and {scores.shape}"
        )
    if labels.shape != scores.shape:
        raise ValueError(f"labels shape {labels.shape} does not match scores shape {scores.shape}")
    if not ((labels == 0) | (labels == 1)).all():
        raise ValueError("labels must contain only 0 and 1")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    return labels.astype(bool), scores


def _defined_mask(labels: np.ndarray) -> np.ndarray:
    """(C,) bool: True where the class has both positives and negatives, i.e. AUC exists."""
    n_pos = labels.sum(axis=0)
    return (n_pos > 0) & (n_pos < labels.shape[0])


def _safe_ratio(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    """num / den elementwise, ``fill`` where den == 0, without a division warning."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, fill, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _nanmean_or_nan(values: np.ndarray) -> float:
    """Mean of the finite entries; NaN (and no RuntimeWarning) when there are none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


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
    defined = _defined_mask(labels)
    out = np.full(labels.shape[1], np.nan)
    for c in np.flatnonzero(defined):
        out[c] = roc_auc_score(labels[:, c], scores[:, c])
    return out


def mean_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """medmnist "AUC": mean of per-class ROC AUCs over the classes where AUC is defined.

    Equals ``medmnist.evaluator.getAUC(labels, scores, "multi-label, binary-class")``
    when every class has both positives and negatives (medmnist itself crashes
    otherwise). NaN when no class is defined.

    Args:
        labels: (N, C) 0/1 ground truth.
        scores: (N, C) predicted probabilities.
    """
    return _nanmean_or_nan(auc_per_class(labels, scores))


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
    taken from a score value, as ``core.thresholds`` does, classifies that
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

    precision = _safe_ratio(tp, tp + fp, 0.0)
    recall = _safe_ratio(tp, tp + fn, 0.0)
    # 2tp / (2tp + fp + fn) is sklearn's F1 formula and avoids the 0/0 of 2PR/(P+R).
    f1 = _safe_ratio(2 * tp, 2 * tp + fp + fn, 0.0)
    specificity = _safe_ratio(tn, tn + fp, np.nan)

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
        "micro_precision": float(_safe_ratio(tp_all, tp_all + fp_all, 0.0)),
        "micro_recall": float(_safe_ratio(tp_all, tp_all + fn_all, 0.0)),
        "micro_f1": float(_safe_ratio(2 * tp_all, 2 * tp_all + fp_all + fn_all, 0.0)),
        "label_accuracy": float(((tp + tn) / n).mean()),
        "exact_match": float((pred == labels).all(axis=1).mean()),
    }


def _resampled_auc(labels: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC AUC of every class on resamples given as per-sample multiplicities.

    A bootstrap resample that draws sample i k times is the original data with
    weight k on sample i, so the Mann-Whitney statistic (pairs with the positive
    scored above the negative, ties counting half) only needs, per resample,
    the weighted number of negatives below / tied with each distinct positive
    score. Those group sums for all resamples come from one sparse
    (groups x N) @ (N x B) product, which avoids re-sorting every resample.

    Args:
        labels: (N, C) bool ground truth.
        scores: (N, C) float scores.
        counts: (N, B) non-negative integer multiplicities, one *column* per
            resample (the layout the sparse product reads contiguously).

    Returns:
        (B, C) float array; NaN where a resample has no positive or no negative
        of that class.
    """
    n = labels.shape[0]
    # int32 is exact (a column sums to at most N) and halves the memory traffic.
    counts = np.asarray(counts, dtype=np.int32)
    out = np.full((counts.shape[1], labels.shape[1]), np.nan)
    for c in range(labels.shape[1]):
        y, s = labels[:, c], scores[:, c]
        if y.all() or not y.any():
            continue
        pos_values = np.unique(s[y])
        k = pos_values.size
        rank = np.searchsorted(pos_values, s, side="left")
        tie = pos_values[np.minimum(rank, k - 1)] == s
        # Group ids: a negative goes to 2*rank (strictly between distinct positive
        # values rank-1 and rank) or 2*rank+1 (tied with value rank); positives
        # with value index r go to 2k+1+r.
        group = np.where(y, 2 * k + 1 + rank, 2 * rank + tie)
        onehot = sparse.csr_array(
            (np.ones(n, dtype=np.int32), (group, np.arange(n))), shape=(3 * k + 1, n)
        )
        sums = np.ascontiguousarray((onehot @ counts).T, dtype=np.int64)  # (B, 3k+1)
        neg_bins, w_pos = sums[:, : 2 * k + 1], sums[:, 2 * k + 1 :]
        # neg_cum[:, m] = weighted negatives in bins < m, so for value r
        # neg_cum[2r+1] counts those strictly below and neg_cum[2r+2] adds the ties.
        neg_cum = np.zeros((sums.shape[0], 2 * k + 2), dtype=np.int64)
        np.cumsum(neg_bins, axis=1, out=neg_cum[:, 1:])
        twice_u = (w_pos * (neg_cum[:, 1 : 2 * k : 2] + neg_cum[:, 2 : 2 * k + 1 : 2])).sum(axis=1)
        n_pairs = w_pos.sum(axis=1) * neg_cum[:, -1]
        out[:, c] = _safe_ratio(twice_u, 2 * n_pairs, np.nan)
    return out


def _resample_blocks(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Seeded bootstrap resamples of n rows, as (b, n) index arrays of at most _BOOT_BLOCK rows.

    Every bootstrap function draws through here, so AUC and ACC intervals with the same seed
    come from the same resamples.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, _BOOT_BLOCK):
        yield rng.integers(0, n, size=(min(_BOOT_BLOCK, n_boot - start), n))


def _bootstrap_auc_samples(
    labels: np.ndarray, scores: np.ndarray, n_boot: int, seed: int
) -> np.ndarray:
    """(n_boot, C) per-class AUCs on seeded resamples with replacement (NaN where undefined)."""
    n = labels.shape[0]
    blocks = []
    for idx in _resample_blocks(n, n_boot, seed):
        b = len(idx)
        # Encoding (sample, resample) as sample*b + resample lets one bincount
        # produce the (N, b) multiplicity matrix.
        flat = (idx * b + np.arange(b)[:, None]).ravel()
        counts = np.bincount(flat, minlength=n * b).reshape(n, b)
        blocks.append(_resampled_auc(labels, scores, counts))
    return np.concatenate(blocks, axis=0)


def _percentile_ci(samples: np.ndarray, alpha: float) -> np.ndarray:
    """(2,) percentile interval of the finite entries of a 1-D array; NaNs if there are none."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return np.array([np.nan, np.nan])
    return np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _per_class_ci(boot: np.ndarray, alpha: float) -> np.ndarray:
    return np.stack([_percentile_ci(boot[:, c], alpha) for c in range(boot.shape[1])])


def _mean_ci(boot: np.ndarray, defined: np.ndarray, alpha: float) -> np.ndarray:
    # A resample where a class defined on the full data lost all its positives or
    # negatives gets a NaN mean and is skipped, so every bootstrap mean averages
    # the same classes as the point estimate.
    if not defined.any():
        return np.array([np.nan, np.nan])
    return _percentile_ci(boot[:, defined].mean(axis=1), alpha)


def medmnist_acc_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> np.ndarray:
    """Percentile bootstrap CI of ``medmnist_acc`` (per-label accuracy at 0.5).

    Drawn on the same resamples as ``mean_auc_ci`` with the same ``n_boot`` and ``seed``.

    Args:
        labels: (N, C) binary ground truth.
        scores: (N, C) predicted probabilities.
        n_boot: number of resamples.
        alpha: 1 - confidence level.
        seed: seed of the resampling.

    Returns:
        (2,) array [low, high].
    """
    _check_alpha(alpha)
    labels, scores = check_inputs(labels, scores)
    correct = ((scores > 0.5) == labels).mean(axis=1)  # per-sample share of labels right
    boot = np.concatenate([correct[idx].mean(axis=1) for idx in _resample_blocks(len(correct), n_boot, seed)])
    return _percentile_ci(boot, alpha)


def bootstrap_auc_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> np.ndarray:
    """Percentile bootstrap confidence interval of each class's ROC AUC.

    Samples (rows) are resampled with replacement using
    ``np.random.default_rng(seed)``; a resample in which a class has only one
    label value is skipped for that class.

    Args:
        labels: (N, C) 0/1 ground truth.
        scores: (N, C) predicted probabilities.
        n_boot: number of resamples.
        alpha: 1 - confidence level (0.05 gives a 95% interval).
        seed: RNG seed; the same seed gives the same resamples as ``mean_auc_ci``.

    Returns:
        (C, 2) array of [low, high]; a NaN row for classes whose AUC is undefined.
    """
    _check_alpha(alpha)
    labels, scores = check_inputs(labels, scores)
    return _per_class_ci(_bootstrap_auc_samples(labels, scores, n_boot, seed), alpha)


def mean_auc_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> np.ndarray:
    """Percentile bootstrap confidence interval of ``mean_auc``.

    Uses the same resamples as ``bootstrap_auc_ci`` with the same seed. The
    mean is over the classes whose AUC is defined on the full data; resamples
    in which one of those classes loses all its positives or negatives are
    skipped.

    Args:
        labels: (N, C) 0/1 ground truth.
        scores: (N, C) predicted probabilities.
        n_boot: number of resamples.
        alpha: 1 - confidence level.
        seed: RNG seed.

    Returns:
        (2,) array [low, high]; NaNs when no class is defined.
    """
    _check_alpha(alpha)
    labels, scores = check_inputs(labels, scores)
    boot = _bootstrap_auc_samples(labels, scores, n_boot, seed)
    return _mean_ci(boot, _defined_mask(labels), alpha)


def to_jsonable(obj: Any) -> Any:
    """Convert numpy values and containers into plain JSON types, NaN/inf becoming None.

    The result passes ``json.dumps(..., allow_nan=False)``: dicts (keys made
    str), lists/tuples/arrays become lists, numpy scalars become Python
    bool/int/float.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


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
        precision, recall, specificity, f1, support, tp, fp, fn, tn}}; and at
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
    defined = _defined_mask(labels)
    # One set of resamples serves both the per-class and the mean intervals.
    boot = _bootstrap_auc_samples(labels, scores, n_boot, seed)
    class_ci = _per_class_ci(boot, alpha)
    tm = threshold_metrics(labels, scores, thr)

    n_pos = labels.sum(axis=0)
    undefined = [
        {"name": name, "reason": "no positives" if n_pos[c] == 0 else "no negatives"}
        for c, name in enumerate(class_names)
        if not defined[c]
    ]
    per_class = {
        name: {
            "auc": aucs[c],
            "auc_ci_low": class_ci[c, 0],
            "auc_ci_high": class_ci[c, 1],
            "threshold": thr[c],
            "precision": tm["precision"][c],
            "recall": tm["recall"][c],
            "specificity": tm["specificity"][c],
            "f1": tm["f1"][c],
            "support": tm["support"][c],
            "tp": tm["tp"][c],
            "fp": tm["fp"][c],
            "fn": tm["fn"][c],
            "tn": tm["tn"][c],
        }
        for c, name in enumerate(class_names)
    }
    return to_jsonable(
        {
            "n_samples": n,
            "auc": _nanmean_or_nan(aucs),
            "auc_ci": _mean_ci(boot, defined, alpha),
            "acc": medmnist_acc(labels, scores, 0.5),
            "n_boot": n_boot,
            "ci_level": 1 - alpha,
            "auc_defined_classes": [name for c, name in enumerate(class_names) if defined[c]],
            "auc_undefined_classes": undefined,
            "per_class": per_class,
            "macro_f1": tm["macro_f1"],
            "micro_f1": tm["micro_f1"],
            "macro_precision": tm["macro_precision"],
            "macro_recall": tm["macro_recall"],
            "micro_precision": tm["micro_precision"],
            "micro_recall": tm["micro_recall"],
            "label_accuracy_tuned": tm["label_accuracy"],
            "exact_match_accuracy": tm["exact_match"],
        }
    )
