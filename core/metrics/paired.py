"""Paired comparisons: is run (or recipe) A's test AUC really different from B's on the same images?

Two runs scored on the same test images share every image's difficulty, so their difference is
resampled *paired*: each bootstrap resample of the images is applied to both, and the spread of
the difference is far smaller than two separate intervals suggest. Resamples are core.metrics.bootstrap's
(the same seed gives the same resamples as the single-run intervals); array conventions are
core.metrics.arrays'.

A comparison of two groups of seeds (two recipes) also carries the seed-to-seed spread: treating
a recipe's five seeds as fixed calls far too many equal recipes different. Its variance is the
paired image-bootstrap variance of the difference of the groups' mean AUCs plus each group's
seed variance over its number of runs (the two levels of a two-level design), and its interval and
p are Student t with Welch-Satterthwaite degrees of freedom. docs/metrics.md says what each covers.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from scipy import stats

from core.errors import UserError
from core.metrics.arrays import check_inputs
from core.metrics.bootstrap import ResampledAuc, check_alpha, resampled_aucs

__all__ = ["MIN_POSITIVES", "PairingError", "check_same_images", "eligible_classes", "paired_auc_difference",
           "seed_group_difference", "t_interval", "verdict"]

GroupMethod = Literal["mean-auc", "mean-scores"]
_METHODS: dict[str, str] = {
    "mean-auc": "each group's AUC is the mean of its runs' AUCs, on every resample",
    "mean-scores": "each group's probabilities are averaged per image over its runs (an ensemble) before AUC",
}
# Below this many test positives (or negatives) a class's AUC moves by whole steps of 1 / n_pos and
# its resamples often lose every positive; a mean that keeps it undercovers (docs/metrics.md).
MIN_POSITIVES = 5
TOO_FEW = "too few positives"


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


def eligible_classes(labels: np.ndarray, min_positives: int = MIN_POSITIVES) -> np.ndarray:
    """(C,) bool: classes with at least `min_positives` positives and as many negatives in `labels`.

    Args:
        labels: (N, C) 0/1 test labels.
        min_positives: the least number of positives (and of negatives) a compared class has.
    """
    if min_positives < 1:
        raise ValueError(f"min_positives must be at least 1, got {min_positives}")
    n_pos = np.asarray(labels).sum(axis=0)
    return (n_pos >= min_positives) & (len(labels) - n_pos >= min_positives)


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


def t_interval(delta: float, image_var: float, seed_var_a: float, seed_var_b: float, k_a: int, k_b: int,
               alpha: float) -> dict[str, float]:
    """Standard error, degrees of freedom, interval and two-sided p of a difference from its variance parts.

    The variance is ``image_var + seed_var_a / k_a + seed_var_b / k_b``. The image part is estimated
    from many resamples and counts as known; the seed parts carry k - 1 degrees of freedom each, pooled
    by Welch-Satterthwaite. When only one group has several runs its seed variance stands for both
    (seed_var_b NaN, say), with that group's k - 1 degrees of freedom; when neither has, there is no
    seed part and the interval is the normal one (the comparison is of these runs only).

    Args:
        delta: the observed difference.
        image_var: paired image-resampling variance of the difference.
        seed_var_a, seed_var_b: sample variance (ddof 1) of each group's per-run values; NaN for a single run.
        k_a, k_b: runs per group.
        alpha: 1 - confidence level.

    Returns:
        dict: ``se``, ``df`` (inf when no seed part), ``ci_low``, ``ci_high``, ``p_value``.
    """
    known = [(v, k) for v, k in ((seed_var_a, k_a), (seed_var_b, k_b)) if k > 1 and math.isfinite(v)]
    if len(known) == 2:
        parts = [(v / k, k - 1) for v, k in known]
    else:  # one group's spread stands for both, or there is none
        parts = [(v * (1 / k_a + 1 / k_b), k - 1) for v, k in known]
    seed_term = sum(v for v, _ in parts)
    var = image_var + seed_term
    se = math.sqrt(var) if math.isfinite(var) else math.nan
    den = sum(v * v / dof for v, dof in parts)
    df = var * var / den if den > 0 else math.inf
    if not math.isfinite(delta) or not math.isfinite(se):
        return {"se": se, "df": df, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan}
    if se == 0:
        return {"se": 0.0, "df": df, "ci_low": delta, "ci_high": delta, "p_value": 1.0 if delta == 0 else 0.0}
    q = float(stats.t.ppf(1 - alpha / 2, df))
    return {"se": se, "df": df, "ci_low": delta - q * se, "ci_high": delta + q * se,
            "p_value": float(2 * stats.t.sf(abs(delta) / se, df))}


def _seed_var(values: np.ndarray) -> float:
    """Sample variance over runs (axis 0); NaN for one run."""
    return float(np.var(values, ddof=1)) if len(values) > 1 else math.nan


def _paired(labels: np.ndarray, group_a: list[np.ndarray], group_b: list[np.ndarray], n_boot: int, seed: int,
            alpha: float, class_names: Sequence[str] | None, min_positives: int) -> dict[str, Any]:
    """Paired difference of two groups of score arrays, a group's AUC being the mean of its arrays' AUCs."""
    n, n_classes = labels.shape
    names = [str(c) for c in range(n_classes)] if class_names is None else [str(x) for x in class_names]
    if len(names) != n_classes:
        raise ValueError(f"got {len(names)} class names for {n_classes} score columns")
    used = eligible_classes(labels, min_positives)
    k_a, k_b = len(group_a), len(group_b)
    aucs = [ResampledAuc(labels, s) for s in group_a + group_b]
    boots = np.stack(resampled_aucs(aucs, n_boot, seed))  # (runs, n_boot, C)
    full = np.stack([a.full() for a in aucs])  # (runs, C)
    boot_delta = boots[:k_a].mean(axis=0) - boots[k_a:].mean(axis=0)  # (n_boot, C)
    class_delta = full[:k_a].mean(axis=0) - full[k_a:].mean(axis=0)
    # A resample in which a used class lost all its positives or negatives has a NaN mean and is
    # skipped, so every resampled mean averages the same classes as the point estimate.
    mean_boot = boot_delta[:, used].mean(axis=1) if used.any() else np.full(n_boot, np.nan)
    n_pos = labels.sum(axis=0)
    per_class = []
    for c in range(n_classes):
        row = {"class": names[c], "n_pos": int(n_pos[c]), "auc_a": float(full[:k_a, c].mean()),
               "auc_b": float(full[k_a:, c].mean()), "delta": float(class_delta[c])}
        if used[c]:
            d = boot_delta[:, c][np.isfinite(boot_delta[:, c])]
            ti = t_interval(row["delta"], float(np.var(d, ddof=1)) if d.size > 1 else math.nan,
                            _seed_var(full[:k_a, c]), _seed_var(full[k_a:, c]), k_a, k_b, alpha)
            row |= {"ci_low": ti["ci_low"], "ci_high": ti["ci_high"], "p_value": ti["p_value"], "status": "compared"}
        else:
            row |= {"ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan, "status": TOO_FEW}
        per_class.append(row)
    run_means = full[:, used].mean(axis=1) if used.any() else np.full(k_a + k_b, np.nan)
    delta = float(class_delta[used].mean()) if used.any() else math.nan
    finite = mean_boot[np.isfinite(mean_boot)]
    image_var = float(np.var(finite, ddof=1)) if finite.size > 1 else math.nan
    seed_a, seed_b = _seed_var(run_means[:k_a]), _seed_var(run_means[k_a:])
    ti = t_interval(delta, image_var, seed_a, seed_b, k_a, k_b, alpha)
    excluded = [{"class": names[c], "n_pos": int(n_pos[c]), "n_neg": int(n - n_pos[c]),
                 "reason": f"{TOO_FEW}: {int(min(n_pos[c], n - n_pos[c]))} < {min_positives}"
                 + (" (negatives)" if n_pos[c] >= min_positives else "")} for c in np.flatnonzero(~used)]
    return {
        "delta": delta, "ci": (ti["ci_low"], ti["ci_high"]), "p_value": ti["p_value"], "se": ti["se"], "df": ti["df"],
        "auc_a": float(run_means[:k_a].mean()), "auc_b": float(run_means[k_a:].mean()),
        "image_var": image_var, "seed_var_a": seed_a, "seed_var_b": seed_b,
        "per_class": per_class, "n_images": int(n), "min_positives": int(min_positives),
        "classes_used": [names[c] for c in np.flatnonzero(used)],
        "classes_excluded": [e["class"] for e in excluded], "excluded": excluded,
        "n_boot": int(n_boot), "n_boot_used": int(finite.size), "seed": int(seed), "ci_level": 1 - alpha,
        "scope": "recipes" if math.isfinite(ti["df"]) else "runs",
    }


def paired_auc_difference(
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    class_names: Sequence[str] | None = None,
    min_positives: int = MIN_POSITIVES,
) -> dict[str, Any]:
    """Paired bootstrap of mean AUC(a) - AUC(b) for two runs scored on the same images.

    Every resample draws N images with replacement and scores both runs on it, so what the
    images share (their difficulty) cancels in the difference. The interval is delta ± z * se,
    se the standard deviation of the resampled deltas, and p the matching normal p (no floor at
    1 / n_boot). It covers a new draw of test images for *these two runs*: it says nothing about
    another seed of either recipe (``seed_group_difference`` does, given several seeds).

    Args:
        labels: (N, C) 0/1 test labels (check first, with ``check_same_images``, that both
            runs were scored against the same ones).
        scores_a, scores_b: (N, C) probabilities of runs a and b for those images.
        n_boot: resamples.
        seed: resampling seed (the same seed gives the resamples of ``mean_auc_ci``).
        alpha: 1 - confidence level.
        class_names: C names for ``per_class`` and ``classes_used`` (default "0".."C-1").
        min_positives: a class enters the compared mean only with at least this many test
            positives and as many negatives.

    Returns:
        dict: ``delta`` (mean AUC of a minus mean AUC of b over ``classes_used``), ``ci`` (low,
        high), ``p_value`` (two-sided), ``se``, ``df`` (inf: normal), ``auc_a``, ``auc_b``,
        ``image_var``, ``seed_var_a``, ``seed_var_b`` (NaN: one run); ``per_class``, one dict per
        class (``class, n_pos, auc_a, auc_b, delta, ci_low, ci_high, p_value, status``: status
        "compared", or "too few positives" with NaN interval and p); ``n_images``,
        ``min_positives``, ``classes_used``, ``classes_excluded``, ``excluded`` (a dict per left-out
        class: ``class, n_pos, n_neg, reason``), ``n_boot``, ``n_boot_used`` (resamples in which
        every used class kept positives and negatives), ``seed``, ``ci_level``, ``scope``
        ("runs"), ``method`` ("single runs"). Floats are plain Python floats (NaN where
        undefined; core.files.to_jsonable makes them None).

    Raises:
        PairingError (a ValueError) when the shapes of labels and scores differ.
    """
    check_alpha(alpha)
    labels, group_a, group_b = _validated(labels, [scores_a], [scores_b])
    return _paired(labels, group_a, group_b, n_boot, seed, alpha, class_names, min_positives) | {
        "method": "single runs", "n_runs_a": 1, "n_runs_b": 1}


def seed_group_difference(
    labels: np.ndarray,
    scores_a: Sequence[np.ndarray],
    scores_b: Sequence[np.ndarray],
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    class_names: Sequence[str] | None = None,
    method: GroupMethod = "mean-auc",
    min_positives: int = MIN_POSITIVES,
) -> dict[str, Any]:
    """The test-AUC difference between two recipes, each given as a group of runs (seeds), on the same images.

    With ``method="mean-auc"`` (default) a group's AUC is the mean of its runs' AUCs, so
    ``delta`` is the difference of the two groups' mean test AUCs that a table of mean ± sd
    shows. Its variance has two levels: the paired image-bootstrap variance of that difference
    (the same resamples for every run) plus seed_var_a / k_a + seed_var_b / k_b, the spread of
    the runs' mean AUCs within each group; interval and p are Student t with Welch-Satterthwaite
    degrees of freedom. So the interval covers what another set of seeds and another draw of test
    images would give: a statement about the recipes. With one run in one group the other group's
    seed spread stands for both; with one run in each (and with ``"mean-scores"``, where each group's
    probabilities are first averaged per image into one ensemble) there is no seed spread to use,
    ``scope`` is "runs" and the result compares those runs (or ensembles) only.

    Args:
        labels: (N, C) 0/1 test labels shared by every run (see ``check_same_images``).
        scores_a, scores_b: the (N, C) probabilities of each run of group a and of group b.
        n_boot, seed, alpha, class_names, min_positives: as in ``paired_auc_difference``.
        method: "mean-auc" or "mean-scores".

    Returns:
        ``paired_auc_difference``'s dict, with ``scope`` "recipes" or "runs", ``method``,
        ``method_text`` (one sentence saying how the groups were combined and what the interval
        covers), ``n_runs_a`` and ``n_runs_b``.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(_METHODS)}, got {method!r}")
    check_alpha(alpha)
    labels, group_a, group_b = _validated(labels, scores_a, scores_b)
    sizes = {"n_runs_a": len(group_a), "n_runs_b": len(group_b)}
    if method == "mean-scores":
        group_a, group_b = [np.mean(group_a, axis=0)], [np.mean(group_b, axis=0)]
    res = _paired(labels, group_a, group_b, n_boot, seed, alpha, class_names, min_positives)
    covers = ("the interval covers other seeds and other test images (seed and image variance)"
              if res["scope"] == "recipes" else "the interval covers other test images for these runs only")
    return res | sizes | {"method": method, "method_text": f"{_METHODS[method]}; {covers}"}


