"""Resampling images: percentile bootstrap intervals of medmnist AUC and ACC for one run.

Every bootstrap in core draws its resamples through ``resample_blocks`` (and ``resample_counts``,
the same resamples as per-image multiplicities), so intervals computed with the same ``n_boot``
and ``seed`` on the same images come from the same resamples: AUC and ACC of one run here, and
two runs' AUCs in core.metrics.paired.

Array conventions are core.metrics.arrays'. Only numpy and scipy: importable without torch.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Iterator

import numpy as np
from scipy import sparse

from core.metrics.arrays import check_inputs, defined_mask, safe_ratio

__all__ = ["bootstrap_auc_ci", "mean_auc_ci", "medmnist_acc_ci"]

# Bootstrap resamples are drawn in blocks so memory stays bounded
# (block * N count matrix) whatever n_boot is.
_BOOT_BLOCK = 256
# A resample's multiplicities sum to N, and so does any group sum of them; below this N they fit
# int16, whose sparse product scipy runs several times faster than int32's.
_INT16_MAX_N = int(np.iinfo(np.int16).max)


def resample_blocks(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Seeded bootstrap resamples of n rows, as (b, n) index arrays of at most _BOOT_BLOCK rows."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, _BOOT_BLOCK):
        yield rng.integers(0, n, size=(min(_BOOT_BLOCK, n_boot - start), n))


def resample_counts(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """The resamples of ``resample_blocks`` as (n, b) multiplicity matrices, one column per resample.

    int16 when n fits (every column sums to n), else int32.
    """
    dtype = np.int16 if n <= _INT16_MAX_N else np.int32
    for idx in resample_blocks(n, n_boot, seed):
        # One bincount per resample writes into a cache-sized row; one bincount over the whole
        # block scatters into b * n counters and is several times slower.
        rows = np.empty((len(idx), n), dtype=dtype)
        for j, row in enumerate(idx):
            rows[j] = np.bincount(row, minlength=n)
        yield np.ascontiguousarray(rows.T)


class ResampledAuc:
    """ROC AUC of every class of one (labels, scores) pair, on resamples given as multiplicities.

    A resample that draws image i k times is the original data with weight k on image i, so the
    Mann-Whitney statistic (pairs with the positive scored above the negative, ties counting
    half) only needs, per resample, the weighted number of negatives below / tied with each
    distinct positive score. Those group sums for all resamples of a block come from one sparse
    (groups x N) @ (N x B) product per class, which avoids re-sorting every resample; the groups
    are built once here and serve every block.

    Args:
        labels: (N, C) bool ground truth.
        scores: (N, C) float scores.
    """

    def __init__(self, labels: np.ndarray, scores: np.ndarray):
        self.n, self.n_classes = labels.shape
        self._groups: dict[int, tuple] = {}
        for c in range(self.n_classes):
            y, s = labels[:, c], scores[:, c]
            if y.all() or not y.any():
                continue
            pos_values = np.unique(s[y])
            k = pos_values.size
            rank = np.searchsorted(pos_values, s, side="left")
            tie = pos_values[np.minimum(rank, k - 1)] == s
            # Group ids: a negative goes to 2*rank (strictly between distinct positive values
            # rank-1 and rank) or 2*rank+1 (tied with value rank); positives with value index r
            # go to 2k+1+r. Only groups that hold an image are kept (most tie groups are empty),
            # renumbered in the same order, so negatives' groups still come first.
            kept, compact = np.unique(np.where(y, 2 * k + 1 + rank, 2 * rank + tie), return_inverse=True)
            n_neg = int(np.searchsorted(kept, 2 * k + 1))
            # For positive value r, negatives' groups before `below[r]` lie strictly below it,
            # those before `upto[r]` below or tied.
            below = np.searchsorted(kept[:n_neg], 2 * np.arange(k) + 1)
            upto = np.searchsorted(kept[:n_neg], 2 * np.arange(k) + 2)
            onehot = [sparse.csr_array((np.ones(self.n, dtype=dt), (compact, np.arange(self.n))),
                                       shape=(kept.size, self.n)) for dt in (np.int16, np.int32)]
            self._groups[c] = (n_neg, below, upto, *onehot)

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        """(B, C) AUCs for (N, B) non-negative integer multiplicities, one column per resample.

        NaN where a resample has no positive or no negative of that class. int16 counts are used
        as they are, so their column sums must fit int16 (``resample_counts`` sees to it); any
        other integer type is computed in int32.
        """
        small = counts.dtype == np.int16
        if not small:
            counts = np.asarray(counts, dtype=np.int32)
        out = np.full((counts.shape[1], self.n_classes), np.nan)
        for c, (n_neg, below, upto, onehot16, onehot32) in self._groups.items():
            # (B, groups): numpy's cumsum along the contiguous axis is many times faster than
            # along axis 0, and the transpose of small integers is cheap.
            sums = np.ascontiguousarray(((onehot16 if small else onehot32) @ counts).T)
            w_pos = sums[:, n_neg:]
            # neg_cum[:, m] = weighted negatives in the first m groups.
            neg_cum = np.zeros((sums.shape[0], n_neg + 1), dtype=np.int32 if small else np.int64)
            np.cumsum(sums[:, :n_neg], axis=1, out=neg_cum[:, 1:])
            twice_u = np.einsum("bk,bk->b", w_pos, neg_cum[:, below] + neg_cum[:, upto], dtype=np.int64)
            n_pairs = w_pos.sum(axis=1, dtype=np.int64) * neg_cum[:, -1]
            out[:, c] = safe_ratio(twice_u, 2 * n_pairs, np.nan)
        return out

    def full(self) -> np.ndarray:
        """(C,) AUCs on the images as they are (every multiplicity 1): the same code as the resamples."""
        return self(np.ones((self.n, 1), dtype=np.int16 if self.n <= _INT16_MAX_N else np.int32))[0]


def resampled_aucs(aucs: Sequence[ResampledAuc], n_boot: int, seed: int) -> list[np.ndarray]:
    """(n_boot, C) per-class AUCs of each prepared score array on the same seeded resamples of the images.

    Args:
        aucs: ``ResampledAuc`` of each score array, all over the same N images (e.g. two runs
            scored on the same test set).
        n_boot: number of resamples.
        seed: seed of ``resample_blocks``.

    Returns:
        One (n_boot, C) array per score array, NaN where a resample lost all positives or all
        negatives of a class.
    """
    blocks: list[list[np.ndarray]] = [[] for _ in aucs]
    for counts in resample_counts(aucs[0].n, n_boot, seed):
        for auc, out in zip(aucs, blocks):
            out.append(auc(counts))
    return [np.concatenate(b, axis=0) for b in blocks]


def percentile_ci(samples: np.ndarray, alpha: float) -> np.ndarray:
    """(2,) percentile interval of the finite entries of a 1-D array; NaNs if there are none."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return np.array([np.nan, np.nan])
    return np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])


