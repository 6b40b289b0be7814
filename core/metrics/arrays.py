"""The (labels, scores) conventions every metric module shares: validation and NaN-safe helpers.

``labels`` is an (N, C) array of 0/1 (int, bool or float), one column per finding; ``scores`` an
(N, C) float array of per-class probabilities. A class is *defined* in a split when it has both
positives and negatives there: only then do AUC, sensitivity/specificity and the calibration
figures exist, and only defined classes are ever averaged.

Kept apart from core.metrics so that core.metrics.bootstrap, core.metrics.paired and core.metrics.reliability can use it
while core.metrics re-exports their public names, without an import cycle.
"""
from __future__ import annotations

import math

import numpy as np


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


def defined_mask(labels: np.ndarray) -> np.ndarray:
    """(C,) bool: True where the class has both positives and negatives, i.e. AUC exists."""
    n_pos = labels.sum(axis=0)
    return (n_pos > 0) & (n_pos < labels.shape[0])


def safe_ratio(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    """num / den elementwise, ``fill`` where den == 0, without a division warning."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, fill, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def nanmean_or_nan(values: np.ndarray) -> float:
    """Mean of the finite entries; NaN (and no RuntimeWarning) when there are none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan
