"""Images or pixels: test AUC against training compute over a grid of sizes x training subsets.

With a fixed budget, is it better to train on more images or on more pixels? Each cell of the grid
(one recipe at one size and one training subset, its seeds averaged) is a point: test AUC (medmnist's
mean per-class ROC AUC, test set) against its training compute, counted two ways:

- training GFLOP = TRAIN_FACTOR x forward FLOPs per image (core.models.flops_per_image: convolutions
  and linear layers, a multiply-add = 2) x training images per epoch x epochs done. TRAIN_FACTOR = 3 is
  the usual convention (the backward pass costs about twice the forward); validation is not counted.
- measured seconds: the sum of the run's logged epoch times (training + validation, on the machine
  that trained), so they carry that machine's speed and a validation cost every cell pays alike.

The Pareto frontier is the cells no other cell dominates (another with no more compute and no lower
AUC, better in one). "At equal compute" pairs a cell with more images at fewer pixels against one with
more pixels at fewer images whose training GFLOP lie within EQUAL_COMPUTE of each other (a factor, e.g.
28 px on all images against 64 px on a quarter: seed-cnn's 64 px costs 5.2x its 28 px per image); the
pairs are one family, compared paired and seed-aware (core.study.comparisons.compare, p adjusted within
the family, Holm by default). The study report and the Compare page both call `frontier`.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.runs import groups as G
from core.runs import record as runs
from core.study import comparisons as C

TRAIN_FACTOR = 3  # training FLOPs per image = forward + backward (about 2x forward)
EQUAL_COMPUTE = 2.0  # two cells' training GFLOP within this factor count as "roughly equal compute"
FAMILY = "equal compute"
ALPHA = 0.05
CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg"}
CONVENTION = (f"training GFLOP = {TRAIN_FACTOR} x forward FLOPs per image (convolutions and linear layers, a "
              "multiply-add = 2) x training images per epoch x epochs done; validation not counted")
SECONDS_TEXT = "measured seconds: sum of the logged epoch times (training + validation) on the machine that trained"



def gflop_text(x: float) -> str:
    """Three significant digits, never an exponent a reader must decode ("1,990", not "1.99e+03")."""
    r = float(f"{x:.3g}")
    return f"{r:,.0f}" if r >= 100 else f"{r:.3g}"

@dataclass(frozen=True)
class RunPoint:
    """One finished run's place in the grid."""

    run_dir: str
    recipe: str  # core.runs.groups.recipe_key without the subset: the cells one grid compares
    size: int
    seed: int
    n_train: int  # training images per epoch
    split_train: int  # images in the training split
    train_gflop: float
    seconds: float | None
    test_auc: float | None


@dataclass(frozen=True)
class Cell:
    """One recipe at one size and one subset, its seeds averaged."""

    recipe: str
    size: int
    n_train: int
    fraction: float  # of the training split
    runs: tuple[str, ...]
    seeds: tuple[int, ...]
    auc: float  # mean test AUC over seeds
    auc_sd: float | None  # over seeds; None for one seed
    train_gflop: float  # mean over seeds
    seconds: float | None  # mean over seeds

    @property
    def label(self) -> str:
        return f"{self.size} px · {_share(self.fraction)} ({self.n_train:,} images)"


def training_gflop(flops_per_image: float, images_per_epoch: int, epochs: int) -> float:
    """Training compute in GFLOP under CONVENTION."""
    return TRAIN_FACTOR * flops_per_image * images_per_epoch * epochs / 1e9


def run_point(run_dir: str | Path) -> RunPoint:
    """A finished run's grid point from its config, epoch log and test metrics (RunError if unreadable)."""
    config = runs.read_config(run_dir)
    train, rows = config["train"], runs.read_metrics(run_dir)
    split = int(config["data"]["n"]["train"])
    n_train = min(train.get("subset") or split, split)
    seconds = [r.get("seconds") for r in rows]
    test = runs.read_test_metrics(run_dir) if runs.has_test_metrics(run_dir) else {}
    recipe = json.loads(G.recipe_key(train))
    recipe.pop("subset", None)
    return RunPoint(str(run_dir), json.dumps(recipe, sort_keys=True), int(train["size"]), int(train["seed"]),
                    n_train, split, training_gflop(config["model"]["flops_per_image"], n_train, len(rows)),
                    float(sum(seconds)) if rows and None not in seconds else None, test.get("auc"))


