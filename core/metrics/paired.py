"""Paired comparisons: is run (or seed group) A's test AUC really different from B's on the same images?

Two runs scored on the same test images share every image's difficulty, so their difference is
resampled *paired*: each bootstrap resample of the images is applied to both, and the spread of
the difference is far smaller than two separate intervals suggest. Resamples are core.metrics.bootstrap's
(the same seed gives the same resamples as the single-run intervals); array conventions are
core.metrics.arrays'. docs/metrics.md explains the interval and the p-value.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from core.errors import UserError
from core.metrics.arrays import check_inputs, defined_mask
from core.metrics.bootstrap import ResampledAuc, check_alpha, percentile_ci, resampled_aucs

__all__ = ["PairingError", "check_same_images", "paired_auc_difference", "seed_group_difference", "verdict"]

GroupMethod = Literal["mean-auc", "mean-scores"]
_METHODS: dict[str, str] = {
    "mean-auc": "each group's AUC is the mean of its runs' AUCs, on every resample",
    "mean-scores": "each group's probabilities are averaged per image over its runs (an ensemble) before AUC",
}


class PairingError(UserError):
    """Two runs or groups cannot be compared paired; the message says why and what to do."""


def check_same_images(
    labels_a: np.ndarray,
    labels_b: np.ndarray,
    source_a: str | None = None,
    source_b: str | None = None,
    names: tuple[str, str] = ("A", "B"),
) -> None:
    """Refuse (PairingError) two runs that did not score the same test images in the same order.

    Equal labels are necessary, not sufficient (two different image sets can share labels), so
    pass each run's `source` too: what identifies its test images, e.g. the resolved data
    folder. A folder's files at different sizes hold the same images, so the data file's MD5
    identifies the images only between runs of one size.

    Args:
        labels_a, labels_b: (N, C) test labels each run was scored against.
        source_a, source_b: identifiers of the test images; compared only when both are given.
        names: how the message calls the two runs.
    """
    a, b = names
    labels_a, labels_b = np.asarray(labels_a), np.asarray(labels_b)
    if source_a is not None and source_b is not None and source_a != source_b:
        raise PairingError(f"{a} was scored on test images from {source_a} and {b} on test images from {source_b}: "
                           "a paired comparison needs runs scored on the same images. Compare runs trained on "
                           "the same data folder (its files at every size hold the same images).")
    if labels_a.shape != labels_b.shape:
        raise PairingError(f"{a} was scored on {labels_a.shape[0]:,} test images ({labels_a.shape}) and {b} on "
                           f"{labels_b.shape[0]:,} ({labels_b.shape}): different data files or splits. "
                           "Compare runs trained on the same data folder.")
    differ = int((labels_a != labels_b).reshape(len(labels_a), -1).any(axis=1).sum())
    if differ:
        raise PairingError(f"{a} and {b} have different test labels on {differ:,} of {labels_a.shape[0]:,} images: "
                           "they were scored on different images or in a different order. Compare runs trained "
                           "on the same data folder.")


def _validated(labels: np.ndarray, scores_a: Sequence[np.ndarray],
               scores_b: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """(bool labels, float64 score arrays of a, of b), or PairingError / ValueError saying what is wrong."""
    labels = np.asarray(labels)
    group_a, group_b = _check_group(labels, scores_a, "a"), _check_group(labels, scores_b, "b")
    return labels.astype(bool), group_a, group_b  # check_inputs has seen the labels are 0/1


def _check_group(labels: np.ndarray, group: Sequence[np.ndarray], name: str) -> list[np.ndarray]:
    if len(group) == 0:
        raise PairingError(f"group {name} has no runs")
    out = []
    for i, scores in enumerate(group):
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != labels.shape:
            raise PairingError(f"scores of {name}{f' run {i + 1}' if len(group) > 1 else ''} have shape "
                               f"{scores.shape} but the labels {labels.shape}: they were not scored on the same "
                               "test images. Compare runs trained on the same data folder.")
        out.append(check_inputs(labels, scores)[1])
    return out


def _p_two_sided(deltas: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "no difference": twice the smaller share of resampled
    differences on either side of 0, counting the observed one (so never below 2 / (B + 1))."""
    d = deltas[np.isfinite(deltas)]
    if d.size == 0:
        return math.nan
    tail = min(int((d <= 0).sum()), int((d >= 0).sum()))
    return min(1.0, 2 * (tail + 1) / (d.size + 1))


def _paired(labels: np.ndarray, group_a: list[np.ndarray], group_b: list[np.ndarray], n_boot: int, seed: int,
            alpha: float, class_names: Sequence[str] | None) -> dict[str, Any]:
    """Paired difference of two groups of score arrays, a group's AUC being the mean of its arrays' AUCs."""
    n, n_classes = labels.shape
    names = [str(c) for c in range(n_classes)] if class_names is None else [str(x) for x in class_names]
    if len(names) != n_classes:
        raise ValueError(f"got {len(names)} class names for {n_classes} score columns")
    used = defined_mask(labels)
    k = len(group_a)
    aucs = [ResampledAuc(labels, s) for s in group_a + group_b]
    boots = resampled_aucs(aucs, n_boot, seed)
    boot_a, boot_b = np.mean(boots[:k], axis=0), np.mean(boots[k:], axis=0)  # (n_boot, C)
    full = [a.full() for a in aucs]
    auc_a, auc_b = np.mean(full[:k], axis=0), np.mean(full[k:], axis=0)
    class_delta, boot_delta = auc_a - auc_b, boot_a - boot_b
    # A resample in which a used class lost all its positives or negatives has a NaN mean and is
    # skipped, so every resampled mean averages the same classes as the point estimate.
    mean_boot = boot_delta[:, used].mean(axis=1) if used.any() else np.full(n_boot, np.nan)
    n_pos = labels.sum(axis=0)
    per_class = []
    for c in range(n_classes):
        lo, hi = percentile_ci(boot_delta[:, c], alpha) if used[c] else (math.nan, math.nan)
        per_class.append({"class": names[c], "n_pos": int(n_pos[c]), "auc_a": float(auc_a[c]),
                          "auc_b": float(auc_b[c]), "delta": float(class_delta[c]), "ci_low": float(lo),
                          "ci_high": float(hi), "p_value": _p_two_sided(boot_delta[:, c]) if used[c] else math.nan})
    lo, hi = percentile_ci(mean_boot, alpha)
    return {
        "delta": float(class_delta[used].mean()) if used.any() else math.nan,
        "ci": (float(lo), float(hi)),
        "p_value": _p_two_sided(mean_boot),
        "auc_a": float(auc_a[used].mean()) if used.any() else math.nan,
        "auc_b": float(auc_b[used].mean()) if used.any() else math.nan,
        "per_class": per_class,
        "n_images": int(n),
        "classes_used": [names[c] for c in np.flatnonzero(used)],
        "classes_excluded": [names[c] for c in np.flatnonzero(~used)],
        "n_boot": int(n_boot),
        "n_boot_used": int(np.isfinite(mean_boot).sum()),
        "seed": int(seed),
        "ci_level": 1 - alpha,
    }


