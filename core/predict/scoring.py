"""A run's best model applied to a user's images: probabilities, the run's saved thresholds (decision and
margin per finding), and how far each finding's probability can be trusted, read from the run's test metrics.

Scores come from core.evaluate's `predict` (the function that scored the run's own test split), so an
image of the test split written out as a PNG and read back scores exactly as in the run's evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from core.data.chestmnist import CLASS_NAMES
from core.data.provenance import run_data_label
from core.evaluate.scoring import predict
from core.metrics import thresholds as T
from core.predict.images import InputImage
from core.runs import record as runs
from core.runs.checkpoints import load_model
from core.runs.record import RunError
from core.train.device import resolve_device


@dataclass
class RunModel:
    """A run's best model with the thresholds in effect for it (the user's saved set, else validation's)."""

    run_dir: Path
    run_id: str
    size: int
    model_name: str
    model: torch.nn.Module
    thresholds: np.ndarray  # (14,)
    thresholds_source: str  # which file and how they were chosen, in words
    data: str  # which data the run was trained on, in words (core.data.provenance)
    official: bool  # whether that is the official ChestMNIST
    device: torch.device


def thresholds_source(run_dir: str | Path) -> tuple[T.ThresholdChoice, str, str]:
    """(the thresholds in effect for the run, the split they were tuned on, where they come from in words);
    ThresholdFileError when the run has none (not evaluated) or its file is damaged."""
    path = runs.thresholds_path(run_dir)
    choice = T.load_choice(path, CLASS_NAMES)
    try:
        split = runs.read_json(path).get("split", "val")
    except (RunError, AttributeError):  # a hand-edited {name: t} file is read by load_choice all the same
        split = "val"
    who = ("saved by the user on the Thresholds page" if path == runs.user_thresholds_path(run_dir)
           else "chosen by core.evaluate")
    return choice, split, f"{who}: {choice.method} on {split} ({path.name})"


def load_run(run_dir: str | Path, device: str = "cpu") -> RunModel:
    """The run's best model and thresholds; RunError or ThresholdFileError says what is missing."""
    run_dir = Path(run_dir)
    config = runs.read_config(run_dir)
    train = config["train"]
    if not runs.chosen_thresholds_path(run_dir).is_file() and not runs.user_thresholds_path(run_dir).is_file():
        raise RunError(f"Run {run_dir.name} has no thresholds yet: it was not evaluated (still training, stopped "
                       f"or failed). Evaluate it with `python -m core.evaluate {run_dir}`.")
    choice, _, source = thresholds_source(run_dir)
    dev = resolve_device(device)
    official, data = run_data_label(config)
    return RunModel(run_dir, run_dir.name, int(train["size"]), str(train["model"]), load_model(run_dir, "best", dev),
                    np.asarray(choice.thresholds, dtype=np.float64), source, data, official, dev)


def score(run: RunModel, images: np.ndarray) -> np.ndarray:
    """(N, 14) float32 probabilities of uint8 images (N, size, size) through the run's best model."""
    if images.ndim != 3 or images.shape[1:] != (run.size, run.size):
        raise ValueError(f"images of shape {images.shape}; run {run.run_id} takes (N, {run.size}, {run.size})")
    return predict(run.model, images, device=run.device)


def findings(run: RunModel, probabilities: np.ndarray) -> pd.DataFrame:
    """One image's findings: probability, the run's threshold, the decision (probability >= threshold,
    as the Thresholds and Saliency pages decide) and the margin (probability - threshold)."""
    p = np.asarray(probabilities, dtype=np.float64)
    return pd.DataFrame({"finding": CLASS_NAMES, "probability": p, "threshold": run.thresholds,
                         "decision": np.where(p >= run.thresholds, "present", "absent"),
                         "margin": p - run.thresholds})


def predictions_table(run: RunModel, images: Sequence[InputImage]) -> pd.DataFrame:
    """One row per image: its name, the run, where the thresholds come from, then per finding its
    probability (`p_<finding>`) and decision (`<finding>`: 1 present, 0 absent) and the image's notes."""
    probs = score(run, np.stack([im.at(run.size) for im in images])) if images else np.zeros((0, len(CLASS_NAMES)))
    table = pd.DataFrame({"image": [im.name for im in images], "run": run.run_id, "size": run.size,
                          "thresholds": run.thresholds_source})
    for c, name in enumerate(CLASS_NAMES):
        table[f"p_{name}"] = probs[:, c]
    for c, name in enumerate(CLASS_NAMES):
        table[name] = (probs[:, c] >= run.thresholds[c]).astype(int)
    table["notes"] = ["; ".join(im.notes) for im in images]
    return table


def trust_warnings(run_dir: str | Path) -> dict[str, str]:
    """{finding: why its probability and map mean little}, from the run's test metrics: a finding whose
    test AUC is undefined, or whose 95% CI reaches 0.5 (chance). RunError when the run has no test metrics."""
    per_class = runs.read_test_metrics(run_dir).get("per_class") or {}
    out = {}
    for name in CLASS_NAMES:
        m = per_class.get(name) or {}
        low, high = m.get("auc_ci_low"), m.get("auc_ci_high")
        if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
            out[name] = "its test AUC is undefined (no positive or no negative test image): nothing says it means anything"
        elif low <= 0.5:
            out[name] = f"its test AUC 95% CI is {low:.2f}–{high:.2f}, which includes 0.5 (chance): it means little"
    return out