def check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def per_class_ci(boot: np.ndarray, alpha: float) -> np.ndarray:
    """(C, 2) percentile intervals of each column of (n_boot, C) resampled values."""
    return np.stack([percentile_ci(boot[:, c], alpha) for c in range(boot.shape[1])])


def mean_ci(boot: np.ndarray, defined: np.ndarray, alpha: float) -> np.ndarray:
    """(2,) percentile interval of the mean over the `defined` columns of (n_boot, C) resampled values."""
    # A resample where a class defined on the full data lost all its positives or
    # negatives gets a NaN mean and is skipped, so every bootstrap mean averages
    # the same classes as the point estimate.
    if not defined.any():
        return np.array([np.nan, np.nan])
    return percentile_ci(boot[:, defined].mean(axis=1), alpha)


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
    check_alpha(alpha)
    labels, scores = check_inputs(labels, scores)
    correct = ((scores > 0.5) == labels).mean(axis=1)  # per-sample share of labels right
    boot = np.concatenate([correct[idx].mean(axis=1) for idx in resample_blocks(len(correct), n_boot, seed)])
    return percentile_ci(boot, alpha)


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
    check_alpha(alpha)
    labels, scores = check_inputs(labels, scores)
    return per_class_ci(resampled_aucs([ResampledAuc(labels, scores)], n_boot, seed)[0], alpha)


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
    check_alpha(alpha)
    labels, scores = check_inputs(labels, scores)
    return mean_ci(resampled_aucs([ResampledAuc(labels, scores)], n_boot, seed)[0], defined_mask(labels), alpha)