def paired_auc_difference(
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Paired bootstrap of medmnist AUC(a) - AUC(b) for two runs scored on the same images.

    Every resample draws N images with replacement and scores both runs on it, so what the
    images share (their difficulty) cancels in the difference.

    Args:
        labels: (N, C) 0/1 test labels (check first, with ``check_same_images``, that both
            runs were scored against the same ones).
        scores_a, scores_b: (N, C) probabilities of runs a and b for those images.
        n_boot: resamples.
        seed: resampling seed (the same seed gives the resamples of ``mean_auc_ci``).
        alpha: 1 - confidence level.
        class_names: C names for ``per_class`` and ``classes_used`` (default "0".."C-1").

    Returns:
        dict: ``delta`` (mean AUC of a minus mean AUC of b, over the classes with positives and
        negatives in `labels`), ``ci`` (low, high) (percentile interval of the resampled
        deltas), ``p_value`` (two-sided, from the same resamples), ``auc_a``, ``auc_b``;
        ``per_class``, one dict per class (``class, n_pos, auc_a, auc_b, delta, ci_low,
        ci_high, p_value``; NaN for a class without positives or negatives);
        ``n_images``, ``classes_used``, ``classes_excluded``, ``n_boot``, ``n_boot_used``
        (resamples in which every used class kept positives and negatives), ``seed``,
        ``ci_level``, ``method`` ("single runs"). Floats are plain Python floats (NaN where
        undefined; core.files.to_jsonable makes them None).

    Raises:
        PairingError (a ValueError) when the shapes of labels and scores differ.
    """
    check_alpha(alpha)
    labels, group_a, group_b = _validated(labels, [scores_a], [scores_b])
    return _paired(labels, group_a, group_b, n_boot, seed, alpha, class_names) | {"method": "single runs"}


def seed_group_difference(
    labels: np.ndarray,
    scores_a: Sequence[np.ndarray],
    scores_b: Sequence[np.ndarray],
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    class_names: Sequence[str] | None = None,
    method: GroupMethod = "mean-auc",
) -> dict[str, Any]:
    """Paired bootstrap of the AUC difference between two groups of runs (e.g. seeds of two recipes).

    With ``method="mean-auc"`` (default) a group's AUC is the mean of its runs' AUCs, on the
    full data and on every resample, so ``delta`` is the difference of the two groups' mean
    test AUCs that a table of mean ± sd shows, and with equally many runs it equals the mean
    of the seed-by-seed paired differences. With ``"mean-scores"`` each group's probabilities
    are first averaged per image over its runs: the difference of the two ensembles, which is
    usually larger than what one run of either recipe gives.

    Args:
        labels: (N, C) 0/1 test labels shared by every run (see ``check_same_images``).
        scores_a, scores_b: the (N, C) probabilities of each run of group a and of group b.
        n_boot, seed, alpha, class_names: as in ``paired_auc_difference``.
        method: "mean-auc" or "mean-scores".

    Returns:
        ``paired_auc_difference``'s dict, with ``method``, ``method_text`` (one sentence saying
        how the groups were combined), ``n_runs_a`` and ``n_runs_b``.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(_METHODS)}, got {method!r}")
    check_alpha(alpha)
    labels, group_a, group_b = _validated(labels, scores_a, scores_b)
    sizes = {"n_runs_a": len(group_a), "n_runs_b": len(group_b)}
    if method == "mean-scores":
        group_a, group_b = [np.mean(group_a, axis=0)], [np.mean(group_b, axis=0)]
    return _paired(labels, group_a, group_b, n_boot, seed, alpha, class_names) | sizes | {
        "method": method, "method_text": _METHODS[method]}


def verdict(result: Mapping[str, Any], name_a: str, name_b: str, digits: int = 3) -> str:
    """One plain sentence from a paired result, e.g. "64 px better than 28 px by 0.021 [0.004, 0.038]".

    "better" only when the whole interval lies on one side of 0; otherwise "not
    distinguishable (delta 0.003 [-0.010, 0.016])".
    """
    delta, (lo, hi) = result["delta"], result["ci"]
    if delta is None or lo is None or hi is None or not all(map(math.isfinite, (delta, lo, hi))):
        return f"{name_a} and {name_b} cannot be compared: no class has both positives and negatives"
    f = f"{{:.{digits}f}}"
    if lo > 0:
        return f"{name_a} better than {name_b} by {f.format(delta)} [{f.format(lo)}, {f.format(hi)}]"
    if hi < 0:
        return f"{name_b} better than {name_a} by {f.format(-delta)} [{f.format(-hi)}, {f.format(-lo)}]"
    return f"not distinguishable (delta {f.format(delta)} [{f.format(lo)}, {f.format(hi)}])"