def cells(points: Sequence[RunPoint]) -> list[Cell]:
    """Tested points grouped by (recipe, size, training images), each seed once; by compute."""
    groups: dict[tuple[str, int, int], list[RunPoint]] = {}
    for p in points:
        if p.test_auc is None:
            continue
        group = groups.setdefault((p.recipe, p.size, p.n_train), [])
        if p.seed not in [q.seed for q in group]:  # a copied run folder is the same seed again
            group.append(p)
    out = []
    for (recipe, size, n), ps in groups.items():
        aucs = np.array([p.test_auc for p in ps], dtype=float)
        secs = [p.seconds for p in ps]
        out.append(Cell(recipe, size, n, n / ps[0].split_train, tuple(p.run_dir for p in ps),
                        tuple(p.seed for p in ps), float(aucs.mean()),
                        float(aucs.std(ddof=1)) if len(aucs) > 1 else None,
                        float(np.mean([p.train_gflop for p in ps])),
                        None if None in secs else float(np.mean(secs))))
    return sorted(out, key=lambda c: (c.train_gflop, c.size))


def subsets(points: Sequence[RunPoint]) -> int:
    """The most training-set sizes any one recipe has among `points`: above 1, an images-or-pixels grid. Runs of
    other data folders (other split sizes) are other recipes, so they make no grid."""
    by_recipe: dict[str, set[int]] = {}
    for p in points:
        by_recipe.setdefault(p.recipe, set()).add(p.n_train)
    return max(map(len, by_recipe.values()), default=0)


def _names(grid: Sequence[Cell]) -> dict[Cell, str]:
    """Each cell's label, its model in front where the cells are of several recipes."""
    several = len({c.recipe for c in grid}) > 1
    return {c: (json.loads(c.recipe).get("model", "?") + " " if several else "") + c.label for c in grid}


def pareto(compute: Sequence[float], auc: Sequence[float]) -> np.ndarray:
    """True where no other point has compute <= and AUC >= with one of them strict (non-dominated)."""
    x, y = np.asarray(compute, dtype=float), np.asarray(auc, dtype=float)
    dominated = (x[None, :] <= x[:, None]) & (y[None, :] >= y[:, None]) & ((x[None, :] < x[:, None])
                                                                          | (y[None, :] > y[:, None]))
    return ~dominated.any(axis=1)


def equal_compute_pairs(grid: Sequence[Cell], tolerance: float = EQUAL_COMPUTE) -> list[tuple[Cell, Cell]]:
    """(more images at fewer pixels, more pixels on fewer images) of one recipe whose training GFLOP
    lie within `tolerance` of each other, the closest in compute first."""
    pairs = [(a, b) for a in grid for b in grid if a.recipe == b.recipe and a.size < b.size and a.n_train > b.n_train
             and max(a.train_gflop, b.train_gflop) <= tolerance * min(a.train_gflop, b.train_gflop)]
    return sorted(pairs, key=lambda ab: abs(math.log(ab[0].train_gflop / ab[1].train_gflop)))


def _share(fraction: float) -> str:
    """'all', '1/4', '1/2' or '30%' of the images."""
    if fraction >= 0.995:
        return "all images"
    k = round(1 / fraction)
    return f"1/{k} of the images" if abs(1 / fraction - k) < 0.05 * k else f"{fraction:.0%} of the images"


