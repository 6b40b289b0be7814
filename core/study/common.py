"""What every part of the study shares: its constants, its errors and its log line."""
from __future__ import annotations

import sys
from pathlib import Path

from core.errors import UserError

STUDY_VERSION = 1
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REPORTS_DIR = Path("reports")
# How a run is executed, not what it learns: a study may be resumed on another device.
EXECUTION_FIELDS = ("size", "seed", "name", "runs_dir", "device", "amp", "channels_last")
VAL_KEYS = ("val_auc", "val_acc", "val_macro_f1", "val_micro_f1", "val_loss")
TEST_KEYS = ("test_auc", "test_acc", "test_macro_f1")
COST_KEYS = ("params", "gflops", "seconds_per_epoch", "train_images_per_s", "inference_ms_per_image",
             "peak_rss_mb", "cuda_peak_mb", "data_mb")
FIGURES = {"curves": "curves.png", "auc_vs_cost": "auc_vs_cost.png", "per_class_auc": "per_class_auc.png"}
FRONTIER_FIGURE = "auc_vs_training_compute.png"  # drawn only for a grid over training subsets (--subsets)


class StudyError(UserError):
    """The study cannot go on as asked; the message says why and what to do."""


class StudyStopped(RuntimeError):
    """A run was stopped (Ctrl-C, SIGTERM, STOP file); re-running the same command resumes it."""


def log(msg: str) -> None:
    print(f"study: {msg}", file=sys.stderr, flush=True)
