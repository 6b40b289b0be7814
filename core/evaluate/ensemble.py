"""Multi-scale ensembles, honestly controlled: does averaging models trained at several sizes add anything
beyond what averaging the same number of models at one size adds?

An ensemble is a virtual run whose test probabilities are the mean of its members' saved test scores (the
members scored the same test images). Ensembles help whatever their members' sizes, so a multi-scale
ensemble is compared, paired on the same images, both with the best single size (seed groups) and with
a *control*: an ensemble of as many members at that best size. Only the control says whether the sizes
add anything. Costs (parameters, FLOPs per image) are the members' sums.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from core import metrics
from core.data import chestmnist as D
from core.runs import groups as G
from core.runs import record as runs

Ensemble = Sequence[str | Path]


def ensemble_scores(members: Ensemble) -> tuple[np.ndarray, np.ndarray]:
    """(mean test probabilities (N, 14), labels (N, 14)) of `members`; PairingError when they did not score
    the same test images."""
    for other in members[1:]:
        if problem := G.images_problem(members[0], other):
            raise metrics.PairingError(problem)
    loaded = [runs.load_scores(m, "test") for m in members]
    return np.mean([s for s, _ in loaded], axis=0), loaded[0][1]


def ensemble_cost(members: Ensemble) -> dict[str, float]:
    """Summed parameters and forward FLOPs per image of the members (from their run configs)."""
    models = [runs.read_config(m).get("model") or {} for m in members]
    return {"params": float(sum(m.get("params") or 0 for m in models)),
            "gflops": float(sum(m.get("flops_per_image") or 0 for m in models)) / 1e9}


def compare_ensembles(a: Sequence[Ensemble], b: Sequence[Ensemble], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The paired test-AUC difference of ensembles `a` minus ensembles `b` (each a list of virtual runs; with
    several per side, seed-aware over them, core.metrics.seed_group_difference), on the same test images."""
    scored_a, scored_b = [ensemble_scores(e) for e in a], [ensemble_scores(e) for e in b]
    labels = scored_a[0][1]
    for _, other in scored_a[1:] + scored_b:
        if not np.array_equal(other, labels):
            raise metrics.PairingError("the ensembles' members did not score the same test images")
    return metrics.seed_group_difference(labels, [s for s, _ in scored_a], [s for s, _ in scored_b], n_boot=n_boot,
                                         seed=seed, class_names=D.CLASS_NAMES[:labels.shape[1]])


def multiscale_study(by_size: Mapping[int, Sequence[str | Path]], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The multi-scale ensembles of one recipe's seed groups `by_size` ({size: runs}) against the best single
    size and against same-size ensembles of as many members.

    The i-th multi-scale ensemble takes the i-th run of every size (k = number of sizes members); the i-th
    control takes k runs of the best size, starting at its i-th run (so controls share members when that
    size has fewer than k x n runs, which makes their spread, and the interval, too narrow: `control_overlap`
    says so). The best single size is the one with the highest mean test AUC.
    """
    sizes = sorted(by_size)
    k = len(sizes)
    n = min(len(by_size[s]) for s in sizes)
    if k < 2 or n < 1:
        raise metrics.PairingError("a multi-scale ensemble needs tested runs at two or more sizes")
    means = {s: float(np.mean([runs.read_test_metrics(r)["auc"] for r in by_size[s]])) for s in sizes}
    best = max(means, key=means.get)
    pool = list(by_size[best])
    multi = [[by_size[s][i] for s in sizes] for i in range(n)]
    control = [[pool[(i + j) % len(pool)] for j in range(k)] for i in range(n)]
    return {"sizes": sizes, "members": k, "ensembles": n, "best_size": best, "best_size_auc": means[best],
            "vs_best_size": compare_ensembles(multi, [[r] for r in pool], n_boot, seed),
            "vs_control": compare_ensembles(multi, control, n_boot, seed),
            "control_overlap": len(pool) < k * n,
            "cost": {"ensemble": ensemble_cost(multi[0]), "best_size": ensemble_cost([pool[0]]),
                     "control": ensemble_cost(control[0])}}
