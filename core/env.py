"""Every environment variable the explorer reads, with its default: the one place that reads them.

| variable | what it sets | default |
|---|---|---|
| CHESTMNIST_ROOT | the data folder (`--data-root` and the app's sidebar win over it) | ~/.medmnist (medmnist's) |
| CHESTMNIST_RUNS | the runs folder | checkpoints/ in the current folder |
| CHESTMNIST_CACHE | where extracted .npy arrays and the autotune cache live (never inside a shared data root) | ~/.cache/chestmnist-explorer |
| CHESTMNIST_SETTINGS | the app's remembered settings file | $XDG_CONFIG_HOME/chestmnist-explorer/settings.json |
| CHESTMNIST_AUTOTUNE | "off": the fixed precision/layout rule instead of measuring | on |
| XDG_CONFIG_HOME | the user's config folder | ~/.config |
| WORLD_SIZE, RANK, LOCAL_RANK | set by torchrun: processes in the run, this one's rank, its GPU | 1, 0, RANK |

A blank value (only spaces) counts as unset: a stray `export CHESTMNIST_ROOT=' '` is not a folder.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = "CHESTMNIST_ROOT"
RUNS = "CHESTMNIST_RUNS"
CACHE = "CHESTMNIST_CACHE"
SETTINGS = "CHESTMNIST_SETTINGS"
AUTOTUNE = "CHESTMNIST_AUTOTUNE"

DEFAULT_RUNS = "checkpoints"


def text(name: str) -> str | None:
    """The variable's value, or None when it is unset or blank."""
    value = os.environ.get(name, "")
    return value if value.strip() else None


def path(name: str, default: str | Path) -> Path:
    """The variable as a path (~ expanded), else `default`."""
    return Path(text(name) or default).expanduser()


def data_root() -> str | None:
    return text(ROOT)


def runs_dir() -> Path:
    return path(RUNS, DEFAULT_RUNS)


def cache_dir() -> Path:
    return path(CACHE, Path.home() / ".cache" / "chestmnist-explorer")


def settings_file() -> Path:
    if explicit := text(SETTINGS):
        return Path(explicit).expanduser()
    return path("XDG_CONFIG_HOME", Path.home() / ".config") / "chestmnist-explorer" / "settings.json"


def autotune_enabled() -> bool:
    return (text(AUTOTUNE) or "").strip().lower() not in ("off", "0", "no", "false")


def _int(name: str, default: int) -> int:
    try:
        return int(text(name) or default)
    except ValueError:
        return default


def world_size() -> int:
    """Processes in this (torchrun) run; 1 outside torchrun."""
    return _int("WORLD_SIZE", 1)


def rank() -> int:
    return _int("RANK", 0)


def local_rank(default: int) -> int:
    return _int("LOCAL_RANK", default)
