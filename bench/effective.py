"""Effective resolution: the cost of a full grid of effective sizes for one run against its native evaluation.

res-cnn at the mode's largest compute size (fresh weights: speed does not depend on training) scores the
bundled demo's test split (169 real NIH radiographs, not ChestMNIST) as core.evaluate.effective does:
brought down to every size of its grid below the model's and back up, plus the demo's own smaller files
brought up. Baseline: scoring the test split once at its own size (what evaluation does for test).
Ratio = grid time / native time (a cost, not a speed-up). Issue #22's target: the 224 px grid under 30 s.
"""
from __future__ import annotations

import time

import torch

from bench.common import Context, Row
from core.data import chestmnist as D
from core.evaluate.effective import GRID, score_grid
from core.evaluate.scoring import predict
from core.models.registry import build_model, fold_batchnorm
from core.train import autotune


def bench_effective(size: int) -> dict:
    """Seconds of the native scoring and of the whole grid (and how many degraded sets it scored)."""
    torch.manual_seed(0)
    model = build_model("res-cnn", size).eval()
    test = D.load(D.DEMO_ROOT, size).test
    choice = autotune.choose_infer(model, size, 256, "cpu")
    net = fold_batchnorm(model) if choice.fold_bn else model

    def score(images):
        return predict(net, images, channels_last=choice.channels_last, fold_bn=False)
    score(test.images[:8])  # first-call allocations are not scoring
    t = time.perf_counter()
    score(test.images)
    native = time.perf_counter() - t
    sizes = [r for r in GRID if r < size]
    files = {r: D.load(D.DEMO_ROOT, r).test.images for r in D.SIZES if r < size}
    t = time.perf_counter()
    scored = score_grid(score, test.images, sizes, files)
    grid = time.perf_counter() - t
    p = f"effective.{size}."
    return {p + "native_s": native, p + "grid_s": grid, p + "sets": len(scored), p + "images": len(test)}


def run(ctx: Context) -> list[Row]:
    size = max(ctx.mode.compute_sizes)
    ctx.log(f"effective: the effective-resolution grid of a {size} px res-cnn on the demo's test split")
    f = bench_effective(size)
    p = f"effective.{size}."
    return [Row(p + "grid_s", f[p + "grid_s"], "s", f[p + "native_s"], f[p + "grid_s"] / f[p + "native_s"],
                "< 30 s at 224 px", f[p + "grid_s"] < 30 if size == 224 else None,
                f"{f[p + 'sets']} degraded test sets of {f[p + 'images']} demo images (grid below {size} px and the "
                f"demo's own smaller files) vs one native scoring (baseline); ratio = grid / native time, "
                f"{torch.get_num_threads()} torch threads")]
