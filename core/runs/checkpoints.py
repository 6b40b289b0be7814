"""A run's checkpoints as torch objects: save them atomically, load them safely, rebuild the model.

Where they are is core.runs' business (checkpoint_path names the best and last checkpoints); this module
only (de)serialises them, so that reading a run's record needs no torch.
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.runs import record as runs
from core.files import atomic_write
from core.models.registry import build_model
from core.runs.record import RunError


def save_checkpoint(path: str | Path, state: dict) -> None:
    """torch.save atomically: a kill mid-write leaves the previous checkpoint intact."""
    atomic_write(Path(path), lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with `weights_only=True`: tensors and plain containers only.

    A file that would need to unpickle arbitrary objects (code execution) is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise RunError(f"Checkpoint {path} is missing; the run has no saved model yet (or it was deleted).")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise RunError(f"Checkpoint {path} was refused: it is corrupt or holds something other than tensors "
                       f"(loading it could run code). Only checkpoints written by this tool load. ({type(e).__name__})") from None


def save_best(run_dir: str | Path, state: dict) -> None:
    save_checkpoint(runs.checkpoint_path(run_dir, "best"), state)


def save_last(run_dir: str | Path, state: dict) -> None:
    save_checkpoint(runs.checkpoint_path(run_dir, "last"), state)


def load_last(run_dir: str | Path, map_location: str | torch.device = "cpu") -> dict | None:
    """The resumable state in the last checkpoint, or None when the run has not finished an epoch."""
    path = runs.checkpoint_path(run_dir, "last")
    return load_checkpoint(path, map_location) if path.exists() else None


def load_model(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu") -> torch.nn.Module:
    """The run's model (`best` or `last` checkpoint) in eval mode on `device`."""
    run_dir = Path(run_dir)
    train = runs.read_config(run_dir)["train"]
    state = load_checkpoint(runs.checkpoint_path(run_dir, which), map_location=device)
    model = build_model(train["model"], train["size"])
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as e:
        raise RunError(f"{runs.checkpoint_path(run_dir, which)} does not match the model in {runs.config_path(run_dir)} "
                       f"({train['model']} at {train['size']} px): {str(e)[:200]}") from None
    return model.to(device).eval()
