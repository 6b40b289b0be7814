"""The training recipe: every knob of a run is one field of TrainConfig, checked in one place.

A run folder's config keeps these fields under "train" (core.runs.record); core.runs.datafile reads them back.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core.errors import UserError
from core.data import chestmnist as D
from core.runs import folder as runs_folder
from core.models.registry import BUILDABLE, DEFAULT_MODEL

SELECT_BY = {"val_auc": 1, "val_loss": -1, "val_acc": 1}  # +1: higher is better
SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")
AMPS = ("auto", "off", "bf16", "fp16")
SEED_LIMIT = 2**32  # numpy's generators take seeds below this


class ConfigError(UserError):
    """A training setting is out of range; the message says which and what is allowed."""


def knob(default: Any = MISSING, *, label: str, help: str, choices: tuple = (), low: float | None = None,
         high: float | None = None, open_low: bool = False, open_high: bool = False,
         factory: Callable[[], Any] | None = None) -> Any:
    """A TrainConfig field with what every front end needs to offer it: the page's label, one help text, and
    the allowed values (choices, or a range [low, high], either end open). The train and study command
    lines and the Train page are built from these, and `validate` checks them."""
    meta = {"label": label, "help": help, "choices": choices, "low": low, "high": high,
            "open_low": open_low, "open_high": open_high}
    return field(default_factory=factory, metadata=meta) if factory else field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every knob of one training run. Each field's metadata (knob) says its label, help and allowed values."""
    size: int = knob(28, label="Resolution", help="image size in px",
                     choices=D.SIZES)
    epochs: int = knob(30, label="Epochs", help="epochs to train at most", low=1, high=100_000)
    batch_size: int = knob(128, label="Batch size", help="images per training step", low=1, high=65_536)
    lr: float = knob(1e-3, label="Learning rate", help="Adam's (AdamW's with weight decay) learning rate",
                     low=0, high=1, open_low=True)
    weight_decay: float = knob(0.0, label="Weight decay", help="> 0 trains with AdamW's decoupled decay; 0 = the "
                               "study's plain Adam", low=0, high=10, open_high=True)
    schedule: str = knob("constant", label="Learning-rate schedule", help="learning rate over the epochs; cosine decays it "
                         "to 0 by the last epoch", choices=SCHEDULES)
    pos_weight_clip: float = knob(10.0, label="pos_weight clip", help="BCE pos_weight = negatives/positives per "
                                  "class, capped here; 0 = plain BCE", low=0, high=1e6)
    threshold: float = knob(0.3, label="Threshold for the per-epoch F1 curves", help="the global threshold of the "
                            "F1 logged each epoch only; test F1 uses thresholds tuned on val", low=0, high=1,
                            open_low=True, open_high=True)
    model: str = knob(DEFAULT_MODEL, label="Model", help="res-cnn: strided stem, residual stages, global pooling "
                      "(default); seed-cnn: the study's original CNN; resnet18/50: MedMNIST's references; "
                      "res-cnn-*: the selection study's variants", choices=BUILDABLE)
    select_by: str = knob("val_auc", label="Keep the checkpoint with the best", help="the validation metric that "
                          "picks the kept checkpoint and drives early stopping", choices=tuple(SELECT_BY))
    patience: int = knob(10, label="Patience (epochs, 0 = off)", help="stop after this many epochs without "
                         "improvement of the select-by metric; 0 = no early stopping", low=0, high=100_000)
    subset: int | None = knob(None, label="Training subset (0 = all)", help="a seeded random subset of the "
                              "training images; val and test stay whole", low=1, high=10**9)
    augment: bool = knob(False, label="Augment", help="small random shifts and rotations (no flips)")
    seed: int = knob(0, label="Seed", help="seeds the initial weights, the batch order and the subset",
                     low=0, high=SEED_LIMIT - 1)
    device: str = knob("auto", label="Device", help="where to compute; auto: CUDA, else MPS, else the CPU",
                      choices=DEVICES)
    amp: str = knob("auto", label="Mixed precision", help="auto: the fastest of fp32 and the precisions the GPU "
                    "or CPU has natively, measured once per machine with the layout (core/train/autotune.py). "
                    "Test metrics are always computed in full precision", choices=AMPS)
    channels_last: bool = knob(True, label="channels_last layout", help="off forces NCHW; on = channels_last, or "
                               "the measured layout with mixed precision auto")
    data_root: str = knob(label="Data folder", help=D.DATA_ROOT_HELP, factory=lambda: str(D.default_root()))
    runs_dir: str = knob(label="Runs folder", help="default: $CHESTMNIST_RUNS, else checkpoints/",
                         factory=lambda: str(runs_folder.default_runs_dir()))
    name: str = knob("", label="Run name (optional)", help="an optional label in the run id")

    def train_images(self, n_train: int) -> int:
        """Training images per epoch from a split of n_train: the subset, capped at the split."""
        return min(self.subset or n_train, n_train)

    def validate(self) -> None:
        """Raise ConfigError naming every bad setting (checks that need no data), by each field's knob."""
        problems = [p for f in fields(self) if (p := _problem(f, getattr(self, f.name)))]
        if problems:
            raise ConfigError("Invalid training settings: " + "; ".join(problems) + ".")


def flag(name: str) -> str:
    """The command-line flag of a TrainConfig field (`--batch-size` for batch_size)."""
    return "--" + name.replace("_", "-")


def allowed(f: Field) -> str:
    """The allowed values of a knob, in words: "one of a, b" or an interval such as "in (0, 1]"."""
    m = f.metadata
    if m["choices"]:
        return "one of " + ", ".join(map(str, m["choices"]))
    low, high = _number(m["low"]), _number(m["high"])
    return f"in {'(' if m['open_low'] else '['}{low}, {high}{')' if m['open_high'] else ']'}"


def _number(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _problem(f: Field, value: Any) -> str | None:
    m = f.metadata
    if m["choices"]:
        return None if value in m["choices"] else f"{flag(f.name)} {value!r} is unknown (choose {', '.join(map(str, m['choices']))})"
    if m["low"] is None or value is None:  # no range, or an optional knob left out
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"{flag(f.name)} {value!r} must be a finite number {allowed(f)}"
    inside = ((value > m["low"] if m["open_low"] else value >= m["low"])
              and (m["high"] is None or (value < m["high"] if m["open_high"] else value <= m["high"])))
    return None if inside else f"{flag(f.name)} {value} must be {allowed(f)}"


def add_arguments(parser: argparse.ArgumentParser, names: list[str], **help_extra: str) -> None:
    """Add the knobs `names` to a command line as flags, each with its default, help and allowed values.

    `help_extra` appends to a knob's help where a command line uses it differently (e.g. data_root on resume).
    Values are checked by `validate`, which names every bad one at once, not by argparse one at a time.
    """
    defaults = TrainConfig()
    by_name = {f.name: f for f in fields(TrainConfig)}
    for name in names:
        f, default = by_name[name], getattr(defaults, name)
        help = f.metadata["help"] + help_extra.get(name, "")
        if isinstance(default, bool):
            off = flag(name).replace("--", "--no-", 1)
            parser.add_argument(off if default else flag(name), dest=name, default=default, help=help,
                                action="store_false" if default else "store_true")
            continue
        kind = {"size": int, "subset": int}.get(name, type(default))
        if name == "data_root":
            kind, default = D.data_root_arg, None
        elif name == "runs_dir":
            default = None
        if f.metadata["choices"] and name != "model":
            help += f" ({allowed(f)})"
        parser.add_argument(flag(name), type=kind, default=default, help=help)


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
