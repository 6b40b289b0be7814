"""The training recipe: every knob of a run is one field of TrainConfig, checked in one place.

A run folder's config keeps these fields under "train" (core.runs.record); core.runs.datafile reads them back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.data import chestmnist as D
from core.runs import folder as runs_folder
from core.models.registry import BUILDABLE, DEFAULT_MODEL

SELECT_BY = {"val_auc": 1, "val_loss": -1, "val_acc": 1}  # +1: higher is better
SCHEDULES = ("constant", "cosine")
AMP_HELP = ("auto (the fastest of fp32 and the precisions the GPU or CPU has natively, measured once per machine "
            "with the layout; see core/train/autotune.py), off, bf16, fp16")


class ConfigError(UserError):
    """A training setting is out of range; the message says which and what is allowed."""


@dataclass
class TrainConfig:
    size: int = 28
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0  # decoupled (AdamW) when > 0; 0 = the study's plain Adam
    schedule: str = "constant"  # or "cosine": lr decays to 0 over the epochs
    pos_weight_clip: float = 10.0  # 0 = plain BCE
    threshold: float = 0.3  # the study's global threshold, for per-epoch F1
    model: str = DEFAULT_MODEL
    select_by: str = "val_auc"
    patience: int = 10  # epochs without improvement before stopping; 0 = never stop early
    subset: int | None = None  # seeded random subset of train; val/test stay whole
    augment: bool = False
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto = measured on this machine (core.train.autotune); or off / bf16 / fp16
    channels_last: bool = True  # False forces NCHW; True = channels_last, or the measured layout with amp auto
    data_root: str = field(default_factory=lambda: str(D.default_root()))
    runs_dir: str = field(default_factory=lambda: str(runs_folder.default_runs_dir()))
    name: str = ""

    def train_images(self, n_train: int) -> int:
        """Training images per epoch from a split of n_train: the subset, capped at the split."""
        return min(self.subset or n_train, n_train)

    def validate(self) -> None:
        """Raise ConfigError naming every bad setting (checks that need no data)."""
        problems = []
        if self.size not in D.SIZES:
            problems.append(f"--size {self.size} is not a ChestMNIST size ({', '.join(map(str, D.SIZES))})")
        if self.epochs < 1:
            problems.append(f"--epochs {self.epochs} must be at least 1")
        if self.batch_size < 1:
            problems.append(f"--batch-size {self.batch_size} must be at least 1")
        if not 0 < self.lr <= 1:
            problems.append(f"--lr {self.lr} must be in (0, 1]")
        if not 0 <= self.weight_decay < 10:
            problems.append(f"--weight-decay {self.weight_decay} must be in [0, 10)")
        if self.schedule not in SCHEDULES:
            problems.append(f"--schedule {self.schedule!r} must be one of {', '.join(SCHEDULES)}")
        if not math.isfinite(self.pos_weight_clip) or self.pos_weight_clip < 0:
            problems.append(f"--pos-weight-clip {self.pos_weight_clip} must be >= 0 (0 turns pos_weight off)")
        if not 0 < self.threshold < 1:
            problems.append(f"--threshold {self.threshold} must be between 0 and 1")
        if self.model not in BUILDABLE:
            problems.append(f"--model {self.model!r} is unknown (choose {', '.join(BUILDABLE)})")
        if self.select_by not in SELECT_BY:
            problems.append(f"--select-by {self.select_by!r} must be one of {', '.join(SELECT_BY)}")
        if self.patience < 0:
            problems.append(f"--patience {self.patience} must be >= 0 (0 = no early stopping)")
        if self.subset is not None and self.subset < 1:
            problems.append(f"--subset {self.subset} must be at least 1")
        if not 0 <= self.seed < 2**32:  # numpy's seeds are 32-bit; a run must be repeatable from its seed
            problems.append(f"--seed {self.seed} must be in [0, {2**32 - 1}]")
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            problems.append(f"--device {self.device!r} must be auto, cpu, cuda or mps")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            problems.append(f"--amp {self.amp!r} must be auto, off, bf16 or fp16")
        if problems:
            raise ConfigError("Invalid training settings: " + "; ".join(problems) + ".")


def check_subset(config: TrainConfig, n_train: int, path: Path) -> None:
    """ConfigError when --subset asks for more than the n_train training images in the file at `path`."""
    if config.subset is not None and config.subset > n_train:
        raise ConfigError(f"--subset {config.subset} is larger than the training split ({n_train:,} images "
                          f"in {path}); use at most {n_train} or leave it out.")



def check_selectable(select_by: str, val_labels: np.ndarray, path: Path) -> None:
    """ConfigError when validation cannot pick a checkpoint by `select_by`: val AUC needs a class with
    both positives and negatives among the (N, 14) `val_labels` of the file at `path`."""
    has_both = ((val_labels.min(axis=0) == 0) & (val_labels.max(axis=0) == 1)).any() if len(val_labels) else False
    if select_by == "val_auc" and not has_both:
        raise ConfigError(f"The validation split of {path} ({len(val_labels)} image(s)) has no finding with both "
                          "positive and negative images, so val AUC is undefined and no checkpoint could be chosen "
                          "by it. Train with --select-by val_loss (or val_acc), or use data with a larger "
                          "validation split.")