def _fmt_p(p: float) -> str:
    return "p n/a" if p is None or not math.isfinite(p) else f"p={p:.2g}" if p >= 1e-4 else f"p={p:.1e}"


def winner(result: Mapping[str, Any], p_adjusted: float | None = None, alpha: float | None = None) -> int | None:
    """Which side a paired result decides for: 1 (a better), -1 (b better), 0 (not distinguishable), None (no
    difference: no class could enter the mean). The p that decides is ``p_adjusted`` where given (the p adjusted
    within the comparison's family), else the raw ``p_value``, against ``alpha`` (default 1 - ``ci_level``)."""
    delta, (lo, hi) = result["delta"], result["ci"]
    if delta is None or lo is None or hi is None or not all(map(math.isfinite, (delta, lo, hi))):
        return None
    alpha = 1 - result.get("ci_level", 0.95) if alpha is None else alpha
    p = result.get("p_value") if p_adjusted is None else p_adjusted
    decided = p is not None and math.isfinite(p) and p < alpha
    return int(np.sign(delta)) if decided else 0


def verdict(result: Mapping[str, Any], name_a: str, name_b: str, digits: int = 3,
            p_adjusted: float | None = None, alpha: float | None = None) -> str:
    """One plain sentence from a paired result, e.g. "64 px better than 28 px by 0.021 [0.004, 0.038]".

    "better" only when ``winner`` decides for a side; otherwise "not distinguishable (delta 0.003 [-0.010,
    0.016])". A result whose ``scope`` is "runs" says it compares those two runs, not their recipes.
    """
    side = winner(result, p_adjusted, alpha)
    if side is None:
        return (f"{name_a} and {name_b} cannot be compared: no class has {result.get('min_positives', 1)} "
                "or more test positives and negatives")
    delta, (lo, hi) = result["delta"], result["ci"]
    f = f"{{:.{digits}f}}"
    runs_only = " (these two runs, not their recipes)" if result.get("scope") == "runs" else ""
    if side > 0:
        return f"{name_a} better than {name_b} by {f.format(delta)} [{f.format(lo)}, {f.format(hi)}]{runs_only}"
    if side < 0:
        return f"{name_b} better than {name_a} by {f.format(-delta)} [{f.format(-hi)}, {f.format(-lo)}]{runs_only}"
    return f"not distinguishable (delta {f.format(delta)} [{f.format(lo)}, {f.format(hi)}]){runs_only}"
