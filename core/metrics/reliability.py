"""Calibration of predicted probabilities: reliability diagrams, expected calibration error, Brier score.

A model is calibrated when, of the images it gives probability p for a finding, a share p has
the finding. Bins are equal-width on [0, 1] (the last one closed), as in Naeini et al. (2015)
and Guo et al. (2017); ECE is the count-weighted mean gap |mean score - share positive| over the
bins, Brier the mean squared difference between probability and 0/1 label.

Per class, a class without positives or without negatives in the split (an undefined class, as
for AUC) gets NaN, and it is never part of a mean or of the pooled figures. Array conventions
are core.metrics.arrays'.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from core.metrics.arrays import check_inputs, defined_mask, nanmean_or_nan, safe_ratio

__all__ = ["reliability_bins", "expected_calibration_error", "brier_score", "calibration"]

N_BINS = 10


def _probabilities(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """check_inputs for (N,) or (N, C) arrays, plus the check that scores are probabilities."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    if labels.ndim == 1 and scores.ndim == 1:
        labels, scores = labels[:, None], scores[:, None]
    labels, scores = check_inputs(labels, scores)
    if scores.size and (scores.min() < 0 or scores.max() > 1):
        raise ValueError("calibration needs probabilities in [0, 1] (sigmoid outputs), not logits")
    return labels, scores


def _binned(labels: np.ndarray, scores: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    """(C, n_bins) count, mean score and share positive of each class's bins (NaN where empty)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    n_classes = labels.shape[1]
    which = np.minimum((scores * n_bins).astype(np.int64), n_bins - 1)
    flat = (which + n_bins * np.arange(n_classes)).ravel()
    size = n_classes * n_bins

    def total(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(flat, weights=weights, minlength=size).reshape(n_classes, n_bins)

    count = total(None).astype(np.int64)
    return {"count": count,
            "mean_score": safe_ratio(total(scores.ravel()), count, np.nan),
            "frac_pos": safe_ratio(total(labels.ravel().astype(np.float64)), count, np.nan)}


def _ece(bins: dict[str, np.ndarray]) -> np.ndarray:
    """ECE of each row of `_binned`'s arrays (NaN for a row with no entries)."""
    gap = np.where(bins["count"] > 0, np.abs(bins["mean_score"] - bins["frac_pos"]), 0.0)
    weights = bins["count"].sum(axis=1)
    return safe_ratio((bins["count"] * gap).sum(axis=1), weights, np.nan)


def reliability_bins(labels: np.ndarray, scores: np.ndarray, n_bins: int = N_BINS) -> dict[str, np.ndarray]:
    """Reliability-diagram data of all the given (label, probability) pairs together.

    Pass one class's columns for that class's diagram, or several for a pooled one.

    Args:
        labels: (N,) or (N, C) 0/1 ground truth.
        scores: same shape, probabilities in [0, 1].
        n_bins: equal-width bins on [0, 1].

    Returns:
        dict: ``edges`` (n_bins + 1,); ``count`` (n_bins,) pairs per bin; ``mean_score`` and
        ``frac_pos`` (n_bins,), the bin's mean probability and share of positives, NaN where
        the bin is empty.
    """
    labels, scores = _probabilities(labels, scores)
    bins = _binned(labels.reshape(-1, 1), scores.reshape(-1, 1), n_bins)
    return {"edges": np.linspace(0.0, 1.0, n_bins + 1)} | {k: v[0] for k, v in bins.items()}


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, n_bins: int = N_BINS) -> float:
    """ECE of all the given pairs together: sum over bins of (pairs in bin / pairs) x |mean score - share positive|.

    Labels (0, 1, 1, 0) with probabilities (.2, .2, .8, .8) in 2 bins have gaps |.2 - .5| and
    |.8 - .5|, each for half the pairs: ECE 0.3.
    """
    labels, scores = _probabilities(labels, scores)
    return float(_ece(_binned(labels.reshape(-1, 1), scores.reshape(-1, 1), n_bins))[0])


def brier_score(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean squared difference between probability and 0/1 label over all the given pairs (0 is perfect)."""
    labels, scores = _probabilities(labels, scores)
    return float(((scores - labels) ** 2).mean())


def calibration(labels: np.ndarray, scores: np.ndarray, n_bins: int = N_BINS) -> dict[str, Any]:
    """Per-class and pooled calibration of multi-label probabilities.

    Args:
        labels: (N, C) 0/1 ground truth.
        scores: (N, C) probabilities in [0, 1].
        n_bins: equal-width bins on [0, 1].

    Returns:
        dict with ``edges`` (n_bins + 1,); ``defined`` (C,) bool and ``n_pos`` (C,) positives per
        class; per class, (C,) ``ece`` and ``brier`` and (C, n_bins) ``count``, ``mean_score``,
        ``frac_pos`` (all NaN / 0 counts for an undefined class); ``ece_macro`` and
        ``brier_macro``, the means over defined classes; and ``pooled``, the
        ``reliability_bins`` of every defined class's pairs together plus their ``ece`` and
        ``brier``. NaNs where no class is defined.
    """
    labels, scores = _probabilities(labels, scores)
    defined = defined_mask(labels)
    bins = _binned(labels, scores, n_bins)
    for key in ("mean_score", "frac_pos"):
        bins[key][~defined] = np.nan
    bins["count"][~defined] = 0
    ece = np.where(defined, _ece(bins), np.nan)
    brier = np.where(defined, ((scores - labels) ** 2).mean(axis=0), np.nan)
    pooled_bins = _binned(labels[:, defined].reshape(-1, 1), scores[:, defined].reshape(-1, 1), n_bins)
    pooled = {"edges": np.linspace(0.0, 1.0, n_bins + 1)} | {k: v[0] for k, v in pooled_bins.items()}
    pooled["ece"] = float(_ece(pooled_bins)[0])
    pooled["brier"] = nanmean_or_nan(brier)  # every class has N pairs: the pooled mean is the mean of class means
    return {"edges": pooled["edges"], "defined": defined, "n_pos": labels.sum(axis=0), "ece": ece, "brier": brier,
            **bins, "ece_macro": nanmean_or_nan(ece), "brier_macro": pooled["brier"], "pooled": pooled}
