"""The app's remembered settings (data root, runs folder): one small JSON file per user.

A file, not only the URL, because a new tab or a bookmark without query parameters must open with
the folders chosen last. The file lives at `$CHESTMNIST_SETTINGS`, else
`$XDG_CONFIG_HOME/chestmnist-explorer/settings.json` (~/.config by default): never inside the runs
folder, which is itself one of the settings.

    {"data_root": "demo", "runs_dir": "/home/me/runs"}
"""
from __future__ import annotations

import json
from pathlib import Path

from core.errors import UserError
from core import env
from core.files import atomic_write

KEYS: tuple[str, ...] = ("data_root", "runs_dir")
MAX_BYTES = 1 << 16  # two folder names fit many times over


class SettingsError(UserError):
    """The settings file cannot be read or written; the message names it and says what to do."""


def settings_path() -> Path:
    return env.settings_file()


def load(path: str | Path | None = None) -> dict[str, str]:
    """The remembered settings: {key: text} for the keys in KEYS that the file sets; {} without a file.

    A file that is not a JSON object of strings is a SettingsError (the app says so and carries on
    with the defaults; the next saved change replaces it).
    """
    path = Path(path) if path is not None else settings_path()
    try:
        # A bounded read: a device (/dev/full, /dev/zero) in the file's place would otherwise be read until
        # memory runs out.
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise SettingsError(f"The settings file {path} is over {MAX_BYTES:,} bytes, so it is not this tool's; the "
                                "defaults are used. Point CHESTMNIST_SETTINGS at a file of its own.")
        raw = json.loads(data.decode("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SettingsError(f"Cannot read the settings file {path} ({e}); the defaults are used. "
                            "Changing a setting in the sidebar rewrites it.") from None
    if not isinstance(raw, dict):
        raise SettingsError(f"The settings file {path} does not hold a JSON object; the defaults are used. "
                            "Changing a setting in the sidebar rewrites it.")
    return {k: v for k, v in raw.items() if k in KEYS and isinstance(v, str) and v.strip()}


def save(changes: dict[str, str], path: str | Path | None = None) -> Path:
    """Merge `changes` (keys from KEYS) into the file and write it atomically; returns its path.

    Raises SettingsError for an unknown key or a file that cannot be written.
    """
    unknown = set(changes) - set(KEYS)
    if unknown:
        raise SettingsError(f"Unknown setting(s) {sorted(unknown)}; known: {', '.join(KEYS)}.")
    path = Path(path) if path is not None else settings_path()
    try:
        current = load(path)
    except SettingsError:  # a damaged file is replaced by the settings being saved
        current = {}
    data = current | {k: str(v) for k, v in changes.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
        atomic_write(path, lambda f: f.write(text))
    except OSError as e:
        raise SettingsError(f"Cannot save the settings to {path} ({e.strerror or e}); they hold for this "
                            "session only. Set CHESTMNIST_SETTINGS to a writable file to remember them.") from None
    return path
