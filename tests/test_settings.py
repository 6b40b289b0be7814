"""core.settings: the app's remembered data root and runs folder (one JSON file per user)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import settings


def test_the_file_is_where_the_environment_says(monkeypatch, tmp_path):
    monkeypatch.setenv("CHESTMNIST_SETTINGS", str(tmp_path / "mine.json"))
    assert settings.settings_path() == tmp_path / "mine.json"
    monkeypatch.delenv("CHESTMNIST_SETTINGS")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert settings.settings_path() == tmp_path / "config" / "chestmnist-explorer" / "settings.json"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert settings.settings_path() == tmp_path / "home" / ".config" / "chestmnist-explorer" / "settings.json"


def test_no_file_means_no_settings():
    assert not settings.settings_path().exists()
    assert settings.load() == {}


def test_saved_settings_merge_and_come_back():
    path = settings.save({"data_root": "demo"})
    assert path == settings.settings_path() and settings.load() == {"data_root": "demo"}
    settings.save({"runs_dir": "/srv/runs"})
    assert settings.load() == {"data_root": "demo", "runs_dir": "/srv/runs"}
    settings.save({"data_root": "/data/chestmnist"})
    assert json.loads(path.read_text()) == {"data_root": "/data/chestmnist", "runs_dir": "/srv/runs"}


def test_unknown_keys_and_non_text_values_are_not_settings():
    with pytest.raises(settings.SettingsError, match="Unknown setting"):
        settings.save({"colour": "red"})
    assert not settings.settings_path().exists()
    settings.settings_path().write_text(json.dumps({"data_root": 3, "runs_dir": " ", "theme": "dark",
                                                    "other": "x"}))
    assert settings.load() == {}


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\udcff"])
def test_a_damaged_file_is_an_error_naming_it_and_saving_replaces_it(content):
    path = settings.settings_path()
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(settings.SettingsError) as e:
        settings.load()
    assert str(path) in str(e.value) and "sidebar rewrites it" in str(e.value)
    settings.save({"runs_dir": "runs"})
    assert settings.load() == {"runs_dir": "runs"}


def test_an_unwritable_place_is_an_error_saying_what_to_do(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(settings.SettingsError, match="CHESTMNIST_SETTINGS") as e:
        settings.save({"data_root": "demo"}, blocker / "settings.json")
    assert str(blocker / "settings.json") in str(e.value)
    assert list(tmp_path.iterdir()) == [blocker]


def test_save_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "dir" / "settings.json"
    settings.save({"data_root": "demo"}, path)
    assert [p.name for p in Path(path.parent).iterdir()] == ["settings.json"]
