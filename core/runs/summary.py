"""One summary of a run, the same for the Compare page, the Train and Data pages and the study report.

The kept checkpoint's epoch (`best_epoch`: by the run's select-by metric, the best checkpoint), seconds per
epoch and training images/s as the median over the epochs (robust to one slow epoch on a busy
machine), which data it used (`data_provenance`: official ChestMNIST or not), and inference time
measured one way (core.evaluate.measure_inference).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.runs import record as runs


@dataclass(frozen=True)
class RunSummary:
    """What every view says about a run's training, from its metrics rows."""

    epochs_done: int
    best_epoch: int | None  # the epoch whose checkpoint was kept (the best checkpoint)
    best_row: dict  # that epoch's metrics row ({} before the first epoch)
    seconds_per_epoch: float | None  # median wall time of an epoch, training + validation
    train_images_per_s: float | None  # median training throughput


def best_row(rows: list[dict]) -> dict:
    """The metrics row of the checkpoint the run kept (its best checkpoint): the last row's best_epoch."""
    if not rows:
        return {}
    best_epoch = rows[-1].get("best_epoch") or 0
    return next((r for r in rows if r["epoch"] == best_epoch), rows[0])


def _median(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.median(values)) if values else None


def summary_of_rows(rows: list[dict]) -> RunSummary:
    """The summary of a run's metrics rows (core.runs.read_metrics)."""
    best = best_row(rows)
    return RunSummary(epochs_done=len(rows), best_epoch=best.get("epoch"), best_row=best,
                      seconds_per_epoch=_median(rows, "seconds"), train_images_per_s=_median(rows, "images_per_s"))


def run_summary(run_dir: str | Path) -> RunSummary:
    return summary_of_rows(runs.read_metrics(run_dir))