def sentence(row: Mapping[str, Any], a: Cell, b: Cell, model: str = "") -> str:
    """The equal-compute answer in words: which of the pair wins (on the family-adjusted p), or neither; `model`
    goes in front where the cells are of several recipes."""
    images, pixels = a.n_train / b.n_train, (b.size / a.size) ** 2
    at = f"{model + ': ' if model else ''}At ~{gflop_text(math.sqrt(a.train_gflop * b.train_gflop))} GFLOP of training"
    more_images = f"{images:.1f}x the images at {a.size} px ({_share(a.fraction)})"
    more_pixels = f"{pixels:.1f}x the pixels at {b.size} px ({_share(b.fraction)})"
    if not row.get("paired"):
        return f"{at}, {more_images} and {more_pixels} were not compared: {row.get('verdict', '')}"
    delta, lo, hi, p = row["delta"], row["ci_low"], row["ci_high"], row["p_adjusted"]
    stat = f"{CORRECTION_NAMES.get(row['correction'], row['correction'])}-adjusted p {p:.2g}" + (
        "; one seed per cell: these runs, not their recipes" if row.get("scope") == "runs" else "")
    if p < ALPHA and delta > 0:
        return f"{at}, {more_images} beats {more_pixels} by {delta:.3f} test AUC [95% CI {lo:.3f}, {hi:.3f}] ({stat})."
    if p < ALPHA and delta < 0:
        return (f"{at}, {more_pixels} beats {more_images} by {-delta:.3f} test AUC [95% CI {-hi:.3f}, {-lo:.3f}] "
                f"({stat}).")
    return (f"{at}, {more_images} and {more_pixels} are not distinguishable: delta {delta:+.3f} test AUC "
            f"[95% CI {lo:+.3f}, {hi:+.3f}] ({stat}).")


def frontier(points: Sequence[RunPoint], n_boot: int = 2000, correction: str = "holm",
             tolerance: float = EQUAL_COMPUTE, difference: Callable[..., dict] | None = None) -> dict[str, Any]:
    """The images-or-pixels answer for finished runs' points.

    Args:
        points: run_point of each run (untested runs are left out).
        n_boot, correction: as core.study.comparisons.compare (image resamples; "holm" or "bh" over the pairs).
        tolerance: the factor of training GFLOP within which two cells count as equal compute.
        difference: as compare's (default core.runs.groups.group_difference; the app passes a cached one).

    Returns:
        ``cells`` (Cell fields, label, and ``front_gflop`` / ``front_seconds``: on the Pareto frontier of
        that axis), ``pairs`` (compare's row of each equal-compute pair, with ``sentence`` and both cells'
        labels and GFLOP), ``sentences``, ``subsets`` (how many subset sizes), and the conventions in words.
    """
    grid = cells(points)
    front = pareto([c.train_gflop for c in grid], [c.auc for c in grid]) if grid else np.array([], bool)
    timed = [i for i, c in enumerate(grid) if c.seconds is not None]
    front_s = np.zeros(len(grid), bool)
    if timed:
        front_s[timed] = pareto([grid[i].seconds for i in timed], [grid[i].auc for i in timed])
    pairs = equal_compute_pairs(grid, tolerance)
    plan = [{"family": FAMILY, "kind": "more images vs more pixels", "a": a, "b": b} for a, b in pairs]
    names = _names(grid)
    rows = C.compare(plan, {c: list(c.runs) for c in grid}, names, n_boot=n_boot,
                     correction=correction, alpha=ALPHA, difference=difference) if plan else []
    for row, (a, b) in zip(rows, pairs):
        model = names[a][: -len(a.label)].strip()
        row.update(sentence=sentence(row, a, b, model), gflop_a=a.train_gflop, gflop_b=b.train_gflop,
                   compute_ratio=b.train_gflop / a.train_gflop)
        row.pop("per_class", None)
    return {"cells": [asdict(c) | {"label": names[c], "front_gflop": bool(f), "front_seconds": bool(s)}
                      for c, f, s in zip(grid, front, front_s)],
            "pairs": rows, "sentences": [r["sentence"] for r in rows], "subsets": subsets(points), "tolerance": tolerance,
            "train_factor": TRAIN_FACTOR, "convention": CONVENTION, "seconds_text": SECONDS_TEXT,
            "correction": correction, "n_boot": n_boot}
