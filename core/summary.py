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

from core import data as D
from core import runs


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


def summarize(rows: list[dict]) -> RunSummary:
    """The summary of a run's metrics rows (core.runs.read_metrics)."""
    best = best_row(rows)
    return RunSummary(epochs_done=len(rows), best_epoch=best.get("epoch"), best_row=best,
                      seconds_per_epoch=_median(rows, "seconds"), train_images_per_s=_median(rows, "images_per_s"))


def run_summary(run_dir: str | Path) -> RunSummary:
    return summarize(runs.read_metrics(run_dir))


def is_official(size: int, md5: str | None) -> bool:
    """Whether a file with this MD5 is the official ChestMNIST npz of `size` (medmnist's record)."""
    try:
        return md5 is not None and md5 == D.download_url(int(size))[1]
    except (TypeError, ValueError, KeyError, D.DataError):
        return False


def official_split_sizes(n: dict[str, int]) -> bool:
    """Whether split sizes are those of the official ChestMNIST release (a cheap check where no MD5 is at hand)."""
    return all(n.get(s) == D.OFFICIAL_COUNTS[s] for s in D.SPLITS)


def data_provenance(size: int, n: dict, md5: str) -> dict:
    """{"official", "verdict"}: whether a run's npz is the official ChestMNIST, by MD5, with split sizes."""
    counts = [n.get(s) for s in D.SPLITS]
    official_counts = [D.OFFICIAL_COUNTS[s] for s in D.SPLITS]
    if is_official(size, md5):
        return {"official": True, "verdict": "official ChestMNIST (MD5 matches medmnist's record)"}
    if official_split_sizes(n):
        return {"official": False, "verdict": "same split sizes as the official ChestMNIST, but its MD5 differs "
                                               "from medmnist's record (a re-export or a modified file)"}
    fmt = "/".join(f"{c:,}" if c is not None else "?" for c in counts)
    return {"official": False, "verdict": f"NOT the official ChestMNIST: train/val/test {fmt} images, the official "
                                          f"release has {'/'.join(f'{c:,}' for c in official_counts)}"}


def run_data_label(config: dict) -> tuple[bool, str]:
    """(is official ChestMNIST, which data a run used) from its config (core.runs.read_config)."""
    train, data = config.get("train", {}), config.get("data", {})
    root, file = train.get("data_root") or "?", data.get("file") or "?"
    n = data.get("n") or {}
    where = f"{file} in {root}"
    if is_official(train.get("size"), data.get("md5")):
        return True, f"ChestMNIST (official file): {where}"
    sizes = "/".join(f"{n[s]:,}" for s in D.SPLITS if s in n)
    return False, f"NOT ChestMNIST: {where}" + (f" ({sizes} train/val/test images)" if sizes else "")
