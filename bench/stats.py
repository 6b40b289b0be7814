"""Statistics: what an honest comparison of two runs costs.

* core.metrics.paired_auc_difference with 2,000 resamples on ChestMNIST-test-sized scores
  (22,433 x 14; fewer rows in --tiny) for two correlated runs, against the two single-run
  intervals (core.metrics.mean_auc_ci, 2,000 resamples each) a reader would otherwise compare;
  timed interleaved. The same call also gives the widths of the paired interval and of one
  run's own interval.
* core.metrics.reliability and sensitivity at 90% specificity on the same scores.

Scores are generated (bench.interaction.chestmnist_sized_scores), not a trained model's.
"""
from __future__ import annotations

import numpy as np

from bench.common import Context, Mode, Row, at_most, interleaved, median, time_call
from bench.interaction import chestmnist_sized_scores

N_BOOT = 2000
PAIRED_TARGET_S = 2.0


def two_runs(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, scores a, scores b): b is a with per-image noise, as two runs of one recipe are."""
    a, labels = chestmnist_sized_scores(rows, 0)
    noise = np.random.default_rng(1).normal(0, 0.03, a.shape)
    return labels, a, np.clip(a + noise, 0, 1).astype(np.float32)


def bench_paired(mode: Mode, n_boot: int = N_BOOT) -> dict:
    """Median and best seconds of one paired bootstrap and of two single-run bootstraps, interleaved,
    and the widths of the paired and the single-run 95% intervals."""
    from core import metrics

    labels, a, b = two_runs(mode.metric_rows)
    out: dict = {}

    def paired() -> None:
        out["paired"] = metrics.paired_auc_difference(labels, a, b, n_boot=n_boot)

    def separate() -> None:
        out["own"] = metrics.mean_auc_ci(labels, a, n_boot=n_boot)
        metrics.mean_auc_ci(labels, b, n_boot=n_boot)

    t = interleaved({"paired": paired, "separate": separate}, max(3, mode.repeats), max(1, mode.warmup))
    lo, hi = out["paired"]["ci"]
    return {"stats.paired_s": median(t["paired"]), "stats.paired_best_s": min(t["paired"]),
            "stats.separate_s": median(t["separate"]), "stats.separate_best_s": min(t["separate"]),
            "stats.paired_ci_width": hi - lo, "stats.own_ci_width": float(out["own"][1] - out["own"][0]),
            "stats.rows": mode.metric_rows, "stats.n_boot": n_boot}


def bench_clinical(mode: Mode) -> dict:
    """Median ms of core.metrics.reliability and of sensitivity at 90% specificity (every class)."""
    from core import metrics

    labels, a, _ = two_runs(mode.metric_rows)
    repeats = max(5, mode.repeats * 2)
    return {"stats.calibration_ms": time_call(lambda: metrics.calibration(labels, a), repeats) * 1e3,
            "stats.sens_at_spec_ms": time_call(lambda: metrics.sensitivity_at_specificity(labels, a, 0.9),
                                               repeats) * 1e3}


def run(ctx: Context) -> list[Row]:
    mode = ctx.mode
    ctx.log(f"stats: paired bootstrap, {N_BOOT:,} resamples of {mode.metric_rows:,} x 14 scores")
    f = bench_paired(mode)
    paired, separate = f["stats.paired_s"], f["stats.separate_s"]
    rows = [
        Row("stats.paired_bootstrap_s", paired, "s", separate, separate / paired, f"< {PAIRED_TARGET_S:g} s",
            at_most(paired, PAIRED_TARGET_S),
            f"core.metrics.paired_auc_difference, {N_BOOT:,} resamples, {mode.metric_rows:,} x 14 scores; baseline = "
            f"two single-run mean_auc_ci calls (ratio = speed-up; best {f['stats.paired_best_s']:.2f} s)",
            f["stats.separate_best_s"] / f["stats.paired_best_s"]),
        Row("stats.paired_ci_width", f["stats.paired_ci_width"], "AUC", f["stats.own_ci_width"],
            f["stats.own_ci_width"] / f["stats.paired_ci_width"], "", None,
            "width of the paired 95% interval of AUC(a) - AUC(b) vs one run's own interval, generated scores "
            "(b = a + noise); ratio = how many times narrower"),
    ]
    ctx.log("stats: calibration and operating points")
    f = bench_clinical(mode)
    rows += [Row("stats.calibration_ms", f["stats.calibration_ms"], "ms", None, None, "", None,
                 f"core.metrics.reliability (per class and pooled, 10 bins), {mode.metric_rows:,} x 14"),
             Row("stats.sens_at_spec_ms", f["stats.sens_at_spec_ms"], "ms", None, None, "", None,
                 f"core.metrics.sensitivity_at_specificity(0.9), every class, {mode.metric_rows:,} x 14")]
    return rows
