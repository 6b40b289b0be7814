"""What a run will cost on this machine: its training speed measured now, and the time that gives."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data import chestmnist as D
from core.train.recipe import TrainConfig, check_subset


# Validation (fp32, batch norm folded) scores an image in about this fraction of a training step's
# time (measured by bench/compute.py; docs/performance.md).
VAL_COST = 0.5


REPO = Path(__file__).resolve().parents[2]
@dataclass(frozen=True)
class Estimate:
    """The cost of a run at a measured training speed: the trainer process's start (`start_seconds`:
    interpreter and imports, measured by start_seconds()), `epochs` epochs of n_train training and
    n_val validation images, then the final scoring of n_val + n_test images with the best
    checkpoint (core.evaluate.evaluate_run); validation and scoring cost VAL_COST of a training step
    per image. `load` is the load average per CPU when the speed was measured."""

    images_per_s: float
    device: str
    n_train: int  # training images per epoch (the subset, if any)
    n_val: int
    n_test: int
    epochs: int
    start_seconds: float = 0.0
    load: float = 0.0

    @property
    def seconds_per_epoch(self) -> float:
        return (self.n_train + VAL_COST * self.n_val) / self.images_per_s

    @property
    def final_seconds(self) -> float:
        return VAL_COST * (self.n_val + self.n_test) / self.images_per_s

    @property
    def total_seconds(self) -> float:
        return self.start_seconds + self.seconds_per_epoch * self.epochs + self.final_seconds

    @property
    def idle_total_seconds(self) -> float:
        """Roughly total_seconds on an idle machine: with more runnable work than cores (load per CPU
        above 1) a CPU-bound measurement got about 1/load of each core, so its training and scoring
        time is divided by the load; equal to total_seconds below that."""
        return self.total_seconds_at(0.0)

    def total_seconds_at(self, load: float) -> float:
        """total_seconds had the speed been measured at `load` per CPU instead of self.load (the same
        1/load share of each core as idle_total_seconds): estimates measured minutes apart, at loads that
        differ, are made comparable by costing them all at one load."""
        return self.start_seconds + (self.total_seconds - self.start_seconds) * max(1.0, load) / max(1.0, self.load)

    def within(self, budget_s: float) -> tuple[int, int]:
        """(training images per epoch for these epochs, epochs of these training images) that fit
        `budget_s` with the final scoring: the inverse of total_seconds (the first can be <= 0 when
        validation alone exceeds the budget)."""
        left = budget_s - self.final_seconds - self.start_seconds
        subset = round(left / self.epochs * self.images_per_s - VAL_COST * self.n_val)
        return subset, int(left / self.seconds_per_epoch + 1e-6)


def load_per_cpu() -> float:
    """The 1-minute load average per CPU (0 where the OS has none)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return 0.0


def start_seconds() -> float:
    """Seconds a trainer process takes to start: a fresh interpreter importing core.train (torch and the rest)."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import core.train"], cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - t


def measure_speed(config: TrainConfig, n_batches: int = 3, max_batch: int | None = None) -> tuple[float, str]:
    """(training images/s, device) of `config` on this machine, from a few batches of random images.

    Counts one warm-up batch out, then times `n_batches` forward+backward+step at config.batch_size
    (at most `max_batch`, e.g. the number of training images).
    """
    # Imported here: the Train page shows its recipe and Estimate before torch has loaded.
    import torch

    from core.data import batching
    from core.models.registry import build_model
    from core.train.device import amp_dtype, resolve_device, train_layout
    from core.train.step import build_parts, train_step

    config.validate()
    device = resolve_device(config.device)
    channels_last = train_layout(config, device)
    parts = build_parts(build_model(config.model, config.size), device, lr=config.lr,
                        weight_decay=config.weight_decay, channels_last=channels_last, dtype=amp_dtype(config, device))
    bs = min(config.batch_size, max_batch or config.batch_size)
    images = np.random.default_rng(0).integers(0, 256, (bs, config.size, config.size), dtype=np.uint8)
    y = torch.zeros(bs, D.N_CLASSES, device=device)
    times = []
    for _ in range(n_batches + 1):
        t = time.perf_counter()
        x = batching.to_tensor(images, device, channels_last)
        train_step(parts.model, parts.optimizer, parts.loss_fn, x, y, parts.dtype, parts.scaler)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return bs / float(np.median(times[1:])), str(device)


def estimate(config: TrainConfig, counts: dict[str, int] | None = None, n_batches: int = 3) -> Estimate:
    """The cost of training `config` on this machine, its speed and a trainer's start measured now
    (measure_speed, start_seconds); the CLI's `--estimate` and the Train page both use it.

    `counts` ({split: images}) default to the split sizes of config's data file, or official
    ChestMNIST's where it has none (core.data.split_counts_or_official); `subset` applies to train.
    """
    config.validate()
    if counts is None:
        counts, from_file = D.split_counts_or_official(config.data_root, config.size)
        if from_file:
            check_subset(config, counts["train"], D.npz_path(config.data_root, config.size))
    n_train = config.train_images(counts["train"])
    load = load_per_cpu()
    images_per_s, device = measure_speed(config, n_batches, max_batch=n_train)
    return Estimate(images_per_s, device, n_train, counts["val"], counts["test"], config.epochs, start_seconds(), load)



def format_seconds(s: float) -> str:
    """'<1s', '42s', '3m 05s' or '2h 07m': to the second below an hour."""
    if s < 0.5:  # e.g. the final scoring of a small split: "0s" would read as free
        return "<1s"
    s = int(round(s))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"
