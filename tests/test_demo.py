"""The bundled demo set (demo/) and the word `demo` as a data root, from any working directory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.data import chestmnist as D
from tests.conftest import REPO


def test_demo_names_the_bundled_folder_and_nothing_else(monkeypatch, tmp_path):
    assert D.DEMO_ROOT == REPO / "demo"
    assert D.resolve_root("demo") == D.resolve_root(" demo ") == D.DEMO_ROOT
    monkeypatch.chdir(tmp_path)
    assert D.resolve_root("./demo") == Path("demo") != D.DEMO_ROOT  # a path is a path
    assert D.resolve_root("~/data") == Path.home() / "data"
    assert D.resolve_root("") == D.resolve_root(None) == D.default_root()
    assert D.is_demo("demo") and D.is_demo(D.DEMO_ROOT) and not D.is_demo(tmp_path)
    monkeypatch.setenv("CHESTMNIST_ROOT", "demo")
    assert D.default_root() == D.DEMO_ROOT


def test_demo_is_committed_small_and_documented():
    files = {p.name: p.stat().st_size for p in D.DEMO_ROOT.iterdir()}
    assert set(files) == {"README.md", "Data_Entry_nih667.csv", *(D.npz_name(s) for s in D.SIZES)}
    assert sum(files.values()) < 40 * 2**20
    readme = (D.DEMO_ROOT / "README.md").read_text()
    assert "NOT ChestMNIST" in readme.splitlines()[0]
    assert "Wang" in readme and "CVPR 2017" in readme and "CC BY 4.0" in readme
    git = subprocess.run(["git", "check-ignore", *map(str, D.DEMO_ROOT.iterdir())], cwd=REPO,
                         capture_output=True, text=True)
    if git.returncode == 128:
        pytest.skip(f"not a git checkout: {git.stderr.strip()}")
    assert git.returncode == 1 and not git.stdout, f".gitignore excludes {git.stdout}"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_cli_data_info_finds_the_demo_from_anywhere(tmp_path):
    out = _cli("core.data", "info", "--data-root", "demo", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == len(D.SIZES)
    for size, line in zip(D.SIZES, lines):
        n = D.split_counts(D.DEMO_ROOT, size)
        assert f"train {n['train']:,}, val {n['val']:,}, test {n['test']:,}" in line
        assert str(D.npz_path(D.DEMO_ROOT, size)) in line


def test_a_run_on_demo_records_the_real_folder_and_evaluates_elsewhere(tmp_path):
    """Trained with `--data-root demo` in one folder, re-evaluated from another: the run must
    record the bundled folder, not `demo` relative to where it was started."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    out = _cli("core.train", "--size", "28", "--epochs", "1", "--subset", "64", "--batch-size", "64",
               "--device", "cpu", "--data-root", "demo", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path / "a")
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = Path(out.stdout.splitlines()[-1])
    config = json.loads((run_dir / "config.json").read_text())
    assert Path(config["train"]["data_root"]) == D.DEMO_ROOT.resolve()
    again = _cli("core.evaluate", str(run_dir), "--device", "cpu", cwd=tmp_path / "b")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((run_dir / "test_metrics.json").read_text())["n_samples"] == D.split_counts(D.DEMO_ROOT, 28)["test"]


def test_study_reads_demo_as_the_bundled_folder(tmp_path):
    """A subset the demo cannot give stops the study before anything runs, naming the bundled file."""
    out = _cli("core.study", "--sizes", "28", "--epochs", "1", "--subset", "100000", "--data-root", "demo",
               "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert out.returncode == 2
    n = D.split_counts(D.DEMO_ROOT, 28)["train"]
    assert f"({n} images in {D.npz_path(D.DEMO_ROOT, 28)})" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
